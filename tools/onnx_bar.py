#!/usr/bin/python3
"""Issue 21's import bar: torchvision models (random weights, randomised
BatchNorm statistics) exported by torch.onnx at opset 13 in eval mode,
BatchNorm folded and kept, imported by netcc and run both as the .nn with
its weights and as the .onnx itself, within 1e-4 relative of PyTorch.

    apt-get install python3-torch python3-torchvision python3-onnx python3-numpy
    make && /usr/bin/python3 tools/onnx_bar.py [resnet18 resnet50 ...]

Writes into a temporary directory; exits 1 if a model misses the bar.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
NETCC = os.path.join(ROOT, "build", "netcc")
BAR = 1e-4


def netcc(*args):
    subprocess.run([NETCC, *args], check=True, stderr=subprocess.DEVNULL)


def rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def check(name, tmp):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(weights=None).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = torch.rand(c) + 0.5
            mod.bias.data = torch.randn(c) * 0.2
            mod.running_mean.data = torch.randn(c) * 0.2
            mod.running_var.data = torch.rand(c) + 0.5
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        want = m(x).numpy()
    xp = os.path.join(tmp, "x.npy")
    np.save(xp, x.numpy())
    worst = 0.0
    for keep in (False, True):
        how = "kept" if keep else "folded"
        onnx = os.path.join(tmp, "%s_%s.onnx" % (name, how))
        mode = torch.onnx.TrainingMode.PRESERVE if keep else torch.onnx.TrainingMode.EVAL
        torch.onnx.export(m, x, onnx, opset_version=13, training=mode, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
        nn = os.path.join(tmp, "%s_%s.nn" % (name, how))
        netcc("import", onnx, "-o", nn)
        for model, extra in ((nn, ["--weights", nn[:-3] + ".safetensors"]), (onnx, [])):
            yp = os.path.join(tmp, "y.npy")
            netcc("run", model, *extra, "--input", xp, "--batch", "2", "-o", yp)
            e = rel_err(np.load(yp), want)
            worst = max(worst, e)
            print("%-10s BatchNorm %-6s %-5s relative error %.2g" %
                  (name, how, "onnx" if model == onnx else ".nn", e))
    return worst < BAR


def main():
    names = sys.argv[1:] or ["resnet18", "resnet50"]
    with tempfile.TemporaryDirectory() as tmp:
        ok = all([check(n, tmp) for n in names])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
