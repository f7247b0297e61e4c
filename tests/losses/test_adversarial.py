import math

import pytest
import torch
from common.losses import AdversarialLoss, gradient_penalty


def test_bce_known_values():
    loss = AdversarialLoss("bce")
    zeros = torch.zeros(4, 1)
    assert loss(zeros, True).item() == pytest.approx(math.log(2))
    assert loss(torch.full((2, 1), 3.0), False).item() == pytest.approx(math.log1p(math.exp(3.0)), rel=1e-5)
    # non-saturating generator loss = BCE against the real label
    assert loss(torch.full((2, 1), -1.0), True, for_discriminator=False).item() == pytest.approx(
        math.log1p(math.exp(1.0)), rel=1e-5
    )


def test_lsgan_wgan_hinge_known_values():
    x = torch.tensor([[0.5], [2.0]])
    assert AdversarialLoss("lsgan")(x, True).item() == pytest.approx(((0.5 - 1) ** 2 + (2 - 1) ** 2) / 2)
    assert AdversarialLoss("least_squares")(x, False).item() == pytest.approx((0.25 + 4) / 2)
    assert AdversarialLoss("wgan")(x, True).item() == pytest.approx(-1.25)
    assert AdversarialLoss("wgan")(x, False).item() == pytest.approx(1.25)
    assert AdversarialLoss("wgan")(x, True, for_discriminator=False).item() == pytest.approx(-1.25)
    hinge = AdversarialLoss("hinge")
    assert hinge(x, True).item() == pytest.approx((0.5 + 0.0) / 2)  # relu(1 - x)
    assert hinge(x, False).item() == pytest.approx((1.5 + 3.0) / 2)  # relu(1 + x)
    assert hinge(x, True, for_discriminator=False).item() == pytest.approx(-1.25)


def test_label_smoothing_and_lists():
    loss = AdversarialLoss("lsgan", real_label=0.9)
    assert loss(torch.full((1, 1), 0.9), True).item() == pytest.approx(0.0, abs=1e-7)
    multi = AdversarialLoss("lsgan")([torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)], True)
    assert multi.item() == pytest.approx(0.5)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="criterion"):
        AdversarialLoss("foo")
    with pytest.raises(ValueError, match="generator"):
        AdversarialLoss("bce")(torch.zeros(1, 1), False, for_discriminator=False)


def test_bce_under_autocast_cpu():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = AdversarialLoss("bce")(torch.zeros(2, 1, dtype=torch.bfloat16), True)
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize("spatial", [(6, 6), (4, 4, 4)])
def test_gradient_penalty_linear_critic_exact(spatial):
    # D(x) = <w, x> has gradient w everywhere: the penalty is (||w|| - 1)^2 whatever the interpolation
    torch.manual_seed(0)
    shape = (3, 2, *spatial)
    w = torch.randn(1, *shape[1:])

    def critic(x):
        return (x * w).flatten(1).sum(1, keepdim=True)

    gp = gradient_penalty(critic, torch.randn(shape), torch.randn(shape))
    assert gp.item() == pytest.approx((w.norm().item() - 1.0) ** 2, rel=1e-4)
    # a critic with one score per sample, (B,) instead of (B, 1), gives the same penalty
    flat = gradient_penalty(lambda x: critic(x)[:, 0], torch.randn(shape), torch.randn(shape))
    assert flat.item() == pytest.approx(gp.item(), rel=1e-4)


def test_gradient_penalty_patch_critic_uses_per_sample_mean():
    # a patch critic returning x itself: per-sample score = mean(x), gradient = 1/N per element -> norm 1/sqrt(N)
    shape = (2, 1, 4, 4)
    n = 16
    gp = gradient_penalty(lambda x: x, torch.randn(shape), torch.randn(shape))
    assert gp.item() == pytest.approx((1.0 / math.sqrt(n) - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_has_graph_to_critic_parameters():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    gp = gradient_penalty(critic, torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4))
    gp.backward()
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0
