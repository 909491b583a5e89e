#!/usr/bin/python3
"""netcc export's bar (issue 21): ONNX Runtime runs what netcc exports to
within 1e-5 of netcc's reference executor.

    make export-check            # installs onnxruntime-node (npm) first
    /usr/bin/python3 tools/onnx_export_check.py [MODEL.nn ...] [--netcc build/netcc]
                                 [--out build/export-check] [--tol 1e-5]

For each model (one input x, one output; default models/resnet18.nn and
models/resnet20.nn):
`netcc init --seed 1`, every BatchNorm's gamma, beta, running mean and
variance randomised (so that they matter), then `netcc export` twice: a
fixed batch 1, and --dynamic-batch run at batch 3. Each file is checked
by onnx.checker (full_check: ONNX's shape inference too) and, where
python3-onnx has it, run by onnx.reference.ReferenceEvaluator; run by
ONNX Runtime (npm's onnxruntime-node under node, bench/ort_bench.js);
and imported back by `netcc import`. Every output is compared with
`netcc run --reference` on the same input, as max |a - b| / max |b|.
Exit status 1 when ONNX Runtime's error exceeds --tol or the import is
not bit-equal.

Not part of `make test`: it needs npm's package (`cd bench &&
ONNXRUNTIME_NODE_INSTALL=skip npm ci`, which `make export-check` does).
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data, out = raw[8 + hlen:], {}
    for name, info in header.items():
        if name != "__metadata__":
            a, b = info["data_offsets"]
            out[name] = np.frombuffer(data[a:b], "<f4").reshape(info["shape"]).copy()
    return out, header.get("__metadata__")


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata} if metadata else {}, [], 0
    for name, arr in tensors.items():
        blob = np.ascontiguousarray(arr, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


def netcc(args, exe):
    r = subprocess.run([exe] + args, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"netcc {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


def rel_err(got, want):
    den = np.abs(want).max()
    num = np.abs(got.astype(np.float64) - want.astype(np.float64)).max()
    return float(num / den) if den > 0 else float(num)


def weights(model, path, exe):
    """netcc's He weights with the BatchNorm tensors randomised."""
    netcc(["init", model, "-o", path, "--seed", "1"], exe)
    w, meta = read_safetensors(path)
    rng = np.random.default_rng(1)
    ranges = {".weight": (0.5, 1.5), ".bias": (-0.5, 0.5), ".running_mean": (-0.5, 0.5),
              ".running_var": (0.5, 2.0)}
    for name, a in w.items():
        if "batchnorm" in name:
            lo, hi = next(v for k, v in ranges.items() if name.endswith(k))
            w[name] = rng.uniform(lo, hi, a.shape).astype(np.float32)
    write_safetensors(path, w, meta)


def ort_run(onnx_path, x_path, y_path):
    script = os.path.join(ROOT, "bench", "ort_bench.js")
    r = subprocess.run(["node", script, onnx_path, x_path, "1", "--output", y_path],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"ONNX Runtime on {onnx_path}: {r.stderr.strip()}\n(install it: cd bench && "
                 "ONNXRUNTIME_NODE_INSTALL=skip npm ci)")
    return np.load(y_path)


def reference_evaluator(path, x):
    try:
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        return None  # python3-onnx before 1.13
    return ReferenceEvaluator(path).run(None, {"x": x})[0]


def check(model, batch, dynamic, w, out, exe):
    name = os.path.splitext(os.path.basename(model))[0] + ("_dyn" if dynamic else "")
    path = os.path.join(out, name + ".onnx")
    netcc(["export", model, "--weights", w, "-o", path] +
          (["--dynamic-batch"] if dynamic else ["--batch", str(batch)]), exe)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    ir = netcc(["ir", model], exe)
    if ir.count("\n  output ") != 1 or "input x : [" not in ir:
        sys.exit(f"{model}: this check takes models of one input x and one output")
    shape = [int(s) for s in ir.split("input x : [")[1].split("]")[0].split(",")]
    x = np.random.default_rng(2).standard_normal([batch] + shape[1:]).astype(np.float32)
    xp, ref = os.path.join(out, name + ".x.npy"), os.path.join(out, name + ".ref.npy")
    np.save(xp, x)
    netcc(["run", model, "--weights", w, "--batch", str(batch), "--input", xp, "-o", ref,
           "--reference"], exe)
    want = np.load(ref)
    ort = rel_err(ort_run(path, xp, os.path.join(out, name + ".ort.npy")), want)
    back_nn = os.path.join(out, name + ".back.nn")
    netcc(["import", path, "-o", back_nn], exe)
    back_y = os.path.join(out, name + ".back.npy")
    netcc(["run", back_nn, "--weights", back_nn[:-3] + ".safetensors", "--batch", str(batch),
           "--input", xp, "-o", back_y, "--reference"], exe)
    back = np.load(back_y)
    ev = reference_evaluator(path, x)
    return {"file": os.path.relpath(path, ROOT), "batch": batch, "dynamic": dynamic,
            "bytes": os.path.getsize(path), "ort": ort,
            "evaluator": None if ev is None else rel_err(ev, want),
            "import_bit_equal": bool(np.array_equal(back, want))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=["models/resnet18.nn", "models/resnet20.nn"])
    ap.add_argument("--netcc", default=os.path.join(ROOT, "build", "netcc"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "export-check"))
    ap.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    print(f"onnx {onnx.__version__}; ONNX Runtime: npm's onnxruntime-node "
          f"(bench/package.json); tolerance {a.tol:g}")
    failed = False
    for model in a.models:
        w = os.path.join(a.out, os.path.splitext(os.path.basename(model))[0] + ".safetensors")
        weights(model, w, a.netcc)
        for batch, dynamic in ((1, False), (3, True)):
            r = check(model, batch, dynamic, w, a.out, a.netcc)
            ok = r["ort"] <= a.tol and r["import_bit_equal"]
            failed |= not ok
            ev = "n/a" if r["evaluator"] is None else f"{r['evaluator']:.2e}"
            print(f"{'ok  ' if ok else 'FAIL'} {r['file']}: batch {batch}"
                  f"{' (dynamic)' if dynamic else ''}, {r['bytes']} bytes, checker ok; "
                  f"ORT rel err {r['ort']:.2e}, ReferenceEvaluator {ev}, "
                  f"import {'bit-equal' if r['import_bit_equal'] else 'DIFFERS'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
