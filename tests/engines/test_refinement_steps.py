"""SimGAN history buffer and training step, MUNIT training step (Han thesis sec. 4.2.3)."""

from types import SimpleNamespace

import torch
from common.engines import HistoryBuffer, MUNITStep, SimGANStep, StepTrainer
from common.networks import MUNIT, MultiScaleDiscriminator, SimGANDiscriminator, SimGANRefiner
from ignite.engine import Events


def tagged(ids):
    """Images (B, 1, 4, 4) whose every pixel is the image's id."""
    return torch.tensor(ids, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()


def ids_of(images):
    return [int(v) for v in images[:, 0, 0, 0]]


def test_history_buffer_returns_earlier_refined_images_half_the_batch():
    buf = HistoryBuffer(buffer_size=8, seed=0)
    # empty buffer: the batch is the new images only
    assert ids_of(buf.mix_and_push(tagged([0, 1, 2, 3]))) == [0, 1, 2, 3]
    assert len(buf) == 4
    buf.mix_and_push(tagged([4, 5, 6, 7]))
    assert len(buf) == 8 and sorted(ids_of(buf.images)) == list(range(8))
    for step in range(5):
        new = [100 + 4 * step + i for i in range(4)]
        before = set(ids_of(buf.images))
        mixed = ids_of(buf.mix_and_push(tagged(new)))
        assert mixed[:2] == new[:2]  # first half: the current refiner's images
        history = mixed[2:]
        assert len(set(history)) == 2 and set(history) <= before  # second half: earlier images from the buffer
        assert not set(history) & set(new)
        after = ids_of(buf.images)
        assert len(after) == 8 and len(set(after) & set(new)) == 2  # B/2 entries replaced by new images
        assert len(set(after) & before) == 6


def test_history_buffer_state_round_trip_and_disabled():
    buf = HistoryBuffer(4, seed=1)
    for i in range(3):
        buf.mix_and_push(tagged([4 * i + j for j in range(4)]))
    copy = HistoryBuffer(4, seed=99)
    copy.load_state_dict(buf.state_dict())
    assert torch.equal(copy.images, buf.images)
    assert torch.equal(copy.mix(tagged([50, 51])), buf.mix(tagged([50, 51])))
    off = HistoryBuffer(0)
    assert ids_of(off.mix_and_push(tagged([1, 2]))) == [1, 2] and len(off) == 0


def engine_at(iteration):
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1))


def simgan(pre_r=0, pre_d=0, k_g=1, lr=1e-2, lambda_reg=1.0):
    torch.manual_seed(0)
    refiner = SimGANRefiner(2, 1, base_channels=8, num_res_blocks=2)
    disc = SimGANDiscriminator(2, 1, channels=(8, 8, 4, 4))
    return SimGANStep(
        refiner,
        disc,
        torch.optim.Adam(refiner.parameters(), lr=lr),
        torch.optim.Adam(disc.parameters(), lr=lr),
        lambda_reg=lambda_reg,
        k_g=k_g,
        pretrain_refiner_steps=pre_r,
        pretrain_discriminator_steps=pre_d,
        buffer_size=8,
    )


def test_self_regularisation_pulls_the_refiner_toward_identity():
    step = simgan(pre_r=1000)
    torch.manual_seed(1)
    x = torch.rand(4, 1, 16, 16) * 1.6 - 0.8
    with torch.no_grad():
        start = (step.networks["refiner"](x) - x).abs().mean().item()
    d_before = [p.clone() for p in step.networks["discriminator"].parameters()]
    for i in range(1, 61):
        out = step(engine_at(i), {"synthetic": x, "real": x})
        assert set(out) == {"loss_self_reg", "loss_r"}  # pre-training: no adversarial term, no D update
    with torch.no_grad():
        end = (step.networks["refiner"](x) - x).abs().mean().item()
    assert start > 0.1 and end < 0.05 and end < start / 4
    assert all(torch.equal(a, b) for a, b in zip(d_before, step.networks["discriminator"].parameters()))


def test_simgan_schedule_phases_and_k_g():
    step = simgan(pre_r=1, pre_d=2, k_g=2)
    x, y = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    batch = {"synthetic": x, "real": y}
    assert step.phase(1) == "pretrain_refiner" and step.phase(3) == "pretrain_discriminator"
    r_before = [p.clone() for p in step.networks["refiner"].parameters()]
    out = step(engine_at(2), batch)
    assert "loss_d" in out and "loss_r" not in out  # discriminator pre-training: refiner untouched
    assert all(torch.equal(a, b) for a, b in zip(r_before, step.networks["refiner"].parameters()))
    seen = {i: set(step(engine_at(i), batch)) for i in range(4, 8)}
    assert all("loss_r_adv" in keys for keys in seen.values())
    assert ["loss_d" in seen[i] for i in range(4, 8)] == [False, True, False, True]  # D every k_g = 2 iterations
    assert len(step.buffer) == 8  # three D updates of 4 refined images: the buffer is full


def test_simgan_iteration_scheduler_halves_learning_rate():
    step = simgan(pre_r=10)
    sched = torch.optim.lr_scheduler.MultiStepLR(step.optimizers["refiner"], milestones=[3], gamma=0.5)
    step.schedulers = {"refiner": sched}
    x = torch.rand(2, 1, 8, 8)
    StepTrainer("cpu", 1, [{"synthetic": x, "real": x}] * 4, step).run()  # schedulers stepped per iteration
    assert step.optimizers["refiner"].param_groups[0]["lr"] == 0.5e-2
    assert "history_buffer" in step.state_objects()


def test_munit_step_updates_all_networks_with_finite_losses():
    torch.manual_seed(0)
    gen = MUNIT(2, 1, base_channels=4, num_res_blocks=1, mlp_dim=16, style_downsample=2)
    dis_a = MultiScaleDiscriminator(2, 1, 4, num_layers=2, num_scales=2)
    dis_b = MultiScaleDiscriminator(2, 1, 4, num_layers=2, num_scales=2)
    g_opt = torch.optim.Adam(gen.parameters(), lr=1e-3, betas=(0.5, 0.999), weight_decay=1e-4)
    d_opt = torch.optim.Adam(list(dis_a.parameters()) + list(dis_b.parameters()), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(g_opt, step_size=2, gamma=0.5)
    step = MUNITStep(gen, dis_a, dis_b, g_opt, d_opt, lambda_cycle=10.0, schedulers={"generator": sched})
    before = {n: [p.clone() for p in m.parameters()] for n, m in step.networks.items()}
    batch = {"synthetic": torch.rand(1, 1, 16, 16) * 2 - 1, "real": torch.rand(1, 1, 16, 16) * 2 - 1}
    losses = []
    trainer = StepTrainer("cpu", 1, [batch, batch], step)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output))
    trainer.run()
    keys = {"loss_d_a", "loss_d_b", "loss_g", "loss_g_adv", "loss_recon_x", "loss_recon_c", "loss_recon_s"}
    assert keys | {"loss_cycle"} == set(losses[0])
    assert all(torch.isfinite(torch.tensor(v)) for out in losses for v in out.values())
    for name, net in step.networks.items():
        changed = sum(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))
        assert changed > len(before[name]) // 2, name
    assert torch.equal(gen.fixed_style, MUNIT(2, 1, base_channels=4, num_res_blocks=1, mlp_dim=16).fixed_style)
    assert g_opt.param_groups[0]["lr"] == 0.5e-3  # halved after 2 iterations (step-based schedule)
    # weighted sum as in MUNIT eq. 5
    o = losses[1]
    total = o["loss_g_adv"] + 10 * o["loss_recon_x"] + o["loss_recon_c"] + o["loss_recon_s"] + 10 * o["loss_cycle"]
    assert abs(total - o["loss_g"]) < 1e-4 * max(1.0, abs(total))
