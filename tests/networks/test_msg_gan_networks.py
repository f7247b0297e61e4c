"""MSG-GAN networks (Karnewar & Wang 2020): every scale's output, and every scale reaching the discriminator."""

import pytest
import torch
from common.networks import MSGGANDiscriminator, MSGGANGenerator


def _pair(spatial_dims: int, combine: str = "simple", image_size: int = 16, channels=(8, 6, 4)):
    torch.manual_seed(0)
    g = MSGGANGenerator(spatial_dims, latent_size=8, out_channels=2, image_size=image_size, channels=channels)
    d = MSGGANDiscriminator(spatial_dims, in_channels=2, image_size=image_size, channels=channels, combine=combine)
    return g, d


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_generator_outputs_every_scale(spatial_dims):
    g, d = _pair(spatial_dims)
    z = torch.randn(3, 8)
    images = g.multi_scale(z)
    assert g.resolutions == [4, 8, 16]
    assert [tuple(x.shape) for x in images] == [(3, 2) + (r,) * spatial_dims for r in (4, 8, 16)]
    assert all(x.std() > 0 for x in images)
    assert torch.equal(g(z), images[-1])  # forward is the finest image
    assert d(images).shape == (3, 1)


@pytest.mark.parametrize("combine", ["simple", "lin_cat", "cat_lin"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_every_scale_reaches_the_discriminator(spatial_dims, combine):
    g, d = _pair(spatial_dims, combine)
    images = [x.detach().requires_grad_(True) for x in g.multi_scale(torch.randn(4, 8))]
    score = d(images)
    grads = torch.autograd.grad(score.sum(), images)
    for r, grad in zip(d.resolutions, grads):
        assert grad.abs().sum() > 0, f"no gradient reaches the {r}-pixel image"
    # changing one scale's image alone changes the score
    with torch.no_grad():
        for s in range(len(images)):
            changed = [x.detach().clone() for x in images]
            changed[s] = changed[s] + 0.5 * torch.randn_like(changed[s])
            assert not torch.allclose(d(changed), score.detach()), f"scale {s} does not change the output"


def test_generator_gradients_from_each_scale():
    """The multi-scale gradients reach the generator: a loss on D's score of one coarse image trains the blocks
    that made it, through their own toRGB."""
    g, d = _pair(2)
    images = g.multi_scale(torch.randn(4, 8))
    d(images).sum().backward()
    for name in ("start.to_rgb.conv.weight", "blocks.0.to_rgb.conv.weight", "blocks.1.to_rgb.conv.weight"):
        grad = dict(g.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_single_resolution_and_errors():
    g = MSGGANGenerator(2, latent_size=4, out_channels=1, image_size=4, channels=[4])
    d = MSGGANDiscriminator(2, in_channels=1, image_size=4, channels=[4])
    images = g.multi_scale(torch.randn(2, 4))
    assert len(images) == 1 and d(images).shape == (2, 1)
    with pytest.raises(ValueError, match="combine"):
        MSGGANDiscriminator(2, image_size=8, channels=[4, 4], combine="sum")
    d2 = MSGGANDiscriminator(2, in_channels=1, image_size=8, channels=[4, 4])
    with pytest.raises(ValueError, match="takes 2 images"):
        d2([torch.zeros(2, 1, 8, 8)])
    with pytest.raises(ValueError, match="size 4"):
        d2([torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)])
