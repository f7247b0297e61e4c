"""The shared adversarial skeleton of the steps, their schedulers through MONAI's LrScheduleHandler, the trainer.

The critic -> gradient penalty -> drift -> generator sequence lives once in :class:`common.engines.TrainingStep`
(``critic_update``, ``generator_update``, ``adversarial_iteration``). The ``_old_*`` functions below are frozen
copies of the sequences that ``GANStep``, ``ProgressiveGANStep`` and ``MCGANStep`` wrote out themselves before;
the steps must give the same losses and the same parameters, bit for bit, for the same seed.
"""

from types import SimpleNamespace

import pytest
import torch
from common.engines import (
    AdversarialTrainer,
    CheckpointHandler,
    GANStep,
    MCGANStep,
    ProgressiveBatchSampler,
    ProgressiveGANStep,
    ProgressiveSchedule,
    ResumeHandler,
    SimGANStep,
    StepTrainer,
    TrainingStep,
    latest_checkpoint,
)
from common.engines import progressive as progressive_module
from common.engines import trainer as trainer_module
from common.losses import gradient_penalty
from common.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    MCGANContextDiscriminator,
    MCGANGenerator,
    MCGANNoduleDiscriminator,
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    SimGANDiscriminator,
    SimGANRefiner,
)
from ignite.engine import Events
from monai.handlers import LrScheduleHandler

LATENT = 8


def engine_at(iteration):
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1))


# ---------------------------------------------------------------------- frozen copies of the former sequences
def _old_gan_call(self, engine, batchdata):
    real = self.images(batchdata)
    batch_size = real.shape[0]
    generator, discriminator = self.networks["generator"], self.networks["discriminator"]
    out = {}
    with torch.no_grad(), self.autocast():
        fake = self.module("generator", frozen=True)(self.sample_latent(batch_size)).float()
    with self.autocast():
        d_real, d_fake = discriminator(real), discriminator(fake)
        d_loss = self.adversarial(d_real, True) + self.adversarial(d_fake, False)
        adv_d = d_loss.detach()
        if self.drift_weight > 0:
            d_loss = d_loss + self.drift_weight * d_real.float().pow(2).mean()
    if self.gp_weight > 0:
        penalty = gradient_penalty(discriminator, real, fake)
        d_loss = d_loss + self.gp_weight * penalty
        out["gradient_penalty"] = penalty.item()
    self.optimise(engine, "discriminator", d_loss)
    if self.clip_value is not None:
        self.clip_weights("discriminator", self.clip_value)
    out["loss_d"] = d_loss.item()
    if self.adversarial.criterion == "wgan":
        out["wasserstein_estimate"] = -adv_d.item()
    if self.generator_turn(engine):
        with self.frozen("discriminator"), self.autocast():
            fake = generator(self.sample_latent(batch_size))
            g_loss = self.adversarial(self.module("discriminator", frozen=True)(fake), True, for_discriminator=False)
        self.optimise(engine, "generator", g_loss)
        out["loss_g"] = g_loss.item()
    return out


def _old_progressive_call(self, engine, batchdata):
    self.schedule.iteration = engine.state.iteration - 1
    pos = self.schedule.current()
    stage, alpha, res, bs = pos["stage"], float(pos["alpha"]), pos["resolution"], pos["batch_size"]
    real = self.images(batchdata)[:bs]
    cond = self.images(batchdata, self.condition_key)[: real.shape[0]] if self.condition_key else None
    real = self.real_at_stage(real, res, alpha)
    n = real.shape[0]
    generator, discriminator = self.networks["generator"], self.networks["discriminator"]
    out = {}
    with torch.no_grad(), self.autocast():
        fake = self.module("generator", frozen=True)(self.sample_latent(n), cond, stage, alpha).float()
    with self.autocast():
        d_real = discriminator(real, cond, stage, alpha)
        d_fake = discriminator(fake, cond, stage, alpha)
        adv = self.adversarial(d_real, True) + self.adversarial(d_fake, False)
        d_loss = adv + self.drift_weight * d_real.float().pow(2).mean()
    if self.gp_weight > 0:
        critic_args = (cond,) if cond is not None else ()
        penalty = gradient_penalty(
            lambda x, *c: discriminator(x, c[0] if c else None, stage, alpha), real, fake, *critic_args
        )
        d_loss = d_loss + self.gp_weight * penalty
        out["gradient_penalty"] = penalty.item()
    self.optimise(engine, "discriminator", d_loss)
    out["loss_d"] = d_loss.item()
    out["wasserstein_estimate"] = -adv.item()
    if self.generator_turn(engine):
        with self.frozen("discriminator"), self.autocast():
            fake = generator(self.sample_latent(n), cond, stage, alpha)
            g_loss = self.adversarial(
                self.module("discriminator", frozen=True)(fake, cond, stage, alpha), True, for_discriminator=False
            )
        self.optimise(engine, "generator", g_loss)
        out["loss_g"] = g_loss.item()
    self.schedule.iteration = engine.state.iteration
    out.update({"stage": float(stage), "alpha": alpha, "resolution": float(res)})
    out["images_shown"] = float(pos["images_shown"] + n)
    return out


def _old_mcgan_call(self, engine, batchdata):
    x = self.images(batchdata)
    real = self.images(batchdata, self.target_key)
    cond = self.images(batchdata, self.condition_key)
    noisy = x[:, : real.shape[1]]
    box = self.box(real)
    real_nodule = real[box]
    d1, d2 = self.networks["context_discriminator"], self.networks["nodule_discriminator"]
    out = {}
    with torch.no_grad(), self.autocast():
        fake = self.composite(self.module("generator", frozen=True)(x).float(), real)
    flip = self.flipped(engine)
    with self.autocast():
        c_loss = 0.5 * (self.lsgan(d1(noisy, real), not flip) + self.lsgan(d1(noisy, fake), flip))
    self.optimise(engine, "context_discriminator", c_loss)
    out["loss_context_d"] = c_loss.item()
    fake_nodule = fake[box]
    with self.autocast():
        n_adv = self.wgan(d2(real_nodule, cond), True) + self.wgan(d2(fake_nodule, cond), False)
    penalty = gradient_penalty(d2, real_nodule, fake_nodule, cond)
    n_loss = n_adv + self.gp_weight * penalty
    self.optimise(engine, "nodule_discriminator", n_loss)
    out["loss_nodule_d"] = n_loss.item()
    out["wasserstein_estimate"] = -n_adv.item()
    out["gradient_penalty"] = penalty.item()
    if self.generator_turn(engine):
        with self.frozen("context_discriminator", "nodule_discriminator"), self.autocast():
            fake = self.composite(self.networks["generator"](x).float(), real)
            g_context = self.lsgan(self.module("context_discriminator", True)(noisy, fake), True, False)
            g_nodule = self.wgan(self.module("nodule_discriminator", True)(fake[box], cond), True, False)
            g_loss = self.lambda_context * g_context + self.lambda_nodule * g_nodule
            if self.lambda_l1 > 0:
                l1 = (fake[box] - real_nodule).abs().mean()
                g_loss = g_loss + self.lambda_l1 * l1
                out["loss_l1"] = l1.item()
        self.optimise(engine, "generator", g_loss)
        out["loss_g"] = g_loss.item()
        out["loss_g_context"] = g_context.item()
        out["loss_g_nodule"] = g_nodule.item()
    n = min(4, real.shape[0])
    self.last_samples = torch.cat([noisy[:n], fake[:n], real[:n]]).detach().float().cpu()
    return out


# ---------------------------------------------------------------------- builders
def _gan(loss, **kwargs):
    torch.manual_seed(0)
    g = DCGANGenerator(2, LATENT, 1, 16, base_channels=2)
    d = DCGANDiscriminator(2, 1, 16, base_channels=2, norm=None if kwargs.get("gp_weight") else "batch")
    opt = lambda net: torch.optim.Adam(net.parameters(), 1e-3)  # noqa: E731
    return GANStep(g, d, opt(g), opt(d), LATENT, loss=loss, **kwargs)


def _gan_batches(n):
    gen = torch.Generator().manual_seed(1)
    return [{"image": torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1} for _ in range(n)]


def _progressive(conditional):
    torch.manual_seed(0)
    c = 1 if conditional else 0
    g = ProgressiveGenerator(2, 4, 1, 16, fmap_base=16, fmap_max=4, condition_channels=c)
    d = ProgressiveDiscriminator(2, 1, 16, fmap_base=16, fmap_max=4, condition_channels=c)
    schedule = ProgressiveSchedule(g.resolutions, 8, 8, [4, 4, 2])
    opt = lambda net: torch.optim.Adam(net.parameters(), 1e-3, betas=(0.0, 0.99))  # noqa: E731
    key = "condition" if conditional else None
    return ProgressiveGANStep(g, d, opt(g), opt(d), schedule, latent_size=4, condition_key=key)


def _progressive_batches(n):
    gen = torch.Generator().manual_seed(1)
    return [
        {
            "image": torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1,
            "condition": (torch.rand(4, 1, 16, 16, generator=gen) > 0.7).float(),
        }
        for _ in range(n)
    ]


def _mcgan(**kwargs):
    torch.manual_seed(0)
    g = MCGANGenerator(3, base_channels=4)
    c = MCGANContextDiscriminator(3, base_channels=4)
    n = MCGANNoduleDiscriminator(3, base_channels=4)
    opt = lambda net: torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    return MCGANStep(g, c, n, opt(g), opt(c), opt(n), nodule_size=16, **kwargs)


def _mcgan_batches(n, b=2, size=32):
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        real = torch.rand(b, 1, size, size, size, generator=gen) * 2 - 1
        noisy = real.clone()
        noisy[:, :, 8:24, 8:24, 8:24] = torch.rand(b, 1, 16, 16, 16, generator=gen) - 0.5
        cond = torch.zeros(b, 6)
        cond[:, 1], cond[:, 3] = 1, 1
        image = torch.cat([noisy, cond[:, :, None, None, None].expand(-1, -1, size, size, size)], 1)
        out.append({"image": image, "target": real, "condition": cond})
    return out


def _run(step, batches, call=None):
    torch.manual_seed(7)  # the latents are drawn from the global stream
    call = call or (lambda s, e, b: s(e, b))
    return [call(step, engine_at(i), b) for i, b in enumerate(batches, 1)]


def _same_parameters(a, b):
    return all(
        torch.equal(p, q)
        for name in a.networks
        for p, q in zip(a.networks[name].parameters(), b.networks[name].parameters())
    )


@pytest.mark.parametrize(
    "loss,kwargs",
    [
        ("bce", {}),
        ("wgan", {"n_critic": 2, "clip_value": 0.01}),
        ("wgan", {"gp_weight": 10.0, "drift_weight": 0.001}),
        ("lsgan", {"amp": True, "real_label": 0.9}),
    ],
)
def test_gan_step_matches_the_former_sequence(loss, kwargs):
    batches = _gan_batches(4)
    new, old = _gan(loss, **kwargs), _gan(loss, **kwargs)
    assert _run(new, batches) == _run(old, batches, _old_gan_call)
    assert _same_parameters(new, old)


@pytest.mark.parametrize("conditional", [False, True])
def test_progressive_step_matches_the_former_sequence(conditional):
    new, old = _progressive(conditional), _progressive(conditional)
    batches = _progressive_batches(new.schedule.total_iterations)  # every stage, fade-ins included
    assert _run(new, batches) == _run(old, batches, _old_progressive_call)
    assert _same_parameters(new, old)


@pytest.mark.parametrize("kwargs", [{}, {"lambda_l1": 100.0, "n_critic": 2}])
def test_mcgan_step_matches_the_former_sequence(kwargs):
    new, old = _mcgan(**kwargs), _mcgan(**kwargs)
    batches = _mcgan_batches(3)
    assert _run(new, batches) == _run(old, batches, _old_mcgan_call)
    assert _same_parameters(new, old)
    assert torch.equal(new.samples(), old.samples())


def test_critic_update_parts():
    """The drift and penalty terms are added only when weighted; the adversarial part is reported apart."""
    step = _gan("wgan", gp_weight=10.0, drift_weight=0.5)
    real, fake = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    critic = step.networks["discriminator"]
    with torch.no_grad():
        d_real, d_fake = critic(real), critic(fake)
    losses = step.critic_update(engine_at(1), "discriminator", critic, real, fake, step.adversarial, 10.0, 0.5)
    expected_adv = d_fake.mean() - d_real.mean()
    assert torch.allclose(losses.adversarial, expected_adv, atol=1e-6)
    expected = expected_adv + 0.5 * d_real.pow(2).mean() + 10.0 * losses.penalty
    assert torch.allclose(losses.total.detach(), expected, atol=1e-5)
    plain = step.critic_update(engine_at(2), "discriminator", critic, real, fake, step.adversarial)
    assert plain.penalty is None and torch.equal(plain.total.detach(), plain.adversarial)


# ---------------------------------------------------------------------- the trainer and its schedulers
def test_adversarial_trainer_is_a_deprecated_alias():
    step = _gan("bce")
    with pytest.warns(DeprecationWarning, match="StepTrainer"):
        trainer = AdversarialTrainer("cpu", 1, _gan_batches(1), step)
    assert isinstance(trainer, StepTrainer)
    trainer.run()
    assert trainer.state.iteration == 1


def test_schedulers_are_stepped_by_monai_lr_schedule_handlers():
    step = _gan("bce")
    with pytest.raises(ValueError, match="scheduler_interval"):
        TrainingStep({"g": torch.nn.Linear(1, 1)}, {}, scheduler_interval="batch")
    schedulers = {k: torch.optim.lr_scheduler.StepLR(o, 1, 0.5) for k, o in step.optimizers.items()}
    step.schedulers = schedulers
    handlers = step.lr_schedule_handlers()
    assert all(isinstance(h, LrScheduleHandler) and h.epoch_level for h in handlers) and len(handlers) == 2
    StepTrainer("cpu", 3, _gan_batches(2), step).run()  # stepped at each of the 3 epoch ends, not per iteration
    assert all(o.param_groups[0]["lr"] == 1e-3 / 8 for o in step.optimizers.values())


class _Kill(Exception):
    pass


def _simgan(ckpt_dir, resume=False, kill_at=None, lrs=None):
    torch.manual_seed(0)
    refiner = SimGANRefiner(2, 1, base_channels=4, num_res_blocks=1)
    disc = SimGANDiscriminator(2, 1, channels=(4, 4, 4, 4))
    r_opt, d_opt = torch.optim.Adam(refiner.parameters(), 1e-2), torch.optim.Adam(disc.parameters(), 1e-2)
    schedulers = {
        "refiner": torch.optim.lr_scheduler.MultiStepLR(r_opt, [3, 6], 0.5),
        "discriminator": torch.optim.lr_scheduler.StepLR(d_opt, 4, 0.1),
    }
    step = SimGANStep(
        refiner,
        disc,
        r_opt,
        d_opt,
        pretrain_refiner_steps=0,
        pretrain_discriminator_steps=0,
        k_g=1,  # both networks updated at every iteration
        buffer_size=2,
        schedulers=schedulers,
        scheduler_interval="iteration",
    )
    gen = torch.Generator().manual_seed(2)
    data = [{"synthetic": torch.rand(2, 1, 8, 8, generator=gen), "real": torch.rand(2, 1, 8, 8, generator=gen)}]
    data = data * 4
    handlers = [
        ResumeHandler(ckpt_dir, step, resume=resume),
        CheckpointHandler(ckpt_dir, step, save_interval=2, epoch_level=False),
    ]
    trainer = StepTrainer("cpu", 2, data, step, handlers=handlers)

    @trainer.on(Events.ITERATION_COMPLETED)
    def _(engine):
        if lrs is not None:
            lrs[engine.state.iteration] = tuple(o.param_groups[0]["lr"] for o in step.optimizers.values())
        if kill_at is not None and engine.state.iteration == kill_at:
            raise _Kill()  # dies after iteration 3, whose state no checkpoint holds

    return trainer, step


def test_iteration_schedulers_resume_exactly(tmp_path):
    """Per-iteration schedulers (LrScheduleHandler at ITERATION_COMPLETED) are checkpointed already stepped."""
    reference = {}
    trainer, ref_step = _simgan(tmp_path / "ref", lrs=reference)
    trainer.run()
    assert reference[3] == (0.5e-2, 1e-2) and reference[4] == (0.5e-2, 1e-3) and reference[8][0] == 0.25e-2
    trainer, _ = _simgan(tmp_path / "run", kill_at=3)
    with pytest.raises(_Kill):
        trainer.run()
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_2.pt"
    resumed = {}
    trainer, step = _simgan(tmp_path / "run", resume=True, lrs=resumed)
    trainer.run()
    assert sorted(resumed) == list(range(3, 9)) and all(resumed[i] == reference[i] for i in resumed)
    assert _same_parameters(step, ref_step)


def test_rank_and_world_size_come_from_common_utils(monkeypatch):
    monkeypatch.setattr(trainer_module, "get_rank", lambda: 3)
    assert trainer_module.rank_seed(7) == 10
    monkeypatch.setattr(progressive_module, "get_rank", lambda: 1)
    monkeypatch.setattr(progressive_module, "get_world_size", lambda: 2)
    schedule = ProgressiveSchedule([4], 0, 8, 2)
    sampler = ProgressiveBatchSampler(list(range(6)), schedule, shuffle=False)
    assert next(iter(sampler)) == [1, 3]
