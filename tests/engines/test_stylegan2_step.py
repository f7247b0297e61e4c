"""Tests of the StyleGAN2 training step: lazy R1 and path-length updates on their iterations and scaled by their
intervals, the EMA generator, ADA's probability, the checkpointed state, C-SG's conditions and the sample grid.

The networks are tiny stand-ins with the interface of ``StyleGAN2Generator`` (``mapping``, ``synthesis``, ``num_ws``,
``w_avg``) and ``StyleGAN2Discriminator`` (``D(x[, c]) -> (B, 1)``). The discriminator is linear in the image,
``D(x, c) = sum(a * x) + sum(u * c) + bias``, so its R1 penalty is ``sum(a^2)`` for every image, and one SGD step on
``gamma / 2 * interval * sum(a^2)`` multiplies ``a`` by ``1 - lr * gamma * interval``.
"""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from common.engines import (
    AdaptiveAugment,
    CheckpointHandler,
    ResumeHandler,
    StepTrainer,
    StyleGAN2Step,
    latest_checkpoint,
)
from common.networks import StyleGAN2Discriminator, StyleGAN2Generator
from ignite.engine import Events
from monai.data import DataLoader

SIZE = 4
LATENT, STYLE, NUM_WS = 3, 5, 3
LR = 0.01


class TinyGenerator(nn.Module):
    """``w = fc(z)`` broadcast ``num_ws`` times; ``image = sum_l M_l^T w_l [+ conv1x1(c)]``; records its inputs."""

    num_ws = NUM_WS

    def __init__(self, channels: int = 1, condition_channels: int = 0) -> None:
        super().__init__()
        self.channels = channels
        self.fc = nn.Linear(LATENT, STYLE)
        self.weight = nn.Parameter(torch.randn(NUM_WS, STYLE, channels * SIZE * SIZE) * 0.3)
        self.cond = nn.Conv2d(condition_channels, channels, 1) if condition_channels else None
        self.register_buffer("w_avg", torch.zeros(STYLE))
        self.conditions, self.batches = [], []

    def mapping(self, z, truncation_psi=1.0, truncation_cutoff=None):
        w = self.fc(z)
        if self.training:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.9))
        return w[:, None, :].repeat(1, NUM_WS, 1)

    def synthesis(self, ws, condition=None, noise_mode="random"):
        self.conditions.append(None if condition is None else condition.detach().clone())
        self.batches.append(ws.shape[0])
        image = torch.einsum("bld,ldp->bp", ws, self.weight).reshape(-1, self.channels, SIZE, SIZE)
        if self.cond is not None:
            image = image + self.cond(condition)
        return image

    def forward(self, z, condition=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random"):
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), condition, noise_mode)


class LinearDiscriminator(nn.Module):
    """``sum(a * x) + sum(u * c) + bias`` per sample, ``(B, 1)``; records the images and conditions it judges."""

    def __init__(self, channels: int = 1, condition_channels: int = 0, bias: float = 0.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(1, channels, SIZE, SIZE) * 0.1)
        self.u = nn.Parameter(torch.randn(1, condition_channels, SIZE, SIZE) * 0.1) if condition_channels else None
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        self.calls = []

    def forward(self, x, condition=None):
        self.calls.append((x.detach().clone(), None if condition is None else condition.detach().clone()))
        score = (self.a * x).flatten(1).sum(1) + self.bias
        if self.u is not None:
            score = score + (self.u * condition).flatten(1).sum(1)
        return score[:, None]


def engine(iteration):
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1))


def make_step(channels=1, condition_channels=0, bias=0.0, **kwargs):
    torch.manual_seed(0)
    g = TinyGenerator(channels, condition_channels)
    d = LinearDiscriminator(channels, condition_channels, bias)
    ema = copy.deepcopy(g)
    opt = lambda net: torch.optim.SGD(net.parameters(), lr=LR)  # noqa: E731
    kwargs.setdefault("condition_key", "mask" if condition_channels else None)
    return StyleGAN2Step(g, d, ema, opt(g), opt(d), latent_dim=LATENT, **kwargs)


def batch(b=4, channels=1, classes=0):
    out = {"image": torch.rand(b, channels, SIZE, SIZE) * 2 - 1}
    if classes:
        labels = torch.randint(0, classes, (b, 1, SIZE, SIZE))
        out["mask"] = torch.zeros(b, classes, SIZE, SIZE).scatter_(1, labels, 1.0)
    return out


def spy_updates(step):
    """Record ``(optimiser name, loss)`` of every update of ``step``."""
    calls, optimise = [], step.optimise

    def record(engine, name, loss):
        calls.append((name, loss.item()))
        optimise(engine, name, loss)

    step.optimise = record
    return calls


def test_lazy_r1_and_path_length_on_their_iterations_scaled_by_their_intervals():
    gamma, pl_weight = 4.0, 3.0
    step = make_step(r1_gamma=gamma, r1_interval=4, pl_weight=pl_weight, pl_interval=3, pl_batch_shrink=2)
    calls = spy_updates(step)
    disc, gen = step.networks["discriminator"], step.networks["generator"]
    for it in range(1, 9):
        calls.clear()
        gen.batches.clear()
        out = step(engine(it), batch(4))
        names = [name for name, _ in calls]
        assert ("r1_penalty" in out) == (it % 4 == 0) and ("pl_penalty" in out) == ("pl_mean" in out) == (it % 3 == 0)
        assert names == ["discriminator"] * (2 if it % 4 == 0 else 1) + ["generator"] * (2 if it % 3 == 0 else 1)
        if it % 4 == 0:
            # R1 of the linear D is sum(a^2); the update multiplies a by (1 - lr * gamma * interval)
            assert calls[1][1] == pytest.approx(out["r1_penalty"] * gamma / 2 * 4)
            a_before = disc.a.detach() / (1 - LR * gamma * 4)
            assert out["r1_penalty"] == pytest.approx(a_before.square().sum().item(), rel=1e-5)
        if it % 3 == 0:
            assert calls[-1][1] == pytest.approx(out["pl_penalty"] * pl_weight * 3)
            assert gen.batches[-1] == 2  # batch // pl_batch_shrink samples
            assert step.path_length.mean.item() == out["pl_mean"] > 0


def test_no_regulariser_without_weight():
    step = make_step(r1_gamma=0.0, pl_weight=0.0, r1_interval=1, pl_interval=1)
    out = step(engine(1), batch())
    assert set(out) == {"loss_d", "loss_g"}


def test_ema_is_the_lerp_with_the_known_beta_and_copies_buffers():
    # beta = 0.5 ** (batch / (ema_kimg * 1000)) = 0.5 ** (4 / 8)
    step = make_step(ema_kimg=0.008, pl_weight=0.0)
    beta = 0.5**0.5
    g, ema = step.networks["generator"], step.networks["generator_ema"]
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(1.0)
    ema_old = [p.detach().clone() for p in ema.parameters()]
    step(engine(1), batch(4))
    for p_ema, old, p in zip(ema.parameters(), ema_old, g.parameters()):
        torch.testing.assert_close(p_ema, beta * old + (1 - beta) * p.detach())
        assert not torch.allclose(p_ema, p)
        assert not p_ema.requires_grad
    torch.testing.assert_close(ema.w_avg, g.w_avg)
    assert g.w_avg.abs().sum() > 0


def test_ema_rampup_copies_the_generator_at_the_first_iteration():
    # with ema_rampup, ema_nimg = min(ema_kimg * 1000, images_seen * rampup) = 0 before any image: beta = 0
    step = make_step(ema_kimg=10.0, ema_rampup=0.05, pl_weight=0.0)
    step(engine(1), batch(4))
    for p_ema, p in zip(step.networks["generator_ema"].parameters(), step.networks["generator"].parameters()):
        torch.testing.assert_close(p_ema, p.detach())
    beta = step.update_ema(images_seen=1000, batch=4)  # ema_nimg = min(10000, 50) = 50
    assert beta == pytest.approx(0.5 ** (4 / 50))


def test_ada_p_rises_on_its_interval_when_real_logits_are_positive():
    step = make_step(bias=10.0, augment="ada", ada_interval=2, ada_kimg=0.1, pl_weight=0.0)
    out1 = step(engine(1), batch(4))
    assert "real_sign" not in out1 and out1["augment_p"] == 0.0
    out2 = step(engine(2), batch(4))
    # r_t = 1 > 0.6: p += 2 iterations * 4 images / 100
    assert out2["real_sign"] == 1.0 and out2["augment_p"] == pytest.approx(0.08)
    disc = step.networks["discriminator"]
    disc.calls.clear()
    step(engine(3), batch(4))
    assert len(disc.calls) == 3  # real, fake, generator pass: every image D sees goes through the augmentation


def test_state_objects_round_trip_restores_p_and_pl_mean():
    step = make_step(augment="ada", ada_interval=1, ada_kimg=0.1, bias=10.0, pl_interval=1)
    for it in (1, 2):
        step(engine(it), batch(4))
    objects = step.state_objects()
    assert {"augment", "path_length", "generator_ema"} <= set(objects)
    fresh = make_step(augment="ada", ada_interval=1, ada_kimg=0.1, pl_interval=1)
    fresh_objects = fresh.state_objects()
    for name, obj in objects.items():
        fresh_objects[name].load_state_dict(copy.deepcopy(obj.state_dict()))
    assert fresh.augment_pipe.p.item() == step.augment_pipe.p.item() > 0
    assert fresh.path_length.mean.item() == step.path_length.mean.item() > 0


def _resumable_run(ckpt_dir, resume=False, stop_at=None):
    """6 iterations (2 epochs of 3) of C-SG with ADA (p rising by 0.2 per iteration), a checkpoint every iteration.

    Returns:
        the outputs of every iteration and the final step.
    """
    rng = np.random.default_rng(0)
    one_hot = np.eye(2, dtype=np.float32)
    data = [
        {
            "image": rng.uniform(-1, 1, (1, SIZE, SIZE)).astype(np.float32),
            "mask": one_hot[rng.integers(0, 2, (SIZE, SIZE))].transpose(2, 0, 1).copy(),
        }
        for _ in range(8)
    ]
    torch.manual_seed(0)
    loader = DataLoader(data, batch_size=2, shuffle=True)
    step = make_step(
        condition_channels=2, bias=10.0, augment="ada", ada_interval=1, ada_kimg=0.01, pl_interval=2, r1_interval=2
    )
    handlers = [
        ResumeHandler(ckpt_dir, step, resume=resume),
        CheckpointHandler(ckpt_dir, step, save_interval=1, epoch_level=False, n_saved=None),
    ]
    trainer = StepTrainer("cpu", 2, loader, step, epoch_length=3, handlers=handlers, seed=0)
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    if stop_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
    trainer.run()
    return outputs, step


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    full, full_step = _resumable_run(tmp_path / "full")
    before, _ = _resumable_run(tmp_path / "stopped", stop_at=3)
    assert torch.load(latest_checkpoint(tmp_path / "stopped"), weights_only=True)["trainer"]["iteration"] == 3
    after, resumed_step = _resumable_run(tmp_path / "stopped", resume=True)
    assert len(full) == 6 and before + after == full
    assert 0 < full[2]["augment_p"] < full[-1]["augment_p"]  # the augmentation ran, with a p that was restored
    assert {"r1_penalty", "pl_penalty", "pl_mean", "real_sign"} <= set(full[-1])
    assert resumed_step.path_length.mean.item() == full_step.path_length.mean.item()
    for p_resumed, p_full in zip(
        resumed_step.networks["generator_ema"].parameters(), full_step.networks["generator_ema"].parameters()
    ):
        torch.testing.assert_close(p_resumed, p_full, rtol=0, atol=0)


def test_csg_discriminator_judges_real_and_fake_with_the_batch_masks():
    step = make_step(channels=2, condition_channels=3, style_mixing_prob=1.0, pl_interval=1)
    data = batch(4, channels=2, classes=3)
    step(engine(1), data)
    disc, gen = step.networks["discriminator"], step.networks["generator"]
    # D main pass: real then fake; G pass: fake; all with the batch's masks
    assert len(disc.calls) == 3
    for _, condition in disc.calls:
        torch.testing.assert_close(condition, data["mask"])
    torch.testing.assert_close(disc.calls[0][0], data["image"])
    for condition in gen.conditions[:2]:  # the D pass's and the G pass's fakes are generated from the masks
        torch.testing.assert_close(condition, data["mask"])
    torch.testing.assert_close(gen.conditions[-1], data["mask"][:2])  # path-length pass on batch // 2 samples


@pytest.mark.parametrize("augment", ["ada", "diffaugment"])
def test_csg_augmentation_moves_the_mask_with_its_image(augment):
    step = make_step(condition_channels=1, augment=augment, pl_weight=0.0)
    if augment == "ada":  # the geometric transformations at p = 1 (colour would change the image only)
        step.augment_pipe = AdaptiveAugment(transforms=("xflip", "rotate90", "xint", "scale", "rotate"), initial_p=1)
    data = batch(6, classes=1)
    data["mask"] = (torch.rand(6, 1, SIZE, SIZE) > 0.5).float()
    data["image"] = data["mask"] * 2 - 1  # the image is its mask: after augmentation they must still agree
    step(engine(1), data)
    image, condition = step.networks["discriminator"].calls[0]
    assert not torch.equal(condition, data["mask"])  # it was augmented
    torch.testing.assert_close(image, condition * 2 - 1)


def test_samples_show_real_masks_and_ema_samples():
    step = make_step(channels=2, condition_channels=3, pl_weight=0.0)
    with pytest.raises(RuntimeError, match="no training iteration"):
        step.samples()
    data = batch(3, channels=2, classes=3)
    step(engine(1), data)
    grid = step.samples()
    assert grid.shape == (9, 2, SIZE, SIZE)  # 3 real, 3 label maps, 3 EMA samples (one per mask)
    torch.testing.assert_close(grid[:3], data["image"])
    torch.testing.assert_close(grid[3:6, 0], data["mask"].argmax(1).float())
    assert step.networks["generator_ema"].training  # mode restored
    plain = make_step(pl_weight=0.0)
    plain(engine(1), batch(2))
    assert plain.samples().shape == (6, 1, SIZE, SIZE)  # 2 real + 4 EMA samples of the fixed latents
    torch.testing.assert_close(plain.samples(), plain.samples())  # fixed latents, deterministic stand-in


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_iterations_with_the_real_networks(spatial_dims):
    """C-SG with ADA at p = 1 and every regulariser on both iterations, on the StyleGAN2 networks at 8 pixels."""
    torch.manual_seed(0)
    sizes = dict(channel_base=32, channel_max=8)
    g = StyleGAN2Generator(
        spatial_dims, 1, 8, latent_dim=4, style_dim=4, mapping_layers=1, condition_channels=2, **sizes
    )
    d = StyleGAN2Discriminator(spatial_dims, 1, 8, condition_channels=2, mbstd_group_size=2, **sizes)
    optimizers = [torch.optim.Adam(net.parameters(), 2e-3, betas=(0.0, 0.99)) for net in (g, d)]
    step = StyleGAN2Step(
        g,
        d,
        copy.deepcopy(g),
        *optimizers,
        latent_dim=4,
        r1_interval=1,
        pl_interval=1,
        augment="ada",
        ada_interval=1,
        condition_key="mask",
        ema_rampup=0.05,
    )
    step.augment_pipe.p.fill_(1.0)
    shape = (2,) + (8,) * spatial_dims
    labels = torch.randint(0, 2, (2, 1, *shape[1:]))
    data = {"image": torch.rand(2, 1, *shape[1:]) * 2 - 1, "mask": torch.zeros(2, 2, *shape[1:]).scatter_(1, labels, 1)}
    for it in (1, 2):
        out = step(engine(it), data)
        assert {"loss_d", "loss_g", "r1_penalty", "pl_penalty", "pl_mean", "real_sign", "augment_p"} <= set(out)
        assert all(np.isfinite(v) for v in out.values())
    ema_params = dict(step.networks["generator_ema"].named_parameters())
    assert any(not torch.equal(p, ema_params[n]) for n, p in g.named_parameters())  # EMA lags the generator
    assert step.samples().shape == (6, 1) + shape[1:]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="augment"):
        make_step(augment="cutout")
    with pytest.raises(ValueError, match="r1_interval"):
        make_step(r1_interval=0)


def test_color_channels_keep_b_sg_masks_out_of_the_colour_transformations():
    """B-SG with ADA: brightness/contrast change the image channels of the discriminator's input, never the mask."""
    from common.engines import StyleGAN2Step

    gen, disc = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    step = StyleGAN2Step(
        gen,
        disc,
        torch.nn.Linear(1, 1),
        torch.optim.SGD(gen.parameters(), lr=0.1),
        torch.optim.SGD(disc.parameters(), lr=0.1),
        latent_dim=2,
        augment="ada",
        color_channels=2,
    )
    step.augment_pipe.transforms = ("brightness", "contrast")
    step.augment_pipe.p.fill_(1.0)
    x = torch.rand(8, 3, 4, 4) * 2 - 1
    out, _ = step.augmented(x, None)
    torch.testing.assert_close(out[:, 2:], x[:, 2:])
    assert not torch.allclose(out[:, :2], x[:, :2])
