# Golden vectors for ops.def's UNARY operators, computed as ../shared/golden's
# are: PyTorch in float64 from float32 inputs, stored as float32. One
# NAME.npz per operator with x, y = f(x), dy (a random upstream gradient)
# and dx, the gradient of sum(y * dy). Run with Debian's interpreter:
#   /usr/bin/python3 tests/unary/gen.py
# A new UNARY op needs its PyTorch function here and its file regenerated;
# tests/test_unary.c finds every UNARY op of ops.def by name.
import os

import numpy as np
import torch

FUNCTIONS = {
    "sigmoid": torch.sigmoid,
}

here = os.path.dirname(os.path.abspath(__file__))
for i, (name, f) in enumerate(sorted(FUNCTIONS.items())):
    g = torch.Generator().manual_seed(1000 + i)
    # wide enough to reach both tails, where exp over- and underflows
    x32 = (torch.randn(2, 3, 5, 7, generator=g) * 4).float()
    x32.view(-1)[:4] = torch.tensor([-100.0, 100.0, 0.0, -0.0])
    dy32 = torch.randn(x32.shape, generator=g).float()
    x = x32.double().requires_grad_()
    y = f(x)
    (y * dy32.double()).sum().backward()
    arrays = {"x": x32, "y": y.detach().float(), "dy": dy32, "dx": x.grad.float()}
    np.savez(os.path.join(here, name + ".npz"), **{k: v.numpy() for k, v in arrays.items()})
