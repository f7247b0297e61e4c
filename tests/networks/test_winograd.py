"""Winograd F(2, 3) convolutions (``common.networks.blocks.winograd``): equal to the direct convolution in 2D and
3D (values, gradients, float64 gradcheck; eager and as a ``torch.compile`` trace computes it), fp32 error within
twice a conventional (im2col) convolution's, which layers are eligible. The switch of a network's layers and the training steps'
``conv_algorithm``: ``test_conv_algorithms.py``."""

import pytest
import torch
import torch.nn as nn
from common.networks.blocks.winograd import winograd_conv, winograd_eligible
from conv_checks import assert_equals_direct, fp32_errors


@pytest.mark.parametrize(
    "shape, padding",
    [
        ((2, 5, 7, 9), 0),  # odd output sizes: the last tile is cut
        ((1, 4, 6, 6), 1),
        ((1, 3, 3, 4), 0),  # a 1x2 output: one tile
        ((2, 3, 5, 6, 7), 1),
        ((1, 2, 4, 4, 4), (0, 1, 0)),
    ],
)
@pytest.mark.parametrize("traced", [False, True])
def test_equals_the_direct_convolution_with_gradients(monkeypatch, shape, padding, traced):
    """``traced``: the transforms that a ``torch.compile`` trace takes (stacks instead of ``out=`` writes)."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: traced)
    dims = len(shape) - 2
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn((6, shape[1]) + (3,) * dims, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert_equals_direct(winograd_conv, x, w, b, padding, gradcheck=x.numel() <= 200)  # gradcheck: the small cases


def test_fp32_error_is_within_twice_a_conventional_convolutions():
    """Against a float64 reference, at a CycleGAN residual block's width: the transforms' coefficients (0, +-1,
    +-1/2) add little error (measured 6e-6 on an AVX2 EPYC and 6.7e-6 on an AVX-512 Xeon, im2col 5.1e-6 there;
    torch's direct convolution 3e-5 and 2.7e-6, hence not the baseline: ``conv_checks.fp32_errors``)."""
    torch.manual_seed(0)
    x = torch.randn(1, 256, 18, 18, dtype=torch.float64)
    w = torch.randn(256, 256, 3, 3, dtype=torch.float64) * 0.05
    ours, conventional = fp32_errors(winograd_conv, x, w, 0)
    assert ours <= 2 * conventional and ours < 1e-4


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="3-tap kernel"):
        winograd_conv(torch.zeros(1, 2, 8, 8), torch.zeros(3, 2, 5, 5))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        winograd_conv(torch.zeros(1, 2, 2, 8), torch.zeros(3, 2, 3, 3))


def test_eligibility():
    assert winograd_eligible(nn.Conv2d(4, 4, 3, padding=1))
    assert winograd_eligible(nn.Conv3d(4, 4, 3, padding="same", padding_mode="reflect"))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3, stride=2))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3, dilation=2))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3, groups=2))
    assert not winograd_eligible(nn.Conv2d(4, 4, (3, 1)))
    assert not winograd_eligible(nn.ConvTranspose2d(4, 4, 3))
    assert not winograd_eligible(nn.Conv1d(4, 4, 3))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3), min_channels=8)
    assert winograd_eligible(nn.Conv2d(8, 8, 3), min_channels=8)
