#!/usr/bin/python3
"""Weights, inputs, reference outputs and exported models for `make bench`.

    /usr/bin/python3 bench/export.py MODEL [--netcc build/netcc] [--out build/bench]

For resnet18 and resnet50 (torchvision's models): writes into OUT
    MODEL.safetensors           the module's weights as PyTorch initialises them
                                (seed 1), BatchNorm statistics and affine params
                                randomised, in netcc's names
    MODEL.b{1,8}.onnx           ONNX, opset 13, eval mode, for ONNX Runtime
    MODEL.b{1,8}.pt             TorchScript, traced and frozen (the worker applies
                                optimize_for_inference when it loads it, see below)
    MODEL.x{1,8}.npy            the input
    MODEL.y{1,8}.npy            PyTorch's (eager, float32) output: the reference
    MODEL.y{1,8}.f64.npy        the same in float64, to tell whose rounding is whose
For resnet20 (CIFAR-style, defined below for 1x28x28): the weights, a training
batch of 128 (MODEL.xtrain.npy, MODEL.ltrain.npy: int32 labels) and PyTorch's
result of one SGD step on it (MODEL.state.pt: the state dict it starts from;
MODEL.step.safetensors in netcc's names,
MODEL.step.f64.safetensors the same computed in float64, and MODEL.step.json
with the losses).

The weights reach netcc's names as a user's would: the state dict saved with
np.savez, then `netcc weights MODEL.nn --from STATE.npz --map order`, which
pairs them by order and stops on any difference of count or shape.
"""
import argparse
import copy
import json
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4  # models/resnet20.nn's train section
TRAIN_BATCH = 128


# ---- safetensors, read by hand: the pip package is not available here ----

def read_safetensors(path):
    """{name: float32 array}, in the file's order."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).copy()
    return out


# ---- ResNet-20 for 1x28x28, as models/resnet20.nn describes it ----

class CBR(nn.Module):
    """conv 3x3 (no bias) -> BatchNorm [-> ReLU]; attribute names give the
    state_dict the same order as netcc's cbrN.conv0 / cbrN.batchnorm0."""

    def __init__(self, cin, cout, stride=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x):
        y = self.bn(self.conv(x))
        return F.relu(y) if self.act else y


class Basic(nn.Module):
    """Two CBRs plus an option-A shortcut: subsample by the stride, then zero
    channels half before and half after."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.cbr0 = CBR(cin, cout, stride)
        self.cbr1 = CBR(cout, cout, act=False)
        self.stride, self.pad = stride, (cout - cin) // 2

    def forward(self, x):
        sc = x
        if self.stride != 1 or self.pad:
            sc = x[:, :, ::self.stride, ::self.stride]
            sc = F.pad(sc, (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(self.cbr1(self.cbr0(x)) + sc)


class ResNet20(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.cbr0 = CBR(1, 16)
        layers, cin = [], 16
        for c, s in ((16, 1), (32, 2), (64, 2)):
            blocks = [Basic(cin, c, s)] + [Basic(c, c) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            cin = c
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)
        for m in self.modules():  # He's initialisation, N(0, 2 / fan_in), as netcc init's
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        h = self.stages(self.cbr0(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def build(model):
    if model == "resnet20":
        return ResNet20()
    return getattr(torchvision.models, model)(weights=None)


# ---- weights: PyTorch's init, BatchNorm randomised, into netcc's names ----

def randomise_batchnorm(module, rng):
    """Moves every BatchNorm away from the identity (init has gamma 1, beta 0,
    mean 0, var 1), so that folding it into the convolution changes numbers."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32))
            m.bias.data = torch.from_numpy(rng.normal(0.0, 0.2, c).astype(np.float32))
            m.running_mean.data = torch.from_numpy(rng.normal(0.0, 0.2, c).astype(np.float32))
            m.running_var.data = torch.from_numpy(rng.uniform(0.5, 2.0, c).astype(np.float32))


def save_weights(netcc, model, module, path):
    """The module's state dict as netcc's weights file at path, through
    `netcc weights --map order`, which checks every shape (docs/interop.md)."""
    npz = path + ".npz"
    np.savez(npz, **{k: v.detach().numpy() for k, v in module.state_dict().items()})
    subprocess.run([netcc, "weights", f"models/{model}.nn", "--from", npz, "--map", "order",
                    "-o", path], check=True, stderr=subprocess.DEVNULL)
    os.remove(npz)


# ---- exports ----

def export_inference(model, module, out, rng):
    module.eval()
    for batch in (1, 8):
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        np.save(f"{out}/{model}.x{batch}.npy", x)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            np.save(f"{out}/{model}.y{batch}.npy", module(xt).numpy())
            y64 = module.double()(xt.double()).numpy()
            module.float()
        np.save(f"{out}/{model}.y{batch}.f64.npy", y64)
        torch.onnx.export(module, (xt,), f"{out}/{model}.b{batch}.onnx", opset_version=13,
                          input_names=["x"], output_names=["y"], do_constant_folding=True)
        # Frozen, not yet optimize_for_inference: the optimised module holds
        # MKL-DNN constants that torch 1.13 saves but cannot load back, so the
        # worker optimises it after loading (tests the same code path).
        with torch.no_grad():
            frozen = torch.jit.freeze(torch.jit.trace(module, (xt,)))
        frozen.save(f"{out}/{model}.b{batch}.pt")


def sgd_step(module, x, labels, dtype):
    """One training step as the bench times it; returns the loss."""
    module.to(dtype).train()
    module.zero_grad(set_to_none=True)
    opt = torch.optim.SGD(module.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    loss = F.cross_entropy(module(torch.from_numpy(x).to(dtype)),
                           torch.from_numpy(labels).long())
    loss.backward()
    opt.step()
    return loss.item()


def export_training(netcc, model, module, out, rng):
    """PyTorch's result of one SGD step on the bench's batch, for comparison
    with netcc's compiled training step started from the same weights; in
    float64 too, to see how far float32 rounding alone moves the gradients."""
    x = rng.uniform(0.0, 1.0, (TRAIN_BATCH, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, TRAIN_BATCH).astype(np.int32)
    np.save(f"{out}/{model}.xtrain.npy", x)
    np.save(f"{out}/{model}.ltrain.npy", labels)
    losses = {}
    start = copy.deepcopy(module.state_dict())
    torch.save(start, f"{out}/{model}.state.pt")  # torch_bench's training starts here
    for dtype, suffix in ((torch.float32, ""), (torch.float64, ".f64")):
        module.load_state_dict(start)
        losses["loss" + suffix.replace(".", "_")] = sgd_step(module, x, labels, dtype)
        save_weights(netcc, model, module.float(), f"{out}/{model}.step{suffix}.safetensors")
    with open(f"{out}/{model}.step.json", "w") as f:
        json.dump(losses, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["resnet18", "resnet50", "resnet20"])
    ap.add_argument("--netcc", default="build/netcc")
    ap.add_argument("--out", default="build/bench")
    args = ap.parse_args()
    model, out = args.model, args.out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1)  # PyTorch's init of the weights
    rng = np.random.default_rng(1)

    module = build(model)
    randomise_batchnorm(module, rng)
    save_weights(args.netcc, model, module, f"{out}/{model}.safetensors")
    if model == "resnet20":
        export_training(args.netcc, model, module, out, rng)
    else:
        export_inference(model, module, out, rng)
    print(f"export: {model}: weights by `netcc weights --map order`; wrote {out}/{model}.*",
          file=sys.stderr)


if __name__ == "__main__":
    main()
