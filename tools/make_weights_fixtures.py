#!/usr/bin/python3
"""Writes the fixtures of `netcc weights` under tests/weights/ (committed;
rerun only to change them; a rerun writes the same bytes). Run from the
repository root with Debian's interpreter and packages, after `make`:

    apt-get install python3-torch python3-torchvision python3-numpy
    /usr/bin/python3 tools/make_weights_fixtures.py [--netcc build/netcc]

The network is a torchvision ResNet in miniature, made of torchvision's own
BasicBlock (conv1, bn1, maxpool, layer1 with an identity shortcut, layer2
with a projection, avgpool, fc), with random weights and BatchNorm
statistics moved away from the identity. tests/weights/tiny.nn (written by
hand with models/resnet18.nn's blocks) is the same network in netcc's names;
its parameters follow the state dict's order.

tests/weights/tiny.npz          the state dict by np.savez, as docs/interop.md says
tests/weights/tiny_z.npz        the same by np.savez_compressed
tests/weights/tiny.safetensors  the same as safetensors, written here by hand in
                                the state dict's order (num_batches_tracked as I64)
tests/weights/tiny.x.npy        an input, [2, 3, 16, 16]
tests/weights/tiny.y.npy        PyTorch's output for it (eval mode)
tests/weights/tiny_imported.nn  what `netcc import` makes of the network's ONNX
                                export (BatchNorm kept): PyTorch's names with '_'
"""
import argparse
import io
import json
import os
import struct
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "weights")


class TinyResNet(nn.Module):
    """torchvision's ResNet layout, 4 and 8 channels wide, one block a stage."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(4, 4))
        down = nn.Sequential(nn.Conv2d(4, 8, 1, 2, bias=False), nn.BatchNorm2d(8))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, 2, down))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer2(self.layer1(h))
        return self.fc(torch.flatten(self.avgpool(h), 1))


def randomise_bn(m, gen):
    """BatchNorm with untrained statistics is the identity: make it not, and
    count a few batches so num_batches_tracked is not zero."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = torch.rand(c, generator=gen) + 0.5
            mod.bias.data = torch.randn(c, generator=gen) * 0.2
            mod.running_mean.data = torch.randn(c, generator=gen) * 0.2
            mod.running_var.data = torch.rand(c, generator=gen) + 0.5
            mod.num_batches_tracked.fill_(7)


def write_safetensors(path, sd):
    """8-byte little-endian header length, the JSON header, then the data, in
    the state dict's order (the safetensors package sorts by name instead)."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}
    header, blobs, off = {}, [], 0
    for name, t in sd.items():
        a = t.numpy()
        blob = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


def write_imported(netcc, m, x):
    """The network through ONNX and netcc import: the .nn a user would get."""
    buf = io.BytesIO()
    torch.onnx.export(m, x, buf, opset_version=13, training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, do_constant_folding=False)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = os.path.join(tmp, "tiny_imported.onnx")
        with open(onnx, "wb") as f:
            f.write(buf.getvalue())
        subprocess.run([netcc, "import", onnx, "-o", os.path.join(ROOT, "tiny_imported.nn"),
                        "--weights-out", os.path.join(tmp, "w.safetensors")], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--netcc", default="build/netcc")
    args = ap.parse_args()
    os.makedirs(ROOT, exist_ok=True)
    gen = torch.Generator().manual_seed(21)
    torch.manual_seed(21)
    m = TinyResNet()
    randomise_bn(m, gen)
    m.eval()
    x = torch.randn(2, 3, 16, 16, generator=gen)
    with torch.no_grad():
        y = m(x)
    np.save(os.path.join(ROOT, "tiny.x.npy"), x.numpy())
    np.save(os.path.join(ROOT, "tiny.y.npy"), y.numpy())

    sd = m.state_dict()
    # the conversion docs/interop.md shows
    np.savez(os.path.join(ROOT, "tiny.npz"), **{k: v.numpy() for k, v in sd.items()})
    np.savez_compressed(os.path.join(ROOT, "tiny_z.npz"), **{k: v.numpy() for k, v in sd.items()})
    write_safetensors(os.path.join(ROOT, "tiny.safetensors"), sd)
    write_imported(args.netcc, m, x)
    print(f"wrote {ROOT}: {len(sd)} tensors, "
          f"{sum(v.numel() for v in sd.values())} values")


if __name__ == "__main__":
    main()
