"""Tests of the progressive GAN layers and networks (Karras et al. 2018; Han thesis sec. 4.2.2 and 5.2.2)."""

import math

import pytest
import torch
import torch.nn.functional as F
from common.networks import ConditionalSynthesisNetwork, ProgressiveDiscriminator, ProgressiveGenerator
from common.networks.blocks import EqualizedConv, EqualizedLinear, MinibatchStdDev, PixelNorm
from common.networks.progressive import progressive_channels, progressive_resolutions


def test_pixel_norm_gives_unit_rms_per_position():
    x = torch.randn(3, 7, 5, 4) * 10
    y = PixelNorm()(x)
    assert torch.allclose(y.pow(2).mean(dim=1), torch.ones(3, 5, 4), atol=1e-5)
    assert torch.allclose(y * x.pow(2).mean(dim=1, keepdim=True).sqrt(), x, atol=1e-4)


def test_minibatch_stddev_on_hand_made_batch():
    # 4 samples, 2 channels, 1x1: one group of 4. Channel 0 values 0, 2, 0, 2 (std 1), channel 1 all 5 (std 0)
    x = torch.tensor([[0.0, 5.0], [2.0, 5.0], [0.0, 5.0], [2.0, 5.0]]).reshape(4, 2, 1, 1)
    y = MinibatchStdDev(group_size=4, eps=0.0)(x)
    assert y.shape == (4, 3, 1, 1)
    assert torch.equal(y[:, :2], x)
    assert torch.allclose(y[:, 2], torch.full((4, 1, 1), 0.5))  # mean of stds (1 + 0) / 2
    # group size 2 on a batch of 4: groups {0, 2} and {1, 3} (sample i in group i % 2)
    x2 = torch.tensor([0.0, 0.0, 4.0, 2.0]).reshape(4, 1, 1, 1)
    y2 = MinibatchStdDev(group_size=2, eps=0.0)(x2)
    assert torch.allclose(y2[:, 1].flatten(), torch.tensor([2.0, 1.0, 2.0, 1.0]))


def test_minibatch_stddev_odd_batch_and_3d():
    y = MinibatchStdDev(4)(torch.randn(3, 2, 2, 2, 2))
    assert y.shape == (3, 3, 2, 2, 2) and torch.isfinite(y).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_equalized_conv_weights_unit_normal_and_runtime_scale(spatial_dims):
    torch.manual_seed(0)
    conv = EqualizedConv(spatial_dims, 64, 64, 3)
    w = conv.conv.weight
    assert abs(w.mean().item()) < 0.02 and abs(w.std().item() - 1.0) < 0.02
    assert conv.scale == pytest.approx(math.sqrt(2.0 / (64 * 3**spatial_dims)))
    with torch.no_grad():
        conv.conv.bias.normal_()
    x = torch.randn(2, 64, *([5] * spatial_dims))
    fn = F.conv2d if spatial_dims == 2 else F.conv3d
    assert torch.allclose(conv(x), fn(x, w * conv.scale, conv.conv.bias, padding=1), atol=1e-5)


def test_equalized_linear_scale():
    lin = EqualizedLinear(100, 3, gain=1.0)
    assert lin.scale == pytest.approx(0.1)
    x = torch.randn(4, 100)
    assert torch.allclose(lin(x), x @ (lin.linear.weight * 0.1).T + lin.linear.bias, atol=1e-5)


def test_resolutions_and_channels():
    assert progressive_resolutions(256) == [4, 8, 16, 32, 64, 128, 256]
    assert progressive_channels(7) == [512, 512, 512, 512, 256, 128, 64]
    with pytest.raises(ValueError):
        progressive_resolutions(96)


def _nets(spatial_dims, cond=0, size=16):
    torch.manual_seed(0)
    g = ProgressiveGenerator(spatial_dims, 8, 2, size, fmap_base=32, fmap_max=8, condition_channels=cond)
    d = ProgressiveDiscriminator(spatial_dims, 2, size, fmap_base=32, fmap_max=8, condition_channels=cond)
    return g, d


@pytest.mark.parametrize("spatial_dims,cond", [(2, 0), (3, 0), (2, 1)])
def test_generator_alpha_zero_equals_upsampled_previous_stage(spatial_dims, cond):
    g, _ = _nets(spatial_dims, cond)
    z = torch.randn(3, 8)
    c = (torch.rand(3, 1, *[16] * spatial_dims) > 0.7).float() if cond else None
    for stage in range(1, g.num_stages):
        new = g(z, c, stage, 0.0)
        prev = g(z, c, stage - 1, 1.0)
        assert new.shape[2:] == (4 * 2**stage,) * spatial_dims
        assert torch.allclose(new, F.interpolate(prev, scale_factor=2, mode="nearest"), atol=1e-6)
        half = g(z, c, stage, 0.5)
        full = g(z, c, stage, 1.0)
        assert not torch.allclose(half, new) and not torch.allclose(half, full)


@pytest.mark.parametrize("spatial_dims,cond", [(2, 0), (3, 0), (2, 1)])
def test_discriminator_alpha_zero_equals_previous_stage_on_downsampled_input(spatial_dims, cond):
    _, d = _nets(spatial_dims, cond)
    c = (torch.rand(4, 1, *[16] * spatial_dims) > 0.7).float() if cond else None
    pool = F.avg_pool2d if spatial_dims == 2 else F.avg_pool3d
    for stage in range(1, d.num_stages):
        x = torch.randn(4, 2, *[4 * 2**stage] * spatial_dims)
        assert torch.allclose(d(x, c, stage, 0.0), d(pool(x, 2), c, stage - 1, 1.0), atol=1e-5)
        assert not torch.allclose(d(x, c, stage, 1.0), d(pool(x, 2), c, stage - 1, 1.0))


def test_condition_changes_generator_output_locally_and_is_required():
    g, d = _nets(2, cond=1)
    z = torch.randn(2, 8)
    with pytest.raises(ValueError):
        g(z)
    c0 = torch.zeros(2, 1, 16, 16)
    c1 = c0.clone()
    c1[:, :, 2:5, 2:5] = 1.0
    change = (g(z, c1) - g(z, c0)).abs()
    assert change[:, :, :8, :8].mean() > change[:, :, 10:, 10:].mean()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torchscript_fixed_stage(spatial_dims):
    g, d = _nets(spatial_dims)
    z = torch.randn(2, 8)
    assert torch.allclose(torch.jit.script(g)(z), g(z), atol=1e-6)
    x = torch.randn(2, 2, *[16] * spatial_dims)
    assert torch.allclose(torch.jit.script(d)(x), d(x), atol=1e-6)


def test_conditional_synthesis_network_loads_generator_weights_and_scripts():
    g, _ = _nets(2, cond=1)
    net = ConditionalSynthesisNetwork(2, latent_size=8, out_channels=2, image_size=16, fmap_base=32, fmap_max=8)
    net.load_state_dict(g.state_dict())
    c, z = torch.rand(2, 1, 16, 16), torch.randn(2, 8)
    scripted = torch.jit.script(net)
    assert torch.allclose(scripted(c, z), g(z, c), atol=1e-6)
    assert torch.allclose(scripted(c), g(torch.zeros(2, 8), c), atol=1e-6)
