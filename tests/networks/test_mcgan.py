"""Tests of the 3D MCGAN networks (Han thesis, sec. 6.2.1, Fig. 17)."""

import pytest
import torch
import torch.nn as nn
from common.networks import MCGANContextDiscriminator, MCGANGenerator, MCGANNoduleDiscriminator, mcgan, tile_conditions


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes(spatial_dims):
    voi, nodule = [32] * spatial_dims, [16] * spatial_dims
    gen = MCGANGenerator(spatial_dims, base_channels=4)
    x = torch.randn(2, 7, *voi)
    y = gen(x)
    assert y.shape == (2, 1, *voi) and y.abs().max() <= 1.0
    d1 = MCGANContextDiscriminator(spatial_dims, base_channels=4)
    assert d1(x[:, :1], y).shape == (2, 1, *([2] * spatial_dims))
    d2 = MCGANNoduleDiscriminator(spatial_dims, base_channels=4)
    cond = torch.eye(6)[:2]
    centre = (slice(None), slice(None)) + (slice(8, 24),) * spatial_dims
    out = d2(y[centre], cond)
    assert out.shape == (2, 1, *([2] * spatial_dims))
    assert torch.equal(out, d2(y[centre], tile_conditions(cond, nodule)))  # vector and tiled conditions agree


def test_generator_layout_at_64():
    gen = MCGANGenerator(3, base_channels=8)
    convs = [m for m in gen.modules() if isinstance(m, nn.Conv3d)]
    deconvs = [m for m in gen.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert len(convs) == 4 and len(deconvs) == 4  # "4 convolutional layers in encoders and 4 deconvolutional layers"
    assert sum(isinstance(m, nn.BatchNorm3d) for m in gen.modules()) == 6
    assert sum(isinstance(m, nn.LeakyReLU) for m in gen.modules()) == 4
    assert sum(isinstance(m, nn.ReLU) for m in gen.modules()) == 3
    assert sum(isinstance(m, nn.Dropout) for m in gen.modules()) == 3
    gen.eval()
    y = gen(torch.randn(1, 7, 64, 64, 64))
    assert y.shape == (1, 1, 64, 64, 64)
    d1 = MCGANContextDiscriminator(3, base_channels=4)
    assert d1(y, y).shape == (1, 1, 6, 6, 6)
    assert MCGANNoduleDiscriminator(3, base_channels=4)(y[..., :32, :32, :32], torch.eye(6)[:1]).shape == (
        1,
        1,
        6,
        6,
        6,
    )


def test_skips_carry_the_context():
    """With skips, outputs depend on the input everywhere; changing only the surroundings changes the output."""
    torch.manual_seed(0)
    gen = MCGANGenerator(3, base_channels=4).eval()
    x = torch.randn(1, 7, 32, 32, 32)
    x2 = x.clone()
    x2[:, 0, :4] += 1.0
    assert not torch.allclose(gen(x)[..., :4, :, :], gen(x2)[..., :4, :, :])


def test_torchscript_and_errors():
    gen = MCGANGenerator(3, base_channels=4).eval()
    scripted = torch.jit.script(gen)
    x = torch.randn(1, 7, 32, 32, 32)
    assert torch.allclose(scripted(x), gen(x), atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        gen(torch.randn(1, 6, 32, 32, 32))
    with pytest.raises(ValueError, match="divisible"):
        gen(torch.randn(1, 7, 24, 32, 32))


def _reference_pix2pix_init(module: nn.Module) -> None:
    """pix2pix initialisation by its definition: convolutions N(0, 0.02), zero biases, batch-norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_generator_initialisation_is_pix2pix(spatial_dims, monkeypatch):
    """MONAI's normal_init gives, for a fixed seed, exactly the weights of the pix2pix initialisation."""
    torch.manual_seed(5)
    gen = MCGANGenerator(spatial_dims, base_channels=4)
    monkeypatch.setattr(mcgan, "normal_init", lambda m: None)
    torch.manual_seed(5)
    reference = MCGANGenerator(spatial_dims, base_channels=4)
    _reference_pix2pix_init(reference)
    for (name, value), expected in zip(gen.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(value, expected), name
    norms = [m for m in gen.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
    assert norms and all(torch.all(m.bias == 0) for m in norms)
    assert all(torch.all((m.weight - 1.0).abs() < 0.1) for m in norms)  # N(1, 0.02): within 5 standard deviations
