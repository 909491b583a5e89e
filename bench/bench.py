#!/usr/bin/python3
"""`make bench`: netcc against ONNX Runtime and PyTorch, same models, weights, input.

    /usr/bin/python3 bench/bench.py        (from the repository root; make bench)
    BENCH_QUICK=1 make bench               a short smoke run: few iterations
    BENCH_ONLY=resnet20 make bench         only the rows of models named so
                                           (comma-separated), for working on one

1. bench/export.py makes each model's weights, inputs, reference outputs, ONNX
   and TorchScript files in build/bench/ (skipped while they are up to date:
   newer than the model and export.py); the weights reach netcc's names through
   `netcc weights --map order`, as a user's PyTorch state dict would.
2. netcc compiles each model to a library (always: netcc is what changes), and
   bench/netcc_bench.c is built against each.
3. Correctness: every engine's output against PyTorch's eager float32 output
   (relative error: max abs difference / max abs reference); netcc must be
   within 1e-4 or the bench stops. The training step is checked against
   PyTorch's, with the float64 step as the yardstick for rounding.
4. Timing: for each configuration, one worker process per engine (model
   loaded once), warmed up, then driven in interleaved turns (netcc, ORT,
   PyTorch, netcc, ...) until each has RUNS timed runs; medians and minima.
5. The table goes to stdout and build/bench/results.md.
"""
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from export import read_safetensors  # noqa: E402

OUT = "build/bench"
NETCC = "build/netcc"
PY = "/usr/bin/python3"  # Debian's, with python3-torch; not whatever is first on PATH
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RUNS = 4 if QUICK else 30       # timed runs per engine per configuration
# Runs in one engine's turn before the next engine's: one, so that the
# engines share whatever the host is doing. Two cores of a shared machine
# run at one core's speed for seconds at a time, and turns of five let such
# a spell fall on one engine's runs (ResNet-50 at batch 1 on two threads:
# netcc's median 39.4 ms with a minimum of 31.6, 0.95 of ONNX Runtime's
# median, in a run whose other rows were steady).
PER_TURN = 1
# Warm-up runs per engine: at least the first (allocations, caches) and, unless
# quick, the second (TorchScript's profiling executor optimises on its second
# run); a third while the warm-up has taken under 2 s.
WARMUP_MIN, WARMUP_MAX, WARMUP_S = (1, 1, 0) if QUICK else (2, 3, 2.0)
GAP_S = 0.25  # between turns: lets spinning BLAS/OpenMP threads of the last engine sleep
# A training step is timed as training runs them, back to back: each turn
# runs one untimed step first. After the pause every engine's threads are
# asleep, and on this kind of virtual machine the first step after it ran
# 1.2x slower (netcc's, ResNet-20 on two threads: a woken virtual CPU runs
# slowly for a while); no training loop pauses between its steps.
TRAIN_UNTIMED = 1
TOLERANCE = 1e-4

# (label, model, batch, threads, kind); kind: latency (ms), throughput (img/s), train.
CONFIGS = [
    ("ResNet-50, batch 1", "resnet50", 1, 1, "latency"),
    ("ResNet-50, batch 1", "resnet50", 1, 2, "latency"),
    ("ResNet-18, batch 1", "resnet18", 1, 1, "latency"),
    ("ResNet-18, batch 1", "resnet18", 1, 2, "latency"),
    ("ResNet-50, batch 8", "resnet50", 8, 2, "throughput"),
    ("ResNet-18, batch 8", "resnet18", 8, 2, "throughput"),
    ("ResNet-20 training step, batch 128", "resnet20", 128, 2, "train"),
]
ONLY = [m for m in os.environ.get("BENCH_ONLY", "").split(",") if m]
# The code measured: a netcc target (netcc targets); native is the best this CPU runs.
TARGET = os.environ.get("BENCH_TARGET", "") or "native"
if ONLY:
    CONFIGS = [c for c in CONFIGS if c[1] in ONLY]
    if not CONFIGS:
        sys.exit(f"bench: BENCH_ONLY={','.join(ONLY)} names no model of the bench")
ENGINES = ["netcc", "ort", "torch"]
NAMES = {"netcc": "netcc", "ort": "ONNX Runtime", "torch": "PyTorch (TorchScript, optimised)"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, capture=False, quiet=False):
    """Runs a command from the repository root and returns its stdout if captured;
    quiet also holds back its stderr unless it fails, which ends the bench."""
    r = subprocess.run(cmd, cwd=ROOT, env=env, text=True,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if quiet else None)
    if r.returncode != 0:
        sys.exit(f"{r.stderr or ''}bench: failed ({r.returncode}): {shlex.join(cmd)}")
    return r.stdout


def path(*parts):
    return os.path.join(ROOT, *parts)


def stale(outputs, inputs):
    """True unless every output exists and is newer than every input."""
    try:
        oldest = min(os.path.getmtime(path(o)) for o in outputs)
    except FileNotFoundError:
        return True
    return any(os.path.getmtime(path(i)) > oldest for i in inputs)


def thread_env(threads):
    """Every pool any engine might use, pinned to the configuration's count: netcc is
    told through its library's set_threads (and NETCC_THREADS), PyTorch and ORT through
    their own APIs; the BLAS variables keep any library underneath from picking its own."""
    env = dict(os.environ)
    for var in ("NETCC_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["NETCC"] = path(NETCC)
    return env


# ---- 1 and 2: files ----

def export_all():
    for model in ("resnet18", "resnet50", "resnet20"):
        if model == "resnet20":
            outs = [f"{OUT}/{model}.{s}" for s in
                    ("safetensors", "state.pt", "xtrain.npy", "ltrain.npy", "step.safetensors",
                     "step.f64.safetensors", "step.json")]
        else:
            outs = [f"{OUT}/{model}.{s}" for b in (1, 8) for s in
                    (f"b{b}.onnx", f"b{b}.pt", f"x{b}.npy", f"y{b}.npy", f"y{b}.f64.npy")]
            outs.append(f"{OUT}/{model}.safetensors")
        if stale(outs, [f"models/{model}.nn", "bench/export.py"]):
            log(f"bench: exporting {model} (weights, ONNX, TorchScript, reference outputs)")
            run([PY, "bench/export.py", model, "--netcc", NETCC, "--out", OUT])


def lib_name(model, batch):
    return f"{model}_train" if model == "resnet20" else f"{model}_b{batch}"


def compile_all():
    """Each library netcc makes, and the harness built against it; compile seconds."""
    seconds = {}
    cc = os.environ.get("CC", "cc")
    for model, batch in sorted({(c[1], c[2]) for c in CONFIGS}):
        name = lib_name(model, batch)
        cmd = [NETCC, "compile", f"models/{model}.nn", "--weights", f"{OUT}/{model}.safetensors",
               "-o", f"{OUT}/lib{name}.so", "--name", name, "--batch", str(batch),
               "--target", TARGET]
        if model == "resnet20":
            cmd.append("--train")
        log(f"bench: {shlex.join(cmd)}")
        t0 = time.perf_counter()
        run(cmd, capture=True, quiet=True)
        seconds[name] = time.perf_counter() - t0
        run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{OUT}",
             f"-DMODEL_HEADER=\"{name}.h\"", f"-DMODEL={name}", f"-DMODEL_UPPER={name.upper()}"]
            + (["-DTRAIN"] if model == "resnet20" else [])
            + ["bench/netcc_bench.c", f"-L{OUT}", f"-l{name}", "-ldl", "-lm",
               "-Wl,-rpath,$ORIGIN", "-o", f"{OUT}/netcc_bench-{name}"])
    return seconds


# ---- 3: correctness ----

def rel_err(y, ref):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y.shape != ref.shape:
        return float("inf")
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def check_inference():
    """[(what, engine, err vs PyTorch float32, err vs float64)]; stops on a netcc mismatch."""
    rows, bad = [], []
    env = thread_env(2)
    for model, batch in sorted({(c[1], c[2]) for c in CONFIGS if c[1] != "resnet20"},
                               reverse=True):
        x, stem = f"{OUT}/{model}.x{batch}.npy", f"{OUT}/{model}.b{batch}"
        outs = {e: f"{stem}.out-{e}.npy" for e in ENGINES}
        run([f"{OUT}/netcc_bench-{lib_name(model, batch)}", "--input", x,
             "--output", outs["netcc"]], env=env)
        run(["node", "bench/ort_bench.js", f"{stem}.onnx", x, "2", "--output", outs["ort"]],
            env=env)
        run([PY, "bench/torch_bench.py", "infer", f"{stem}.pt", x, "2", "--output",
             outs["torch"]], env=env)
        ref = np.load(f"{path(OUT)}/{model}.y{batch}.npy")
        ref64 = np.load(f"{path(OUT)}/{model}.y{batch}.f64.npy")
        for e in ENGINES:
            y = np.load(path(outs[e]))
            rows.append((f"{model} batch {batch}", e, rel_err(y, ref), rel_err(y, ref64)))
            if e == "netcc" and not rows[-1][2] <= TOLERANCE:
                bad.append(rows[-1])
    return rows, bad


def check_training():
    """netcc's training step against PyTorch's, both from the same weights and batch:
    the loss, and the update of the trained params (max abs difference / max abs update
    over all of them); float64 PyTorch shows what rounding alone accounts for."""
    m = "resnet20"
    saved = f"{OUT}/{m}.step-netcc.safetensors"
    out = run([f"{OUT}/netcc_bench-{lib_name(m, 128)}", "--input", f"{OUT}/{m}.xtrain.npy",
               "--labels", f"{OUT}/{m}.ltrain.npy", "--save", saved], env=thread_env(2),
              capture=True)
    loss = float(out.split()[1])
    with open(path(OUT, f"{m}.step.json")) as f:
        ref_loss = json.load(f)
    w0 = read_safetensors(path(OUT, f"{m}.safetensors"))
    steps = {"netcc": read_safetensors(path(saved)),
             "torch": read_safetensors(path(OUT, f"{m}.step.safetensors")),
             "f64": read_safetensors(path(OUT, f"{m}.step.f64.safetensors"))}
    trained = [k for k in w0 if not k.endswith(("running_mean", "running_var"))]
    stats = [k for k in w0 if k.endswith(("running_mean", "running_var"))]

    def update_err(a, b, keys):
        d = max(np.abs((steps[a][k] - w0[k]) - (steps[b][k] - w0[k])).max() for k in keys)
        return float(d / max(np.abs(steps[b][k] - w0[k]).max() for k in keys))

    return {
        "loss netcc": loss, "loss torch": ref_loss["loss"], "loss f64": ref_loss["loss_f64"],
        "loss err": abs(loss - ref_loss["loss"]) / abs(ref_loss["loss"]),
        "update err": update_err("netcc", "torch", trained),
        "update err netcc f64": update_err("netcc", "f64", trained),
        "update err torch f64": update_err("torch", "f64", trained),
        "stats err": update_err("netcc", "torch", stats),
    }


# ---- 4: timing ----

class Worker:
    """One engine's process: loads the model once, then answers "run K" with K latencies."""

    def __init__(self, engine, cmd, env):
        self.engine = engine
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        ready = self.proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            self.proc.kill()
            sys.exit(f"bench: {engine} worker did not start: {shlex.join(cmd)}")
        self.info = dict(w.split("=", 1) for w in ready[1:])

    def run(self, k):
        self.proc.stdin.write(f"run {k}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        if len(line) != k:
            sys.exit(f"bench: {self.engine} worker failed (exit status {self.proc.poll()})")
        return [float(t) for t in line]

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def workers(model, batch, threads):
    env = thread_env(threads)
    name = lib_name(model, batch)
    if model == "resnet20":
        data = [f"{OUT}/{model}.xtrain.npy", f"{OUT}/{model}.ltrain.npy"]
        cmds = {"netcc": [f"{OUT}/netcc_bench-{name}", "--input", data[0], "--labels", data[1],
                          "--threads", str(threads), "--serve"],
                "torch": [PY, "bench/torch_bench.py", "train", model, f"{OUT}/{model}.state.pt",
                          *data, str(threads), "--serve"]}
    else:
        x, stem = f"{OUT}/{model}.x{batch}.npy", f"{OUT}/{model}.b{batch}"
        cmds = {"netcc": [f"{OUT}/netcc_bench-{name}", "--input", x, "--threads", str(threads),
                          "--serve"],
                "ort": ["node", "bench/ort_bench.js", f"{stem}.onnx", x, str(threads), "--serve"],
                "torch": [PY, "bench/torch_bench.py", "infer", f"{stem}.pt", x, str(threads),
                          "--serve"]}
    return {e: Worker(e, cmd, env) for e, cmd in cmds.items()}


def measure(model, batch, threads, kind):
    """{engine: [ms per run]} and the workers' ready info, interleaving the engines."""
    untimed = TRAIN_UNTIMED if kind == "train" else 0
    ws = workers(model, batch, threads)
    try:
        for w in ws.values():
            t0, n = time.perf_counter(), 0
            while n < WARMUP_MIN or (n < WARMUP_MAX and time.perf_counter() - t0 < WARMUP_S):
                w.run(1)
                n += 1
            time.sleep(GAP_S)
        times = {e: [] for e in ws}
        while any(len(t) < RUNS for t in times.values()):
            for e, w in ws.items():
                k = min(PER_TURN, RUNS - len(times[e]))
                if k > 0:
                    times[e] += w.run(untimed + k)[untimed:]
                    time.sleep(GAP_S)
        return times, {e: w.info for e, w in ws.items()}
    finally:
        for w in ws.values():
            w.close()


# ---- 5: the table ----

def cell(ms, batch, kind):
    if ms is None:
        return "-"
    med, low = statistics.median(ms), min(ms)
    if kind == "latency":
        return f"{med:.1f} ms (min {low:.1f})"
    if kind == "throughput":
        return f"{batch * 1e3 / med:.1f} img/s ({med:.0f} ms/batch)"
    return f"{med:.0f} ms/step, {batch * 1e3 / med:.0f} img/s"


def ratio(times, a, b):
    if times.get(a) is None or times.get(b) is None:
        return "-"
    return f"{statistics.median(times[a]) / statistics.median(times[b]):.2f}"


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def host_isa():
    """The widest vector ISA this CPU offers, as the tables are kept by."""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    if "amx_tile" in flags:
        return "AVX-512 + AMX"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "NEON" if "asimd" in flags else "unknown"


def target_info():
    """What BENCH_TARGET is here: target, kernel set, the CPU it is tuned for."""
    out = run([NETCC, "targets", "--which", TARGET], capture=True, quiet=True)
    name, kset, tune = out.split()
    return f"target {name}{' (native)' if TARGET == 'native' else ''}, kernel set {kset}, " \
           f"tuned for {tune}"


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def host_probes():
    """netcc profile's FMA loop and memory read on one thread and on two: [(GFLOP/s, GB/s)]
    per thread count. On this kind of shared host the two CPUs sometimes behave as one
    core's two hardware threads (two threads then reach one thread's FMA peak), and at other
    times the memory is shared with a busier neighbour (the read bandwidth falls while the
    FMA peak stays); in either spell every engine's times move."""
    probes = []
    for threads in (1, 2):
        out = run([NETCC, "profile", "models/resnet20.nn", "--batch", "1"],
                  env=thread_env(threads), capture=True, quiet=True)
        m = re.search(r"peak: ([0-9.]+) GFLOP/s", out)
        g = re.search(r"memory: ([0-9.]+) GB/s", out)
        probes.append((float(m.group(1)) if m else float("nan"),
                       float(g.group(1)) if g else float("nan")))
    return probes


def host_note(probes):
    """The probes before and after the timings, in words, naming a slow spell where the
    two-thread FMA peak is under 1.5x the one-thread one."""
    (f1, m1), (f2, m2) = probes[0]
    (g1, n1), (g2, n2) = probes[-1]
    spell = min(f2, g2) < 1.5 * max(f1, g1)
    return ("The host before and after the timings (netcc profile's probes): FMA peak "
            f"{f1:.0f} and {g1:.0f} GFLOP/s on 1 thread, {f2:.0f} and {g2:.0f} GFLOP/s on 2 "
            f"threads; memory read {m1:.1f} and {n1:.1f} GB/s on 1 thread, {m2:.1f} and "
            f"{n2:.1f} GB/s on 2"
            + (" (two threads near one thread's FMA peak: a slow spell of the host, in which "
               "two-thread rows move; docs/performance.md)" if spell else "") + ".")


def main():
    os.makedirs(path(OUT), exist_ok=True)
    t_start = time.perf_counter()
    export_all()
    compile_s = compile_all()

    log("bench: checking outputs against PyTorch's (eager, float32)")
    inf_rows, bad = check_inference()
    train = check_training() if any(c[1] == "resnet20" for c in CONFIGS) else None
    check_md = markdown(
        ["model", "engine", "rel. error vs PyTorch float32", "vs float64"],
        [(w, NAMES[e], f"{a:.2e}", f"{b:.2e}") for w, e, a, b in inf_rows])
    train_md = "" if train is None else (
        f"Training step (ResNet-20, batch 128, from identical weights): loss netcc "
        f"{train['loss netcc']:.7f}, PyTorch {train['loss torch']:.7f} (float64 "
        f"{train['loss f64']:.7f}), rel. error {train['loss err']:.1e}; update of the "
        f"trained params vs PyTorch's {train['update err']:.1e} (vs float64: netcc "
        f"{train['update err netcc f64']:.1e}, PyTorch float32 "
        f"{train['update err torch f64']:.1e}); running statistics' update "
        f"{train['stats err']:.1e}.")
    print(check_md + "\n\n" + train_md + "\n", flush=True)
    if bad:
        sys.exit("bench: netcc's output does not match PyTorch's within "
                 f"{TOLERANCE:g}: " + "; ".join(f"{w}: {a:.2e}" for w, _, a, _ in bad))
    # A training step off by more than rounding explains is a bug, not a timing.
    if train and not (train["loss err"] <= TOLERANCE and train["update err netcc f64"]
            <= max(1e-3, 4 * train["update err torch f64"])):
        sys.exit("bench: netcc's training step does not match PyTorch's (see above)")

    probes = [host_probes()]
    rows, info = [], {e: {} for e in ENGINES}
    for label, model, batch, threads, kind in CONFIGS:
        log(f"bench: timing {label}, {threads} thread(s)")
        t0 = time.perf_counter()
        times, ready = measure(model, batch, threads, kind)
        log(f"bench:   {time.perf_counter() - t0:.0f} s")
        info.update({e: r for e, r in ready.items()})
        what = {"latency": f"{label}, latency",
                "throughput": f"{label}, throughput",
                "train": label}[kind]
        rows.append([what, str(threads)]
                    + [cell(times.get(e), batch, kind) for e in ENGINES]
                    + [ratio(times, "netcc", "ort"), ratio(times, "netcc", "torch")])

    probes.append(host_probes())
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip() or "unknown"
    notes = [
        f"CPU: {cpu_model()} ({host_isa()}), {os.cpu_count()} logical CPUs; netcc {commit}, "
        f"{target_info()}; "
        "netcc's GEMM its own (OpenBLAS not loaded: "
        f"{info['netcc'].get('blas', '?') == 'none'})"
        + f"; ONNX Runtime {info['ort'].get('ort', '?')} (npm onnxruntime-node, CPU); "
        f"PyTorch {info['torch'].get('torch', '?')} (Debian, TorchScript frozen + "
        "optimize_for_inference; training eager).",
        f"Medians of {RUNS} timed runs per engine (min in parentheses), engines interleaved "
        f"run by run{' — BENCH_QUICK: a smoke run, not a measurement' if QUICK else ''}; "
        "training steps timed back to back (each turn's first step untimed). "
        "Ratios are netcc's median time over the other's: below 1, netcc is faster. "
        "netcc's threads: "
        + ("the library's own (set_threads)" if info["netcc"].get("threads_api") == "1"
           else "NETCC_THREADS") + ".",
        "netcc compile times: " + ", ".join(f"{n} {s:.1f} s" for n, s in compile_s.items())
        + ".",
        host_note(probes),
    ]
    table = markdown(["what", "threads", "netcc", "ONNX Runtime", "PyTorch", "netcc/ORT",
                      "netcc/PyTorch"], rows)
    report = "\n\n".join([table, *notes, "Correctness (max abs difference / max abs "
                          "reference, same input):", check_md, train_md]) + "\n"
    with open(path(OUT, "results.md"), "w") as f:
        f.write("# netcc bench\n\n" + report)
    print(table + "\n\n" + "\n\n".join(notes))
    log(f"bench: done in {time.perf_counter() - t_start:.0f} s; written to {OUT}/results.md")


if __name__ == "__main__":
    main()
