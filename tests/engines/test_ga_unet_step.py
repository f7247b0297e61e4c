"""Tests of the GA-UNet training step (paper 002, Algorithm 1: WGAN-GP, eq. 4 + eq. 5, on same-class pairs).

The networks are tiny stand-ins with the interfaces of ``GAUNetGenerator`` (``G(x, z, labels=None)``) and
``GAUNetCritic`` (``D(image, condition, labels=None) -> (B,)``). The critic is linear in the image, so its gradient
with respect to the image slot, and thus the penalty and the update, have closed forms.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from common.data import SameClassPairDataset
from common.engines import CheckpointHandler, GAUNetStep, ResumeHandler, StepTrainer, latest_checkpoint
from ignite.engine import Events
from monai.data import DataLoader

SHAPE = (1, 4, 4)
LATENT = 3


class TinyGenerator(nn.Module):
    """``tanh(conv1x1(x) + proj(z) [+ embed(labels)])``, recording its outputs and the labels it was given."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.proj = nn.Linear(LATENT, 1)
        self.embed = nn.Embedding(num_classes, 1) if num_classes else None
        self.outputs, self.labels = [], []

    def forward(self, x, z=None, labels=None):
        h = self.conv(x) + self.proj(z)[:, :, None, None]
        if labels is not None:
            h = h + self.embed(labels)[:, :, None, None]
        out = torch.tanh(h)
        self.outputs.append(out.detach().float())
        self.labels.append(labels)
        return out


class LinearPairCritic(nn.Module):
    """``D(image, c) = sum(w * image) + sum(u * image * c) + sum(v * c) [+ embed(labels)]``, scores ``(B,)``.

    Its gradient with respect to the image is ``w + u * c`` whatever the image: the gradient penalty at any
    interpolate is ``mean_b (||w + u * c_b|| - 1)^2``.
    """

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(SHAPE) * 0.5)
        self.u = nn.Parameter(torch.randn(SHAPE) * 0.5)
        self.v = nn.Parameter(torch.randn(SHAPE) * 0.5)
        self.embed = nn.Embedding(num_classes, 1) if num_classes else None
        self.labels, self.inputs = [], []

    def forward(self, image, condition, labels=None):
        self.labels.append(labels)
        self.inputs.append((image.detach().float(), condition.detach().float(), image.requires_grad))
        score = (self.w * image + self.u * image * condition + self.v * condition).flatten(1).sum(1)
        if labels is not None:
            score = score + self.embed(labels)[:, 0]
        return score


def engine(iteration):
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1))


def batch(b=3):
    return {"image": torch.rand(b, *SHAPE) * 2 - 1, "pair": torch.rand(b, *SHAPE) * 2 - 1, "class": torch.arange(b)}


def make_step(optimizer="sgd", num_classes=0, **kwargs):
    torch.manual_seed(0)
    g, d = TinyGenerator(num_classes), LinearPairCritic(num_classes)
    if optimizer == "sgd":
        opt = lambda net: torch.optim.SGD(net.parameters(), lr=0.1)  # noqa: E731
    else:  # Algorithm 1's Adam, given by the config
        opt = lambda net: torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.0, 0.9))  # noqa: E731
    return GAUNetStep(g, d, opt(g), opt(d), latent_dim=LATENT, use_labels=num_classes > 0, **kwargs), g, d


def scores(w, u, v, image, cond):
    return (w * image + u * image * cond + v * cond).flatten(1).sum(1)


def test_gradient_penalty_and_critic_loss_equal_the_closed_form():
    step, g, d = make_step()
    data = batch()
    x_i, x_j = data["image"], data["pair"]
    w, u, v = (p.detach().clone() for p in (d.w, d.u, d.v))
    out = step(engine(1), data)
    x_g = g.outputs[0]  # the critic update's generated images
    # eq. 5 on interpolates between x_j and x_g, the condition x_i held fixed: grad = w + u * x_i
    penalty = ((w + u * x_i).flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert out["gradient_penalty"] == pytest.approx(penalty.item(), rel=1e-5)
    # Algorithm 1 line 6 for the pair critic: x_hat on the segment from x_j to x_g, condition x_i
    x_hat, condition, _ = [i for i in d.inputs if i[2]][0]  # the penalty: first image needing gradients
    assert torch.equal(condition, x_i)
    eps = ((x_hat - x_g) / (x_j - x_g)).flatten(1)
    assert torch.allclose(eps, eps[:, :1].expand_as(eps), atol=1e-4) and ((eps >= 0) & (eps <= 1)).all()
    # eq. 4: D(x_i, x_g) - D(x_i, x_j), plus lambda = 10 times eq. 5
    wasserstein = scores(w, u, v, x_j, x_i).mean() - scores(w, u, v, x_g, x_i).mean()
    assert out["wasserstein_estimate"] == pytest.approx(wasserstein.item(), rel=1e-5, abs=1e-6)
    assert out["loss_d"] == pytest.approx((-wasserstein + 10 * penalty).item(), rel=1e-5, abs=1e-6)


def test_one_iteration_updates_the_critic_then_the_generator_as_algorithm_1():
    step, g, d = make_step(gp_weight=0.0)
    data = batch()
    x_i, x_j = data["image"], data["pair"]
    w, u, v = (p.detach().clone() for p in (d.w, d.u, d.v))
    g_before = [p.detach().clone() for p in g.parameters()]
    out = step(engine(1), data)
    x_g, x_g2 = g.outputs[0], g.outputs[1]
    assert not torch.equal(x_g, x_g2)  # the generator update draws new latents (Algorithm 1, line 10)
    # critic descends E[D(x_i, x_g)] - E[D(x_i, x_j)]: SGD step -lr * gradient; the condition-only term cancels.
    # The generator update leaves the critic as the critic update left it (frozen).
    assert torch.allclose(d.w, w - 0.1 * (x_g.mean(0) - x_j.mean(0)), atol=1e-6)
    assert torch.allclose(d.u, u - 0.1 * ((x_g * x_i).mean(0) - (x_j * x_i).mean(0)), atol=1e-6)
    assert torch.equal(d.v, v)
    # generator loss: -mean D(x_i, G(z', x_i)) with the updated critic
    expected = -scores(d.w, d.u, d.v, x_g2, x_i).mean()
    assert out["loss_g"] == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert any(not torch.equal(a, p) for a, p in zip(g_before, g.parameters()))
    samples = step.samples()
    assert samples.shape == (9, *SHAPE) and torch.equal(samples[3:6], x_j) and torch.equal(samples[6:], x_g2)


def test_n_critic_updates_per_generator_update():
    step, g, d = make_step(optimizer="adam", n_critic=3)
    outputs = [step(engine(it), batch()) for it in range(1, 7)]
    assert ["loss_g" in o for o in outputs] == [False, False, True, False, False, True]
    critic_steps = step.optimizers["discriminator"].state[d.w]["step"]
    generator_steps = step.optimizers["generator"].state[g.conv.weight]["step"]
    assert (int(critic_steps), int(generator_steps)) == (6, 2)


def test_labels_reach_both_networks_and_amp_runs():
    step, g, d = make_step(num_classes=3, amp=True, amp_dtype="bfloat16")
    data = batch()
    out = step(engine(1), data)
    assert all(np.isfinite(v) for v in out.values()) and "loss_g" in out
    assert len(g.labels) == 2 and len(d.labels) >= 4  # critic: real, fake, penalty, generator update
    for labels in g.labels + d.labels:
        assert torch.equal(labels, data["class"])
    unlabelled, g, d = make_step()
    unlabelled(engine(1), data)
    assert all(labels is None for labels in g.labels + d.labels)


def test_baselines_without_the_image_condition():
    """GAN / cGAN of Table II: both networks get zeros where GA-UNet gives x_i; the critic's real image is x_j."""
    step, g, d = make_step(num_classes=3, image_condition=False)
    data = batch()
    step(engine(1), data)
    assert all(not c.any() for _, c, _ in d.inputs)  # every critic call: condition slot zeros
    reals = [i for i, c, grad in d.inputs if not grad and torch.equal(i, data["pair"])]
    assert reals, "the critic never saw x_j as the real image"
    assert all(torch.equal(labels, data["class"]) for labels in g.labels)  # cGAN: the class still conditions


def test_two_iterations_with_the_step_trainer_on_pairs():
    images = [{"image": np.full(SHAPE, k / 8, np.float32), "class": k % 2} for k in range(8)]
    loader = DataLoader(SameClassPairDataset(images, seed=1), batch_size=2, shuffle=True)
    step, g, d = make_step(optimizer="adam")
    trainer = StepTrainer("cpu", max_epochs=1, train_data_loader=loader, step=step, epoch_length=2, seed=0)
    trainer.run()
    assert trainer.state.iteration == 2
    assert {"loss_d", "loss_g", "gradient_penalty", "wasserstein_estimate"} <= set(trainer.state.output)
    x_i, x_j = step.samples()[:2], step.samples()[2:4]
    classes = (x_i * 8).round().long() % 2, (x_j * 8).round().long() % 2
    assert torch.equal(*classes) and not torch.equal(x_i, x_j)  # the critic's real pairs are same-class pairs


def _pair_run(ckpt_dir, resume=False, stop_at=None):
    """6 iterations (2 epochs of 3 over a shuffled loader of 4 pair batches), a checkpoint every iteration.

    Returns:
        per iteration: the x_j of the batch (the partner draws) and the losses.
    """
    images = [{"image": np.full(SHAPE, k / 8, np.float32), "class": k % 2} for k in range(8)]
    torch.manual_seed(0)  # MONAI's DataLoader reseeds the dataset from the global generator
    loader = DataLoader(SameClassPairDataset(images, seed=1), batch_size=2, shuffle=True)
    step, _, _ = make_step(optimizer="adam")
    handlers = [
        ResumeHandler(ckpt_dir, step, resume=resume),
        CheckpointHandler(ckpt_dir, step, save_interval=1, epoch_level=False, n_saved=None),
    ]
    trainer = StepTrainer("cpu", 2, loader, step, epoch_length=3, handlers=handlers, seed=0)
    records = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: records.append((step.samples()[2:4].flatten().tolist(), e.state.output))
    )
    if stop_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
    trainer.run()
    return records


def test_resumed_run_draws_the_same_pairs_and_losses(tmp_path):
    """The partner draws live in the dataset's RandomState: a run stopped mid-epoch and resumed equals the full run."""
    full = _pair_run(tmp_path / "full")
    before = _pair_run(tmp_path / "stopped", stop_at=4)
    assert torch.load(latest_checkpoint(tmp_path / "stopped"), weights_only=True)["trainer"]["iteration"] == 4
    after = _pair_run(tmp_path / "stopped", resume=True)
    assert len(full) == 6 and before[:4] + after == full
