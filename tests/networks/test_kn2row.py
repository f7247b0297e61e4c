"""kn2row convolutions (``common.networks.blocks.kn2row``): equal to the direct convolution in 2D and 3D (values,
gradients, float64 gradcheck), fp32 error within twice a conventional (im2col) convolution's, which layers are
eligible. The switch
of a network's layers: ``test_conv_algorithms.py``."""

import pytest
import torch
import torch.nn as nn
from common.networks.blocks.kn2row import kn2row_conv, kn2row_eligible
from conv_checks import assert_equals_direct, fp32_errors


@pytest.mark.parametrize(
    "shape, out_channels, kernel, padding",
    [
        ((2, 5, 9, 8), 1, (7, 7), 3),  # a generator's output layer
        ((1, 3, 6, 7), 2, (4, 4), 1),  # a PatchGAN's last layer: even kernel, output one smaller
        ((1, 2, 5, 6), 3, (3, 1), (1, 0)),  # an anisotropic kernel
        ((2, 3, 5, 6, 4), 1, (3, 3, 3), 1),
        ((1, 2, 4, 5, 6), 2, (2, 3, 1), 0),
    ],
)
def test_equals_the_direct_convolution_with_gradients(shape, out_channels, kernel, padding):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn((out_channels, shape[1]) + kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True)
    assert_equals_direct(kn2row_conv, x, w, b, padding, gradcheck=x.numel() <= 150)  # gradcheck: the small cases


def test_fp32_error_is_within_twice_a_conventional_convolutions():
    """Against a float64 reference, at a CycleGAN generator's output layer (64 channels to 1, 7x7): the same products
    summed in another order (measured 2.4e-6 on an AVX-512 Xeon, im2col 1.1e-5, torch's direct 5.5e-6)."""
    torch.manual_seed(0)
    x = torch.randn(1, 64, 40, 40, dtype=torch.float64)
    w = torch.randn(1, 64, 7, 7, dtype=torch.float64) * 0.05
    ours, conventional = fp32_errors(kn2row_conv, x, w, 3)
    assert ours <= 2 * conventional and ours < 1e-4


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="matching channels"):
        kn2row_conv(torch.zeros(1, 2, 8, 8), torch.zeros(1, 3, 3, 3))
    with pytest.raises(ValueError, match="one padding per axis"):
        kn2row_conv(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 3, 3), padding=(1, 1, 1))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        kn2row_conv(torch.zeros(1, 2, 2, 8), torch.zeros(1, 2, 3, 3))


def test_eligibility():
    assert kn2row_eligible(nn.Conv2d(64, 1, 7, padding=3, padding_mode="reflect"))
    assert kn2row_eligible(nn.Conv2d(512, 1, 4, padding=1))
    assert kn2row_eligible(nn.Conv3d(16, 1, 3, padding="same"))
    assert kn2row_eligible(nn.Conv2d(64, 4, 7, padding=3))  # 196 columns
    assert not kn2row_eligible(nn.Conv2d(64, 6, 7, padding=3))  # 294 columns
    assert kn2row_eligible(nn.Conv2d(64, 6, 7, padding=3), max_columns=294)
    assert not kn2row_eligible(nn.Conv3d(16, 1, 7))  # 343 taps
    assert not kn2row_eligible(nn.Conv2d(4, 1, 1))  # one tap: nothing to gain
    assert not kn2row_eligible(nn.Conv2d(4, 1, 3, stride=2))
    assert not kn2row_eligible(nn.Conv2d(4, 1, 3, dilation=2))
    assert not kn2row_eligible(nn.Conv2d(4, 2, 3, groups=2))
    assert not kn2row_eligible(nn.Conv2d(4, 1, 4, padding="same"))  # asymmetric padding
    assert not kn2row_eligible(nn.ConvTranspose2d(4, 1, 3))
    assert not kn2row_eligible(nn.Conv1d(4, 1, 3))
