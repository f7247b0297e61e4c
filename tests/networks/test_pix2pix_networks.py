"""Tests of the pix2pix U-Net generator (Isola et al. 2017) and its test-time dropout."""

import pytest
import torch
from common.networks import Pix2PixGenerator, TestTimeDropout, set_test_time_dropout


def test_reference_layout_256():
    """The 256 px generator has pix2pix's C64-...-C512 encoder, CD512 x 3 decoder, 54.4 M parameters (the reference
    unet_256 with affine instance norm), a 1x1 bottleneck and tanh outputs."""
    g = Pix2PixGenerator(2, 1, 1, num_downs=8)
    assert [d.conv.out_channels for d in g.down] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [u.conv.out_channels for u in g.up] == [512, 512, 512, 512, 256, 128, 64, 1]
    assert [isinstance(u.dropout, TestTimeDropout) for u in g.up] == [True] * 3 + [False] * 5
    assert isinstance(g.down[0].norm, torch.nn.Identity) and isinstance(g.down[-1].norm, torch.nn.Identity)
    assert sum(p.numel() for p in g.parameters()) == 54_413_313
    assert g.down[-1].conv.kernel_size == (4, 4) and g.down[-1].conv.stride == (2, 2)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes_range_and_skips(spatial_dims):
    torch.manual_seed(0)
    g = Pix2PixGenerator(spatial_dims, 1, 2, num_downs=3, base_channels=4, max_channels=8).eval()
    x = torch.zeros(2, 1, *[16] * spatial_dims)
    x[(slice(None), 0) + (slice(4, 8),) * spatial_dims] = 1.0
    y = g(x)
    assert y.shape == (2, 2, *[16] * spatial_dims) and y.abs().max() <= 1.0
    # the output changes where the box moves (the U-Net skips carry the condition's layout)
    moved = torch.roll(x, 6, dims=2)
    delta = (g(moved) - y).abs().mean(1)[0]
    assert delta.max() > 0
    with pytest.raises(ValueError, match="divisible by 2\\*\\*num_downs = 8"):
        g(torch.zeros(1, 1, *[12] * spatial_dims))


def test_dropout_is_the_noise_at_test_time_only_when_enabled():
    torch.manual_seed(0)
    g = Pix2PixGenerator(2, 1, 1, num_downs=4, base_channels=8).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(g(x), g(x))  # eval without test-time dropout: deterministic
        assert set_test_time_dropout(g, True) is g
        a, b = g(x), g(x)
        assert (a - b).abs().max() > 1e-3  # pix2pix's noise: dropout at test time
        set_test_time_dropout(g, False)
        assert torch.equal(g(x), g(x))
    with pytest.raises(ValueError, match="no TestTimeDropout"):
        set_test_time_dropout(Pix2PixGenerator(2, num_downs=2, base_channels=4, num_dropout=0), True)


def test_torchscript_matches_eager():
    torch.manual_seed(0)
    g = Pix2PixGenerator(2, 1, 1, num_downs=4, base_channels=4).eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(torch.jit.script(g)(x), g(x), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"num_downs": 1}, "num_downs"),
        ({"num_dropout": -1}, "num_dropout"),
        ({"dropout": 1.0}, "dropout"),
        ({"norm": "group"}, "norm"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Pix2PixGenerator(**{"spatial_dims": 2, **kwargs})
