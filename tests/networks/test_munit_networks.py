"""MUNIT networks (Huang et al. 2018): AdaIN statistics, encoder/decoder shapes in 2D/3D, TorchScript export."""

import copy

import pytest
import torch
from common.networks import (
    MUNIT,
    AdaptiveInstanceNorm,
    MultiScaleDiscriminator,
    MUNITContentEncoder,
    MUNITGenerator,
    MUNITStyleEncoder,
)
from common.networks.blocks.instance_norm_kernel import use_group_norm_kernel

SMALL = dict(base_channels=4, num_res_blocks=1, mlp_dim=16, style_downsample=2)


def test_adain_output_has_the_style_mean_and_std_per_channel():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 12, 10) * 4.0 + 2.0
    gamma = torch.rand(3, 5) * 3 + 0.5
    beta = torch.randn(3, 5) * 2
    y = AdaptiveInstanceNorm(5)(x, gamma, beta)
    flat = y.flatten(2)
    assert torch.allclose(flat.mean(-1), beta, atol=1e-4)
    assert torch.allclose(flat.std(-1, unbiased=False), gamma, atol=1e-3)
    # the content's spatial pattern survives: correlation with the input per channel is 1
    xc = x.flatten(2) - x.flatten(2).mean(-1, keepdim=True)
    yc = flat - flat.mean(-1, keepdim=True)
    corr = (xc * yc).sum(-1) / (xc.norm(dim=-1) * yc.norm(dim=-1))
    assert torch.allclose(corr, torch.ones_like(corr), atol=1e-4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_adain_norms_take_the_group_norm_kernel_like_the_encoders(spatial_dims):
    """The decoder's AdaIN normalisations are instance norm modules (no state): the group-norm kernel switch takes
    them with the encoders' norms, and the generator computes the same up to rounding, forward and backward."""
    torch.manual_seed(0)
    gen = MUNITGenerator(spatial_dims, 3, **SMALL)
    switched = copy.deepcopy(gen)
    adain = [m for m in gen.dec.modules() if isinstance(m, AdaptiveInstanceNorm)]
    assert len(adain) == 2 * SMALL["num_res_blocks"] and not any(m.state_dict() for m in adain)
    assert use_group_norm_kernel(switched.dec) == len(adain)
    x = torch.randn(2, 3, *(16,) * spatial_dims)
    xs = x.clone().requires_grad_(True)
    x.requires_grad_(True)
    gen(x).square().mean().backward()
    switched(xs).square().mean().backward()
    assert torch.allclose(switched(xs), gen(x), atol=1e-5)
    assert torch.allclose(xs.grad, x.grad, atol=1e-6, rtol=1e-4)
    assert gen.state_dict().keys() == switched.state_dict().keys()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_reconstruction_path_shapes(spatial_dims):
    size = (16,) * spatial_dims
    x = torch.randn(2, 3, *size)
    gen = MUNITGenerator(spatial_dims, 3, **SMALL)
    content, style = gen.encode(x)
    assert content.shape == (2, 16, *(4,) * spatial_dims)  # base 4 * 2^2 channels at 1/4 size
    assert style.shape == (2, 8)
    assert gen.decode(content, style).shape == x.shape
    assert gen(x).shape == x.shape and gen(x).abs().max() <= 1.0
    assert MUNITContentEncoder(spatial_dims, 3, 4, 2, 1)(x).shape == content.shape
    assert MUNITStyleEncoder(spatial_dims, 3, 8, 4, 2)(x).shape == (2, 8)
    d = MultiScaleDiscriminator(spatial_dims, 3, 4, num_layers=2, num_scales=2)(x)
    assert [o.shape for o in d] == [(2, 1, *(4,) * spatial_dims), (2, 1, *(2,) * spatial_dims)]


def test_style_changes_the_translation_and_the_fixed_style_is_stored():
    torch.manual_seed(0)
    model = MUNIT(2, 1, style_seed=3, **SMALL)
    x = torch.randn(2, 1, 16, 16)
    a = model.translate(x, torch.zeros(1, 8))
    b = model.translate(x, torch.ones(1, 8) * 3)
    assert not torch.allclose(a, b)
    assert torch.allclose(model(x), model.translate(x, model.fixed_style))
    assert "fixed_style" in model.state_dict()
    assert torch.equal(MUNIT(2, 1, style_seed=3, **SMALL).fixed_style, model.fixed_style)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_translation_wrapper_is_torchscript_exportable(spatial_dims):
    model = MUNIT(spatial_dims, 1, **SMALL).eval()
    x = torch.randn(1, 1, *(16,) * spatial_dims)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-5)
