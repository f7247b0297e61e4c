"""kn2row convolutions (``common.networks.blocks.kn2row``): equal to the direct convolution in 2D and 3D (values,
gradients, float64 gradcheck), fp32 error no larger than the direct method's, which layers are eligible. The switch
of a network's layers: ``test_conv_algorithms.py``."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from common.networks.blocks.kn2row import kn2row_conv, kn2row_eligible

CONV = {2: F.conv2d, 3: F.conv3d}


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
    dims = len(shape) - 2
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn((out_channels, shape[1]) + kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True)
    ours = kn2row_conv(x, w, b, padding)
    ref = CONV[dims](x, w, b, padding=padding)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(ours, (x, w, b), grad)
    want = torch.autograd.grad(ref, (x, w, b), grad)
    for g, h in zip(got, want):
        torch.testing.assert_close(g, h, rtol=0, atol=1e-11)
    if x.numel() <= 150:  # the small cases, 2D and 3D: gradcheck perturbs every element
        assert torch.autograd.gradcheck(lambda *t: kn2row_conv(*t, padding), (x, w, b))


def test_fp32_error_is_no_larger_than_the_direct_methods():
    """Against a float64 reference, at a CycleGAN generator's output layer (64 channels to 1, 7x7): the same products
    summed in another order."""
    torch.manual_seed(0)
    x = torch.randn(1, 64, 40, 40, dtype=torch.float64)
    w = torch.randn(1, 64, 7, 7, dtype=torch.float64) * 0.05
    ref = F.conv2d(x, w, padding=3)
    err_kn2row = (kn2row_conv(x.float(), w.float(), None, 3).double() - ref).abs().max()
    err_direct = (F.conv2d(x.float(), w.float(), padding=3).double() - ref).abs().max()
    assert err_kn2row <= 2 * err_direct
    assert err_kn2row < 1e-4


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
