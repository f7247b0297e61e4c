"""Checks shared by the tests of the convolution algorithms (``test_winograd.py``, ``test_kn2row.py``): another
algorithm against torch's direct convolution."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

CONV = {2: F.conv2d, 3: F.conv3d}


def assert_equals_direct(conv: Callable, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, padding, gradcheck: bool):
    """``conv(x, w, b, padding)`` equals the direct convolution in float64, values (1e-12) and the gradients of input,
    weight and bias (1e-11); with ``gradcheck`` also torch's numerical gradient check."""
    ours = conv(x, w, b, padding)
    ref = CONV[x.ndim - 2](x, w, b, padding=padding)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(ours, (x, w, b), grad)
    want = torch.autograd.grad(ref, (x, w, b), grad)
    for g, h in zip(got, want):
        torch.testing.assert_close(g, h, rtol=0, atol=1e-11)
    if gradcheck:
        assert torch.autograd.gradcheck(lambda *t: conv(*t, padding), (x, w, b))


def fp32_errors(conv: Callable, x: torch.Tensor, w: torch.Tensor, padding) -> tuple[float, float]:
    """Largest absolute errors of ``conv`` and of the direct convolution, both in fp32, against float64 (2D)."""
    ref = F.conv2d(x, w, padding=padding)
    ours = (conv(x.float(), w.float(), None, padding).double() - ref).abs().max().item()
    direct = (F.conv2d(x.float(), w.float(), padding=padding).double() - ref).abs().max().item()
    return ours, direct
