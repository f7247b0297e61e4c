"""MSG-GAN training step: real image pyramid, the relativistic average hinge, and the updates of both networks."""

from types import SimpleNamespace

import pytest
import torch
from common.engines import MSGGANStep, image_pyramid
from common.losses import relativistic_average_hinge
from common.networks import MSGGANDiscriminator, MSGGANGenerator


def make_step(spatial_dims=2, **kwargs):
    torch.manual_seed(0)
    g = MSGGANGenerator(spatial_dims, latent_size=8, out_channels=1, image_size=8, channels=[4, 4])
    d = MSGGANDiscriminator(spatial_dims, in_channels=1, image_size=8, channels=[4, 4])
    opt = lambda net: torch.optim.Adam(net.parameters(), lr=3e-3, betas=(0.0, 0.99))  # noqa: E731
    return MSGGANStep(g, d, opt(g), opt(d), latent_size=8, **kwargs)


def engine(iteration):
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1))


def test_image_pyramid_is_average_pooling():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    small, mid, full = image_pyramid(x, 3)
    assert full is x and mid.shape == (1, 1, 2, 2) and small.shape == (1, 1, 1, 1)
    assert mid[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert small.item() == pytest.approx(7.5)
    assert [t.shape[2:] for t in image_pyramid(torch.zeros(2, 1, 8, 8, 8), 2)] == [(4, 4, 4), (8, 8, 8)]


def test_relativistic_average_hinge_values():
    real, fake = torch.tensor([[2.0], [0.0]]), torch.tensor([[-1.0], [1.0]])
    # r = real - mean(fake) = [2, 0]; f = fake - mean(real) = [-2, 0]
    assert relativistic_average_hinge(real, fake).item() == pytest.approx((0 + 1) / 2 + (0 + 1) / 2)
    assert relativistic_average_hinge(real, fake, for_discriminator=False).item() == pytest.approx(
        (3 + 1) / 2 + (3 + 1) / 2
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_step_updates_both_networks(spatial_dims):
    step = make_step(spatial_dims)
    before = {k: {n: p.detach().clone() for n, p in net.named_parameters()} for k, net in step.networks.items()}
    real = torch.rand(4, 1, *[8] * spatial_dims) * 2 - 1
    out = step(engine(1), {"image": real})
    assert set(out) == {"loss_d", "loss_g"} and all(torch.isfinite(torch.tensor(v)) for v in out.values())
    for name, net in step.networks.items():
        unchanged = [n for n, p in net.named_parameters() if torch.equal(before[name][n], p)]
        # the relativistic loss depends on score differences only: the last bias gets no gradient
        assert unchanged == (["dense.linear.bias"] if name == "discriminator" else []), name
    assert step.sample(3).shape == (3, 1, *[8] * spatial_dims)


def test_n_critic_and_other_losses():
    step = make_step(n_critic=2, loss="hinge")
    g_before = [p.detach().clone() for p in step.networks["generator"].parameters()]
    out = step(engine(1), {"image": torch.rand(4, 1, 8, 8)})
    assert "loss_g" not in out
    assert all(torch.equal(a, b) for a, b in zip(g_before, step.networks["generator"].parameters()))
    assert "loss_g" in step(engine(2), {"image": torch.rand(4, 1, 8, 8)})
    with pytest.raises(ValueError, match="loss must be one of"):
        make_step(loss="wgan-gp")
