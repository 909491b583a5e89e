#!/usr/bin/python3
"""torch_bench: the PyTorch side of `make bench` (Debian's python3-torch).

    /usr/bin/python3 bench/torch_bench.py infer MODEL.pt INPUT.npy THREADS [--output Y.npy | --serve]
    /usr/bin/python3 bench/torch_bench.py train MODEL STATE.pt INPUT.npy LABELS.npy THREADS --serve

infer: a TorchScript module from export.py (traced, frozen), passed through
torch.jit.optimize_for_inference here, run under inference_mode.
train: an eager training step of the model export.py defines (model.train(),
CrossEntropyLoss, SGD with momentum 0.9 and weight decay 1e-4, lr 0.1),
starting from the state dict (export.py's MODEL.state.pt) whose conversion
netcc's training library embeds.

--serve prints one line "ready KEY=VALUE ..." and then answers each "run K"
on stdin with one line of K latencies in milliseconds.
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402  (the models, weights and optimiser settings)


def set_threads(n):
    # Every pool explicit: PyTorch would otherwise choose for itself, and
    # inter-op parallelism has nothing to do in a single chain of layers.
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)


def inference(pt, input_npy, threads):
    set_threads(threads)
    x = torch.from_numpy(np.load(input_npy))
    # optimize_for_inference here, not in export.py: torch 1.13 saves the
    # optimised module's MKL-DNN constants but cannot load them back.
    module = torch.jit.optimize_for_inference(torch.jit.load(pt).eval())

    def step():
        with torch.inference_mode():
            return module(x)

    return step


def training(model, state, input_npy, labels_npy, threads):
    set_threads(threads)
    module = export.build(model)
    module.load_state_dict(torch.load(state), strict=True)
    module.train()
    x = torch.from_numpy(np.load(input_npy))
    labels = torch.from_numpy(np.load(labels_npy)).long()
    opt = torch.optim.SGD(module.parameters(), lr=export.LR, momentum=export.MOMENTUM,
                          weight_decay=export.WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(module(x), labels)
        loss.backward()
        opt.step()
        return loss

    return step


def serve(step, threads):
    print(f"ready torch={torch.__version__} threads={torch.get_num_threads()} "
          f"interop={torch.get_num_interop_threads()} requested={threads}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) != 2 or words[0] != "run":
            break
        ms = []
        for _ in range(int(words[1])):
            t0 = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t0) * 1e3)
        print(" ".join(f"{t:.4f}" for t in ms), flush=True)


def main():
    args = sys.argv[1:]
    if len(args) >= 5 and args[0] == "infer":
        _, pt, input_npy, threads, mode, *rest = args
        step = inference(pt, input_npy, int(threads))
        if mode == "--output":
            np.save(rest[0], step().numpy())
            return
    elif len(args) == 7 and args[0] == "train":
        _, model, state, input_npy, labels_npy, threads, mode = args
        step = training(model, state, input_npy, labels_npy, int(threads))
    else:
        sys.exit(__doc__)
    if mode != "--serve":
        sys.exit(__doc__)
    serve(step, int(threads))


if __name__ == "__main__":
    main()
