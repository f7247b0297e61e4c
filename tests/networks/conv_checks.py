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


def fp32_errors(conv: Callable, x: torch.Tensor, w: torch.Tensor, padding: int) -> tuple[float, float]:
    """Largest absolute errors against float64 (2D) of ``conv`` and of a conventional convolution, both in fp32.

    The conventional one is im2col and one matrix product (``F.unfold``, then ``@``), whose error is a GEMM's on any
    CPU. torch's direct convolution is not used as the baseline: its error depends on which oneDNN kernel the CPU
    gets (at a 256-channel 3x3 layer 3e-5 on an AVX2 EPYC, 2.7e-6 on an AVX-512 Xeon, where im2col measured 5e-6).
    """
    ref = F.conv2d(x, w, padding=padding)
    ours = (conv(x.float(), w.float(), None, padding).double() - ref).abs().max().item()
    cols = F.unfold(x.float(), w.shape[2:], padding=padding)  # (B, C * taps, positions)
    gemm = (w.float().reshape(w.shape[0], -1) @ cols).reshape(ref.shape)
    return ours, (gemm.double() - ref).abs().max().item()
