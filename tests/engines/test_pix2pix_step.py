"""Tests of the pix2pix training step (Isola et al. 2017, eq. 4; Han thesis sec. 5.2.2 image-to-image GAN)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from common.engines import Pix2PixStep
from common.losses import AdversarialLoss
from common.networks import PatchGANDiscriminator, Pix2PixGenerator


def make_step(spatial_dims=2, **kwargs):
    torch.manual_seed(0)
    g = Pix2PixGenerator(spatial_dims, 1, 1, num_downs=3, base_channels=4, max_channels=8, dropout=0.0)
    d = PatchGANDiscriminator(spatial_dims, in_channels=2, base_channels=4, num_layers=1, norm="batch")
    opt = lambda net: torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    return Pix2PixStep(g, d, opt(g), opt(d), **kwargs)


def make_batch(spatial_dims=2, b=2, size=16):
    torch.manual_seed(1)
    cond = torch.zeros(b, 1, *[size] * spatial_dims)
    cond[(slice(None), 0) + (slice(4, 9),) * spatial_dims] = 1.0
    image = torch.rand(b, 1, *[size] * spatial_dims) * 2 - 1
    return {"image": image, "condition": cond}


def engine(iteration=1):
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_losses_are_pix2pix_eq4(spatial_dims):
    """The reported losses are the halved cross-entropy of D on (x, y) and (x, G(x)) pairs, and G's adversarial term
    plus 100 x L1, recomputed here from copies of the networks before the update."""
    step = make_step(spatial_dims)
    batch = make_batch(spatial_dims)
    g = Pix2PixGenerator(spatial_dims, 1, 1, num_downs=3, base_channels=4, max_channels=8, dropout=0.0)
    g.load_state_dict(step.networks["generator"].state_dict())
    d = PatchGANDiscriminator(spatial_dims, in_channels=2, base_channels=4, num_layers=1, norm="batch")
    d.load_state_dict(step.networks["discriminator"].state_dict())
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in step.networks.items()}
    out = step(engine(), batch)
    bce = AdversarialLoss("bce")
    x, y = batch["condition"], batch["image"]
    with torch.no_grad():
        fake = g(x)
        expected_d = 0.5 * (bce(d(torch.cat([x, y], 1)), True) + bce(d(torch.cat([x, fake], 1)), False))
    assert out["loss_d"] == pytest.approx(expected_d.item(), rel=1e-5)
    assert out["loss_l1"] == pytest.approx(F.l1_loss(fake, y).item(), rel=1e-5)
    assert out["loss_g"] == pytest.approx(out["loss_g_adv"] + 100.0 * out["loss_l1"], rel=1e-5)
    for name, net in step.networks.items():
        assert any(not torch.equal(a, p) for a, p in zip(before[name], net.parameters())), name
    assert step.samples().shape == (6, 1, *[16] * spatial_dims)  # conditions, generated, real


def test_l1_pulls_the_generator_to_the_target():
    """Thirty iterations on one random pair reduce the L1 distance by a quarter (lambda 100 dominates the adversarial term); with
    lambda_l1 = 0 the generator sees the adversarial term only and the L1 distance falls much less."""
    batch = make_batch(b=1)
    runs = {}
    for lam in (100.0, 0.0):
        step = make_step(lambda_l1=lam)
        for p in step.optimizers.values():
            p.param_groups[0]["lr"] = 2e-3
        first = step(engine(1), batch)["loss_l1"]
        for i in range(2, 31):
            last = step(engine(i), batch)["loss_l1"]
        runs[lam] = last / first
    assert runs[100.0] < 0.85, runs  # measured 0.73 (lambda 0: 1.00)
    assert runs[100.0] < runs[0.0] - 0.15, runs


def test_n_critic_and_input_checks():
    step = make_step(n_critic=2)
    out = step(engine(1), make_batch())
    assert "loss_g" not in out and "loss_d" in out
    assert "loss_g" in step(engine(2), make_batch())
    bad = make_batch()
    bad["condition"] = bad["condition"][:, :, :8]
    with pytest.raises(ValueError, match="share batch and spatial sizes"):
        step(engine(2), bad)
    with pytest.raises(ValueError, match="lambda_l1"):
        make_step(lambda_l1=-1.0)
