"""Tests of the 3D MCGAN training step (Han thesis, sec. 6.2.1, eq. 1 and 2, label flipping)."""

from types import SimpleNamespace

import pytest
import torch
from common.engines import MCGANStep
from common.networks import MCGANContextDiscriminator, MCGANGenerator, MCGANNoduleDiscriminator


def make_step(**kwargs):
    torch.manual_seed(0)
    g = MCGANGenerator(3, base_channels=4)
    c = MCGANContextDiscriminator(3, base_channels=4)
    n = MCGANNoduleDiscriminator(3, base_channels=4)
    opt = lambda net: torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    return MCGANStep(g, c, n, opt(g), opt(c), opt(n), nodule_size=16, **kwargs)


def make_batch(b=2):
    real = torch.rand(b, 1, 32, 32, 32) * 2 - 1
    noisy = real.clone()
    noisy[:, :, 8:24, 8:24, 8:24] = torch.rand(b, 1, 16, 16, 16) - 0.5
    cond = torch.zeros(b, 6)
    cond[:, 0], cond[:, 4] = 1, 1
    image = torch.cat([noisy, cond[:, :, None, None, None].expand(-1, -1, 32, 32, 32)], 1)
    return {"image": image, "target": real, "condition": cond}


def engine(iteration):
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1))


def test_step_updates_all_networks_and_reports_losses():
    step = make_step()
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in step.networks.items()}
    out = step(engine(1), make_batch())
    for key in ("loss_context_d", "loss_nodule_d", "gradient_penalty", "loss_g", "loss_g_context", "loss_g_nodule"):
        assert torch.isfinite(torch.tensor(out[key])), key
    assert "loss_l1" not in out  # eq. 1 by default
    for name, net in step.networks.items():
        changed = any(not torch.equal(a, p) for a, p in zip(before[name], net.parameters()))
        assert changed, name
    samples = step.samples()
    assert samples.shape == (6, 1, 32, 32, 32)


def test_l1_variant_eq2():
    step = make_step(lambda_l1=100.0)
    out = step(engine(1), make_batch())
    assert out["loss_l1"] > 0
    expected = out["loss_g_context"] + out["loss_g_nodule"] + 100.0 * out["loss_l1"]
    assert out["loss_g"] == pytest.approx(expected, rel=1e-5)


def test_composite_only_changes_the_box():
    step = make_step()
    real = torch.zeros(1, 1, 32, 32, 32)
    fake = step.composite(torch.ones_like(real), real)
    assert fake[step.box(real)].eq(1).all() and fake.sum() == 16**3


def test_label_flipping_once_in_three():
    step = make_step()
    assert [step.flipped(engine(i)) for i in range(1, 7)] == [False, False, True, False, False, True]
    assert not any(make_step(label_flip_every=0).flipped(engine(i)) for i in range(1, 7))
    # a flipped iteration trains D1 towards the swapped targets: its loss differs from the unflipped one
    batch = make_batch()
    a = make_step()(engine(1), batch)["loss_context_d"]
    b = make_step()(engine(3), batch)["loss_context_d"]
    assert a != pytest.approx(b)


def test_gradient_penalty_reaches_the_nodule_discriminator():
    step = make_step(lambda_context=0.0)
    d2 = step.networks["nodule_discriminator"]
    batch = make_batch()
    step.gp_weight = 0.0
    step(engine(1), batch)
    no_gp = [p.detach().clone() for p in d2.parameters()]
    step2 = make_step(lambda_context=0.0, gp_weight=1e4)
    out = step2(engine(1), batch)
    assert out["gradient_penalty"] > 0
    moved = [(a - p).abs().sum().item() for a, p in zip(no_gp, step2.networks["nodule_discriminator"].parameters())]
    assert sum(moved) > 0  # a huge penalty weight leads to a different critic update


def test_nan_stops():
    from common.engines import DivergenceError

    step = make_step()
    batch = make_batch()
    batch["target"][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(DivergenceError):
        step(engine(1), batch)
