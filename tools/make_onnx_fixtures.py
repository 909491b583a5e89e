#!/usr/bin/python3
"""Writes the ONNX import fixtures under tests/onnx/ (committed; rerun only
to change them). Run with Debian's interpreter and packages:

    apt-get install python3-torch python3-onnx python3-numpy
    /usr/bin/python3 tools/make_onnx_fixtures.py

tests/onnx/NAME.onnx      a model, with NAME.x.npy (its input) and NAME.y.npy
                          (PyTorch's output for it)
tests/onnx/malformed/NAME.onnx and NAME.err
                          a file netcc import must refuse; NAME.err holds the
                          message that follows "netcc: error: PATH: "

Models are exported by torch.onnx where PyTorch writes the construct, and
built with onnx.helper where it does not (Identity, Gemm without transB,
hand-written constants); their expected outputs still come from PyTorch.
"""
import io
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "onnx")
OPSET = 13


def save_case(name, model_bytes, x, y):
    with open(os.path.join(ROOT, name + ".onnx"), "wb") as f:
        f.write(model_bytes)
    np.save(os.path.join(ROOT, name + ".x.npy"), x.astype(np.float32))
    np.save(os.path.join(ROOT, name + ".y.npy"), y.astype(np.float32))


def randomise_bn(m, gen):
    """BatchNorm with untrained statistics is the identity: make it not."""
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = mod.num_features
            mod.weight.data = torch.rand(c, generator=gen) + 0.5
            mod.bias.data = torch.randn(c, generator=gen) * 0.2
            mod.running_mean.data = torch.randn(c, generator=gen) * 0.2
            mod.running_var.data = torch.rand(c, generator=gen) + 0.5


def export(name, m, x, keep_bn=False, opset=OPSET, dynamic=True):
    m.eval()
    buf = io.BytesIO()
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    axes = {"x": {0: "N"}, "y": {0: "N"}} if dynamic else None
    torch.onnx.export(m, x, buf, opset_version=opset, training=mode, input_names=["x"],
                      output_names=["y"], dynamic_axes=axes, do_constant_folding=True)
    with torch.no_grad():
        y = m(x)
    save_case(name, buf.getvalue(), x.numpy(), y.numpy())


# ---- the tiny ResNet: two basic blocks, identity and projection shortcuts ----

class Basic(nn.Module):
    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or cin != c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False),
                                            nn.BatchNorm2d(c))

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        sc = x if self.downsample is None else self.downsample(x)
        return self.relu(h + sc)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Basic(4, 4, 1), Basic(4, 8, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer1(h)
        return self.fc(torch.flatten(self.avgpool(h), 1))


# ---- the op-by-op set --------------------------------------------------------

class Lambda(nn.Module):
    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for k, v in params.items():
            setattr(self, k, nn.Parameter(v))

    def forward(self, x):
        return self.fn(self, x)


def torch_cases(gen):
    def rnd(*s):
        return torch.randn(*s, generator=gen)

    conv_bn = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1, bias=True), nn.BatchNorm2d(6))
    randomise_bn(conv_bn, gen)
    bn1d = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5))
    randomise_bn(bn1d, gen)
    bn_alone = nn.BatchNorm2d(3, eps=1e-3)
    randomise_bn(bn_alone, gen)
    return [
        # name, module, input, keep BatchNorm, opset
        ("conv_bias_stride_pad", nn.Conv2d(3, 5, 3, 2, 1), rnd(2, 3, 9, 9), False, OPSET),
        ("conv_1x1_nobias", nn.Conv2d(3, 4, 1, bias=False), rnd(2, 3, 5, 5), False, OPSET),
        ("conv_5x5_opset11", nn.Conv2d(2, 3, 5, 1, 2), rnd(1, 2, 8, 8), False, 11),
        ("conv_bn_folded", conv_bn, rnd(2, 3, 8, 8), False, OPSET),
        ("conv_bn_kept", conv_bn, rnd(2, 3, 8, 8), True, OPSET),
        ("batchnorm_eps", bn_alone, rnd(2, 3, 4, 4), True, OPSET),
        ("batchnorm_1d", bn1d, rnd(3, 6), True, OPSET),
        ("relu", nn.ReLU(), rnd(2, 3, 4, 4), False, OPSET),
        ("maxpool", nn.MaxPool2d(3, 2, 1), rnd(2, 3, 9, 9), False, OPSET),
        ("maxpool_k2", nn.MaxPool2d(2), rnd(2, 2, 6, 6), False, OPSET),
        ("avgpool", nn.AvgPool2d(2), rnd(2, 3, 6, 6), False, OPSET),
        ("avgpool_pad", nn.AvgPool2d(3, 1, 1), rnd(2, 3, 5, 5), False, OPSET),
        ("global_avgpool", nn.AdaptiveAvgPool2d(1), rnd(2, 3, 5, 5), False, OPSET),
        ("add_residual", Lambda(lambda s, x: F.conv2d(x, s.w, padding=1) + x, w=rnd(3, 3, 3, 3)),
         rnd(2, 3, 6, 6), False, OPSET),
        ("flatten", Lambda(lambda s, x: torch.flatten(x, 1)), rnd(2, 3, 2, 2), False, OPSET),
        ("reshape_view", Lambda(lambda s, x: x.view(x.size(0), -1)), rnd(2, 3, 2, 2), False,
         OPSET),
        ("reshape_minus1", Lambda(lambda s, x: x.reshape(-1, 12)), rnd(2, 3, 2, 2), False, OPSET),
        ("gemm", nn.Linear(6, 4), rnd(2, 6), False, OPSET),
        ("matmul_add", Lambda(lambda s, x: torch.matmul(x, s.w) + s.b, w=rnd(6, 4), b=rnd(4)),
         rnd(2, 6), False, OPSET),
        ("matmul", Lambda(lambda s, x: torch.matmul(x, s.w), w=rnd(6, 4)), rnd(2, 6), False,
         OPSET),
        ("softmax", nn.Softmax(dim=1), rnd(2, 10), False, OPSET),
        ("softmax_opset11", nn.Softmax(dim=1), rnd(2, 10), False, 11),
    ]


def tensor(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def raw_tensor(name, dims, floats):
    """A float tensor whose values need not fill its shape (helper checks)."""
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    t.float_data.extend(floats)
    return t


def io_info(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, inits, opset=OPSET):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="make_onnx_fixtures")
    m.ir_version = 7
    return m


def helper_cases(gen):
    """Constructs torch.onnx does not write, checked against PyTorch."""
    def rnd(*s):
        return torch.randn(*s, generator=gen)

    out = []
    # Identity on a value and on an initializer; Gemm with transB = 0.
    x, w, b = rnd(2, 6), rnd(6, 4), rnd(4)
    m = make_model([helper.make_node("Identity", ["x"], ["xi"], name="copy"),
                    helper.make_node("Identity", ["w0"], ["w"], name="wcopy"),
                    helper.make_node("Gemm", ["xi", "w", "b"], ["y"], name="fc", transB=0)],
                   [io_info("x", ["N", 6])], [io_info("y", ["N", 4])],
                   [tensor("w0", w.numpy()), tensor("b", b.numpy())])
    out.append(("identity_gemm", m, x, x @ w + b))
    # a Constant node as Reshape's shape, an explicit batch of 2
    x = rnd(2, 2, 3, 3)
    m = make_model([helper.make_node("Constant", [], ["shape"], name="shape",
                                     value=tensor("v", np.array([2, 18], np.int64))),
                    helper.make_node("Reshape", ["x", "shape"], ["y"], name="flat")],
                   [io_info("x", [2, 2, 3, 3])], [io_info("y", [2, 18])], [])
    out.append(("reshape_constant", m, x, x.reshape(2, -1)))
    # two inputs, two outputs, float_data initializers, unnamed nodes
    a, c = rnd(2, 3, 4, 4), rnd(2, 3, 4, 4)
    wt = rnd(2, 3, 1, 1)
    wp = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], wt.flatten().tolist())
    m = make_model([helper.make_node("Add", ["a", "c"], ["s"]),
                    helper.make_node("Relu", ["s"], ["r"]),
                    helper.make_node("Conv", ["r", "w"], ["y2"], kernel_shape=[1, 1]),
                    helper.make_node("GlobalAveragePool", ["r"], ["y1"])],
                   [io_info("a", ["N", 3, 4, 4]), io_info("c", ["N", 3, 4, 4])],
                   [io_info("y1", ["N", 3, 1, 1]), io_info("y2", ["N", 2, 4, 4])], [wp])
    r = torch.relu(a + c)
    out.append(("two_inputs", m, (a, c), (r.mean((2, 3), keepdim=True), F.conv2d(r, wt))))
    # a zero Pad folded into the Conv after it; SAME_UPPER padding; an
    # inference Dropout; a ceil_mode that changes nothing
    x, w1, w2 = rnd(2, 2, 6, 6), rnd(3, 2, 3, 3), rnd(3, 3, 3, 3)
    m = make_model([helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="constant"),
                    helper.make_node("Conv", ["p", "w1"], ["c1"], name="conv_a",
                                     kernel_shape=[3, 3]),
                    helper.make_node("Conv", ["c1", "w2"], ["c2"], name="conv_b",
                                     auto_pad="SAME_UPPER"),
                    helper.make_node("Dropout", ["c2"], ["d"], name="drop"),
                    helper.make_node("MaxPool", ["d"], ["y"], name="pool", kernel_shape=[2, 2],
                                     strides=[2, 2], ceil_mode=1)],
                   [io_info("x", ["N", 2, 6, 6])], [io_info("y", ["N", 3, 3, 3])],
                   [tensor("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
                    tensor("w1", w1.numpy()), tensor("w2", w2.numpy())])
    y = F.max_pool2d(F.conv2d(F.conv2d(x, w1, padding=1), w2, padding=1), 2)
    out.append(("pad_same_dropout", m, x, y))
    # Gemm with a [1, out] bias and with one value for all; Softmax at opset 11
    x, w, b = rnd(3, 5), rnd(4, 5), rnd(1, 4)
    w2 = rnd(4, 4)
    m = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc1", transB=1),
                    helper.make_node("Gemm", ["h", "w2", "s"], ["z"], name="fc2"),
                    helper.make_node("Softmax", ["z"], ["y"], name="prob")],
                   [io_info("x", ["N", 5])], [io_info("y", ["N", 4])],
                   [tensor("w", w.numpy()), tensor("b", b.numpy()), tensor("w2", w2.numpy()),
                    tensor("s", np.array([0.5], np.float32))], opset=11)
    y = torch.softmax((x @ w.T + b) @ w2 + 0.5, 1)
    out.append(("gemm_bias_forms", m, x, y))
    # an option-A shortcut as netcc export writes it: x[:, :, ::2, ::2]
    # as one Slice, then zero channels before and after (unevenly)
    x, w = rnd(2, 4, 7, 7), rnd(8, 4, 3, 3)
    big = np.iinfo(np.int64).max
    m = make_model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                                     strides=[2, 2], pads=[1, 1, 1, 1]),
                    helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"],
                                     name="subsample"),
                    helper.make_node("Pad", ["s", "pads"], ["p"], name="pad_channels"),
                    helper.make_node("Add", ["c", "p"], ["y"], name="add")],
                   [io_info("x", ["N", 4, 7, 7])], [io_info("y", ["N", 8, 4, 4])],
                   [tensor("w", w.numpy()), tensor("starts", np.array([0, 0], np.int64)),
                    tensor("ends", np.array([big, big], np.int64)),
                    tensor("axes", np.array([2, 3], np.int64)),
                    tensor("steps", np.array([2, 2], np.int64)),
                    tensor("pads", np.array([0, 1, 0, 0, 0, 3, 0, 0], np.int64))])
    y = F.conv2d(x, w, stride=2, padding=1) + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 1, 3))
    out.append(("slice_pad_channels", m, x, y))
    return out


def save_helper_case(name, m, x, y):
    xs = x if isinstance(x, tuple) else (x,)
    ys = y if isinstance(y, tuple) else (y,)
    with open(os.path.join(ROOT, name + ".onnx"), "wb") as f:
        f.write(m.SerializeToString())
    for i, a in enumerate(xs):
        np.save(os.path.join(ROOT, name + (".x.npy" if len(xs) == 1 else ".x%d.npy" % i)),
                a.numpy().astype(np.float32))
    for i, a in enumerate(ys):
        np.save(os.path.join(ROOT, name + (".y.npy" if len(ys) == 1 else ".y%d.npy" % i)),
                a.numpy().astype(np.float32))


# ---- malformed files ---------------------------------------------------------

def malformed(gen, resnet_bytes):
    bad = os.path.join(ROOT, "malformed")
    os.makedirs(bad, exist_ok=True)

    def put(name, data, err):
        if isinstance(data, onnx.ModelProto):
            data = data.SerializeToString()
        with open(os.path.join(bad, name + ".onnx"), "wb") as f:
            f.write(data)
        with open(os.path.join(bad, name + ".err"), "w") as f:
            f.write(err + "\n")

    w = tensor("w", np.ones((2, 3, 3, 3), np.float32))
    xin = [io_info("x", ["N", 3, 8, 8])]

    def conv_model(nodes, out_shape, inits=(w,), inputs=xin, opset=OPSET):
        return make_model(nodes, inputs, [io_info("y", out_shape)], list(inits), opset)

    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])
    put("truncated", resnet_bytes[: len(resnet_bytes) // 2],
        "not a complete ONNX file: a field at byte")
    put("empty", b"", "empty file: not an ONNX model")
    put("not_onnx", b"version 1\nmodel m(x: f32[N, 3]) -> (y: f32[N, 3])\n",
        "not an ONNX model")
    put("input_int64", conv_model([conv], ["N", 2, 6, 6],
                                  inputs=[io_info("x", ["N", 3, 8, 8], TensorProto.INT64)]),
        "input 'x' is int64; netcc computes in float32 (export the model in float32)")
    put("initializer_float64", conv_model(
        [conv], ["N", 2, 6, 6], inits=[tensor("w", np.ones((2, 3, 3, 3), np.float64))]),
        "initializer 'w' is double; netcc's weights are float32 (export the model in float32)")
    put("initializer_short", conv_model([conv], ["N", 2, 6, 6], inits=[raw_tensor(
        "w", [2, 3, 3, 3], [1.0] * 10)]),
        "initializer 'w' [2,3,3,3] holds 10 values, its shape needs 54")
    put("cycle", conv_model([helper.make_node("Relu", ["b"], ["a"], name="first"),
                             helper.make_node("Add", ["a", "x"], ["b"], name="second"),
                             helper.make_node("Conv", ["a", "w"], ["y"], name="conv",
                                              kernel_shape=[3, 3])], ["N", 2, 6, 6]),
        "node 'first' (Relu): the graph has a cycle through this node")
    put("missing_initializer", conv_model([conv], ["N", 2, 6, 6], inits=()),
        "node 'conv' (Conv): reads 'w', which no initializer, graph input or node defines")
    put("huge_dims", conv_model([conv], ["N", 2, 6, 6],
                                inputs=[io_info("x", ["N", 3, 1 << 40, 8])]),
        "input 'x': dimension 2 is 1099511627776; netcc's limit is 16777216")
    put("huge_initializer", conv_model([conv], ["N", 2, 6, 6], inits=[raw_tensor(
        "w", [1 << 31, 1 << 31, 3, 3], [])]),
        "initializer 'w' [2147483648,2147483648,3,3] is too large")
    put("unsupported_op", conv_model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv",
                                                       kernel_shape=[3, 3]),
                                      helper.make_node("LeakyRelu", ["c"], ["y"], name="act")],
                                     ["N", 2, 6, 6]),
        "node 'act' (LeakyRelu): operator not supported; the closest netcc supports is Relu")
    put("grouped_conv", conv_model([helper.make_node("Conv", ["x", "w"], ["y"], name="dw",
                                                     kernel_shape=[3, 3], group=3)],
                                   ["N", 2, 6, 6],
                                   inits=[tensor("w", np.ones((3, 1, 3, 3), np.float32))]),
        "node 'dw' (Conv): group = 3 is not supported (grouped or depthwise convolution); "
        "netcc's conv takes group = 1")
    put("asymmetric_pads", conv_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv",
                                                        kernel_shape=[3, 3], pads=[0, 0, 1, 1])],
                                      ["N", 2, 7, 7]),
        "node 'conv' (Conv): pads [0,0,1,1] are not symmetric; netcc's conv pads every side "
        "alike")
    put("old_opset", conv_model([conv], ["N", 2, 6, 6], opset=5),
        "opset 5 of the default domain; netcc imports opsets 7 to 22")
    put("symbolic_height", conv_model([conv], ["N", 2, "h", 6],
                                      inputs=[io_info("x", ["N", 3, "H", 8])]),
        "input 'x': dimension 2 is symbolic ('H'); netcc needs static shapes except the batch "
        "(export with a fixed image size)")
    put("no_graph", b"\x08\x07", "no graph: not an ONNX model")
    put("reshape_3d", make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")],
                                 [io_info("x", ["N", 3, 8, 8])], [io_info("y", ["N", 3, 64])],
                                 [tensor("s", np.array([0, 3, -1], np.int64))]),
        "node 'r' (Reshape): reshapes to [0,3,-1]; netcc imports only a reshape to [N, -1] "
        "(a flatten)")
    put("add_broadcast", make_model([helper.make_node("Add", ["x", "b"], ["y"], name="plus")],
                                    [io_info("x", ["N", 3, 8, 8]), io_info("b", ["N", 3, 1, 1])],
                                    [io_info("y", ["N", 3, 8, 8])], []),
        "node 'plus' (Add): adds [1,3,8,8] and [1,3,1,1]; netcc adds tensors of the same shape "
        "(no broadcasting)")
    put("slice_one_axis", make_model(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"], name="sub")],
        [io_info("x", ["N", 3, 8, 8])], [io_info("y", ["N", 3, 4, 8])],
        [tensor("st", np.array([0], np.int64)), tensor("en", np.array([8], np.int64)),
         tensor("ax", np.array([2], np.int64)), tensor("sp", np.array([2], np.int64))]),
        "node 'sub' (Slice): netcc imports a Slice only as x[:, :, ::s, ::s] (subsample: all "
        "of H and W with one step, all of N and C)")
    put("pad_channels_and_width", make_model(
        [helper.make_node("Pad", ["x", "p"], ["y"], name="pad")],
        [io_info("x", ["N", 3, 8, 8])], [io_info("y", ["N", 5, 8, 10])],
        [tensor("p", np.array([0, 1, 0, 1, 0, 1, 0, 1], np.int64))]),
        "node 'pad' (Pad): pads [0,1,0,1,0,1,0,1] with 0; netcc takes zeros alike on every "
        "side of H and W, folded into the Conv or AveragePool after, or zeros before and after "
        "the channels only")
    # If nodes whose branches hold If nodes, 60 deep: protobuf-c would recurse
    leaf = helper.make_graph([], "leaf", [], [io_info("z", [1])])
    g = leaf
    for _ in range(60):
        g = helper.make_graph([helper.make_node("If", ["c"], ["z"], then_branch=g,
                                                else_branch=leaf)], "g", [], [io_info("z", [1])])
    put("deep_nesting", make_model([helper.make_node("If", ["c"], ["y"], then_branch=g,
                                                     else_branch=leaf)],
                                   [io_info("c", ["N"], TensorProto.BOOL)], [io_info("y", [1])],
                                   []),
        "graphs or types nest deeper than 48 levels; netcc imports plain graphs")


def main():
    os.makedirs(ROOT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(21)
    net = TinyResNet()
    randomise_bn(net, gen)
    x = torch.rand(2, 1, 28, 28, generator=gen)
    export("resnet_folded", net, x)
    export("resnet_kept", net, x, keep_bn=True)
    for name, m, xi, keep, opset in torch_cases(gen):
        export(name, m, xi, keep_bn=keep, opset=opset)
    for name, m, xi, y in helper_cases(gen):
        save_helper_case(name, m, xi, y)
    with open(os.path.join(ROOT, "resnet_folded.onnx"), "rb") as f:
        malformed(gen, f.read())
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print("tests/onnx: %d bytes" % total, file=sys.stderr)


if __name__ == "__main__":
    main()
