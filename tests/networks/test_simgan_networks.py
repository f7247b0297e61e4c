"""SimGAN refiner and local discriminator (Shrivastava et al. 2017) in 2D/3D."""

import pytest
import torch
from common.networks import SimGANDiscriminator, SimGANRefiner


@pytest.mark.parametrize("spatial_dims,size", [(2, (17, 24)), (3, (8, 10, 12))])
def test_refiner_preserves_size_and_discriminator_is_local(spatial_dims, size):
    x = torch.rand(2, 2, *size) * 2 - 1
    refiner = SimGANRefiner(spatial_dims, 2, base_channels=8, num_res_blocks=2)
    y = refiner(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0
    logits = SimGANDiscriminator(spatial_dims, 2, channels=(8, 8, 4, 4))(x)
    assert logits.shape == (2, 1, *[(s + 3) // 4 for s in size])
    torch.jit.script(refiner)


def test_discriminator_output_depends_only_on_a_local_patch():
    torch.manual_seed(0)
    disc = SimGANDiscriminator(2, 1, channels=(8, 8, 4, 4)).eval()
    x = torch.rand(1, 1, 64, 64)
    y = x.clone()
    y[..., 48:, 48:] = torch.rand(16, 16)  # change only the bottom-right corner
    with torch.no_grad():
        a, b = disc(x), disc(y)
    assert torch.allclose(a[..., :8, :8], b[..., :8, :8])  # far patches unchanged
    assert not torch.allclose(a[..., -2:, -2:], b[..., -2:, -2:])


def test_refiner_without_activation_and_bad_arguments():
    r = SimGANRefiner(2, 1, base_channels=4, num_res_blocks=1, output_act=None)
    assert not isinstance(r.model[-1], torch.nn.Tanh)
    with pytest.raises(ValueError):
        SimGANRefiner(2, 1, output_act="sigmoid")
    with pytest.raises(ValueError):
        SimGANDiscriminator(2, 1, channels=(8, 8))
