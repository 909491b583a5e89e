// ort_bench: the ONNX Runtime side of `make bench` (npm's onnxruntime-node, CPU).
//
//   node bench/ort_bench.js MODEL.onnx INPUT.npy THREADS [--output Y.npy | --serve]
//
// --output runs once and writes the output as .npy. --serve prints one line
// "ready KEY=VALUE ..." and then answers each "run K" on stdin with one line of
// K latencies in milliseconds, until "quit" or the end of input.
'use strict';

const fs = require('fs');
const readline = require('readline');
const ort = require('onnxruntime-node');

// A C-order float32 .npy file (format 1-3) as {shape, data}.
function readNpy(path) {
  const b = fs.readFileSync(path);
  if (b.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${path}: not a .npy file`);
  const v2 = b[6] >= 2;
  const hlen = v2 ? b.readUInt32LE(8) : b.readUInt16LE(8);
  const off = (v2 ? 12 : 10) + hlen;
  const header = b.toString('latin1', v2 ? 12 : 10, off);
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True")) {
    throw new Error(`${path}: expected a C-order float32 array: ${header}`);
  }
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',')
    .map((s) => s.trim()).filter((s) => s).map(Number);
  // Copy into a fresh (aligned) buffer: the file's data need not start at a
  // multiple of 4 in the Buffer pool.
  const data = new Float32Array(shape.reduce((a, d) => a * d, 1));
  new Uint8Array(data.buffer).set(b.subarray(off, off + data.byteLength));
  return { shape, data };
}

function writeNpy(path, shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')},), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n'; // 64-byte aligned data
  const pre = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(pre);
  pre[6] = 1;
  pre.writeUInt16LE(header.length, 8);
  fs.writeFileSync(path, Buffer.concat([pre, Buffer.from(header, 'latin1'),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  const [model, input, threadsArg, mode, outPath] = process.argv.slice(2);
  const threads = Number(threadsArg);
  if (!model || !input || !(threads >= 1)) {
    throw new Error('usage: node ort_bench.js MODEL.onnx INPUT.npy THREADS [--output Y.npy | --serve]');
  }
  // Every thread setting explicit: intra-op threads as asked, no inter-op
  // parallelism (a ResNet is one chain), all graph optimisations (BatchNorm
  // folding, fusions) as a deployment would have them.
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const x = readNpy(input);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x.data, x.shape) };
  const outName = session.outputNames[0];

  if (mode === '--output') {
    const y = (await session.run(feeds))[outName];
    writeNpy(outPath, y.dims, y.data);
    return;
  }
  if (mode !== '--serve') throw new Error(`unknown mode ${mode}`);

  const version = require('onnxruntime-node/package.json').version;
  process.stdout.write(`ready ort=${version} threads=${threads}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const m = /^run (\d+)$/.exec(line.trim());
    if (!m) break;
    const ms = [];
    for (let i = 0; i < Number(m[1]); i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    process.stdout.write(ms.map((t) => t.toFixed(4)).join(' ') + '\n');
  }
  rl.close();
}

main().catch((e) => {
  process.stderr.write(`ort_bench: ${e.message}\n`);
  process.exit(1);
});
