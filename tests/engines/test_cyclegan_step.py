from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from common.engines import CycleGANStep, DiffAugment, ImagePool, LinearDecay, StepTrainer, constant_then_linear_decay
from monai.networks.layers.factories import Conv


class Gen(nn.Module):
    def __init__(self, dims, shared=False):
        super().__init__()
        self.conv = Conv[Conv.CONV, dims](1, 1, 3, padding=1)
        self.mask = Conv[Conv.CONV, dims](1, 1, 3, padding=1) if shared else None

    def forward(self, x):
        image = torch.tanh(self.conv(x))
        return (image, torch.sigmoid(self.mask(x))) if self.mask is not None else image


def attn(dims):
    return nn.Sequential(Conv[Conv.CONV, dims](1, 1, 3, padding=1), nn.Sigmoid())


class Disc(nn.Module):
    """A tiny discriminator with the ``attention_map`` input of ``PatchGANDiscriminator``."""

    def __init__(self, dims, guided):
        super().__init__()
        self.conv = Conv[Conv.CONV, dims](2 if guided else 1, 1, 3, stride=2)

    def forward(self, x, attention_map=None):
        return self.conv(x if attention_map is None else torch.cat([x, attention_map.detach()], 1))


def disc(dims, guided):
    return Disc(dims, guided)


def make_step(dims=2, attention="separate", lambda_attention=1.0, pool_size=4):
    torch.manual_seed(0)
    guided = attention != "none"
    shared = attention == "shared"
    nets = {
        "gen_n": Gen(dims, shared),
        "gen_p": Gen(dims, shared),
        "disc_n": disc(dims, guided),
        "disc_p": disc(dims, guided),
    }
    extra = {"attn_n": attn(dims), "attn_p": attn(dims)} if attention == "separate" else {}
    g_params = [p for k in ("gen_n", "gen_p") for p in nets[k].parameters()]
    g_params += [p for m in extra.values() for p in m.parameters()]
    d_params = list(nets["disc_n"].parameters()) + list(nets["disc_p"].parameters())
    return CycleGANStep(
        nets["gen_n"],
        nets["gen_p"],
        nets["disc_n"],
        nets["disc_p"],
        torch.optim.Adam(g_params, 1e-3),
        torch.optim.Adam(d_params, 1e-3),
        attention=attention,
        attention_guided=guided,
        lambda_attention=lambda_attention if guided else 0.0,
        pool_size=pool_size,
        **extra,
    )


def batches(dims=2, n=2, size=8):
    gen = torch.Generator().manual_seed(0)
    shape = (2, 1) + (size,) * dims
    out = []
    for _ in range(n):
        mask = torch.zeros(shape)
        mask[(slice(None), slice(None)) + (slice(2, 5),) * dims] = 1
        out.append(
            {
                "positive": torch.rand(shape, generator=gen) + mask,
                "negative": torch.rand(shape, generator=gen),
                "mask": mask,
            }
        )
    return out


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("attention", ["none", "separate", "shared"])
def test_family_runs_and_updates_all_networks(dims, attention):
    step = make_step(dims, attention)
    before = {k: [p.detach().clone() for p in v.parameters()] for k, v in step.networks.items()}
    trainer = StepTrainer("cpu", 2, batches(dims), step)
    trainer.run()
    out = trainer.state.output
    expected = {"loss_g", "loss_g_adv", "loss_cycle", "loss_identity", "loss_d_n", "loss_d_p"}
    assert expected <= set(out) and all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert ("loss_attention" in out) == (attention != "none")
    for name, params in before.items():
        assert any(not torch.equal(a, b) for a, b in zip(params, step.networks[name].parameters())), name


def test_attention_loss_only_on_positive_to_negative_and_needs_mask():
    step = make_step()
    trainer = StepTrainer("cpu", 1, [{k: v for k, v in batches()[0].items() if k != "mask"}], step)
    with pytest.raises(KeyError, match="mask"):
        trainer.run()
    # without supervision ("w/o SS") no mask is needed and no attention loss is reported
    step = make_step(lambda_attention=0.0)
    trainer = StepTrainer("cpu", 1, [{k: v for k, v in batches()[0].items() if k != "mask"}], step)
    trainer.run()
    assert "loss_attention" not in trainer.state.output


def test_attention_loss_is_l1_of_map_p_against_the_tumour_mask():
    step = make_step(lambda_attention=1.0)
    batch = batches()[0]
    with torch.no_grad():
        map_p = step.networks["attn_n"](batch["positive"])
    expected = (map_p - batch["mask"]).abs().mean().item()
    trainer = StepTrainer("cpu", 1, [batch], step)
    trainer.run()
    assert trainer.state.output["loss_attention"] == pytest.approx(expected, rel=1e-5)


def test_translation_composites_and_discriminator_map_is_detached():
    step = make_step()
    x = torch.rand(1, 1, 8, 8)
    out, mask = step.translate(x, "n")
    generated = step.networks["gen_n"](x)
    assert torch.allclose(out, mask * generated + (1 - mask) * x)
    m = torch.rand(1, 1, 8, 8, requires_grad=True)
    d_in = step._disc_input(torch.rand(1, 1, 8, 8), m)
    assert d_in.shape[1] == 2 and not d_in.requires_grad


def test_pools_are_checkpointed():
    step = make_step(pool_size=3)
    StepTrainer("cpu", 1, batches(), step).run()
    objects = step.state_objects()
    assert {"pool_n", "pool_p", "optimizer_generators", "optimizer_discriminators", "attn_n"} <= set(objects)
    state = objects["pool_n"].state_dict()
    restored = ImagePool(3)
    restored.load_state_dict(state)
    assert len(restored) == len(step.pool_n) == 3
    assert all(torch.equal(a, b) for a, b in zip(restored.images, step.pool_n.images))


def test_argument_validation():
    g, d = Gen(2), disc(2, True)
    opt = torch.optim.SGD(g.parameters(), 0.1)
    with pytest.raises(ValueError, match="attention must be"):
        CycleGANStep(g, g, d, d, opt, opt, attention="foo")
    with pytest.raises(ValueError, match="attn_n and attn_p"):
        CycleGANStep(g, g, d, d, opt, opt, attention="separate")
    with pytest.raises(ValueError, match="need attention maps"):
        CycleGANStep(g, g, d, d, opt, opt, attention="none", lambda_attention=0.0)


def test_image_pool_returns_earlier_images():
    pool = ImagePool(pool_size=4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: the new images themselves
    later = 100 + torch.arange(64.0).view(64, 1, 1, 1)
    out = pool.query(later)
    assert out.shape == later.shape
    old = out[out < 100]
    assert old.numel() > 0 and set(old.tolist()) <= set(range(4)) | set(later.flatten().tolist())
    assert len(pool) == 4
    assert torch.equal(ImagePool(0).query(first), first)
    with pytest.raises(ValueError):
        ImagePool(-1)


def test_linear_decay_matches_cyclegan_schedule():
    decay = LinearDecay(constant_epochs=100, decay_epochs=100)
    assert decay(0) == 1.0 and decay(99) == 1.0
    assert decay(100) == pytest.approx(1 - 1 / 101) and decay(199) == pytest.approx(1 / 101)
    assert decay(200) == 0.0 and decay(500) == 0.0
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-4)
    sched = constant_then_linear_decay(opt, 2, 2)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-4, 1e-4, 1e-4 * 2 / 3, 1e-4 / 3, 0.0])


class SpyDisc(Disc):
    """Records every ``(image, attention_map)`` pair it is called with."""

    def __init__(self, dims):
        super().__init__(dims, guided=True)
        self.calls = []

    def forward(self, x, attention_map=None):
        self.calls.append((x.detach().clone(), attention_map.detach().clone()))
        return super().forward(x, attention_map)


class MapOf(nn.Module):
    """An attention network whose map is a fixed, recognisable function of its input."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.offset + 0.25 * torch.sigmoid(x[:, :1])


def _spied_step(**kwargs):
    torch.manual_seed(0)
    gen_n, gen_p, disc_n, disc_p = Gen(2), Gen(2), SpyDisc(2), SpyDisc(2)
    attn_n, attn_p = MapOf(0.0), MapOf(0.5)  # A_N maps lie in (0, 0.25), A_P maps in (0.5, 0.75)
    step = CycleGANStep(
        gen_n,
        gen_p,
        disc_n,
        disc_p,
        torch.optim.Adam(list(gen_n.parameters()) + list(gen_p.parameters()), 1e-3),
        torch.optim.Adam(list(disc_n.parameters()) + list(disc_p.parameters()), 1e-3),
        attn_n=attn_n,
        attn_p=attn_p,
        **kwargs,
    )
    return step, attn_n, attn_p


@pytest.mark.parametrize("real_attention_map", ["own", "generated"])
def test_each_discriminator_input_carries_the_chosen_attention_map(real_attention_map):
    """CDA-GAN eq. 7-8: D_N sees (G_N^A(p), A_N(p)) and D_P sees (G_P^A(n), A_P(n)); a real image carries its own
    map (D_N: (n, A_P(n)), D_P: (p, A_N(p))) or, with "generated", the map of the fake it is compared with."""
    step, attn_n, attn_p = _spied_step(pool_size=0, real_attention_map=real_attention_map)
    disc_n, disc_p = step.networks["disc_n"], step.networks["disc_p"]
    batch = batches()[0]
    p, n = batch["positive"], batch["negative"]
    with torch.no_grad():
        fake_n, fake_p = step.translate(p, "n")[0], step.translate(n, "p")[0]
    step(SimpleNamespace(state=SimpleNamespace(iteration=1, epoch=1)), batch)

    # generator update: the fakes with their sources' maps; discriminator update: real, then fake
    real_map_n, real_map_p = (attn_p(n), attn_n(p)) if real_attention_map == "own" else (attn_n(p), attn_p(n))
    expected = {
        "disc_n": [(fake_n, attn_n(p)), (n, real_map_n), (fake_n, attn_n(p))],
        "disc_p": [(fake_p, attn_p(n)), (p, real_map_p), (fake_p, attn_p(n))],
    }
    for name, spy in (("disc_n", disc_n), ("disc_p", disc_p)):
        assert len(spy.calls) == 3, name
        for (image, seen), (want_image, want_map) in zip(spy.calls, expected[name]):
            assert torch.allclose(image, want_image, atol=1e-6), name
            assert torch.allclose(seen, want_map, atol=1e-6), name


def test_generated_real_map_follows_the_pooled_fake():
    """With an image pool, a real image carries the map of the pooled fake it is compared with, not the current one."""
    step, attn_n, _ = _spied_step(pool_size=4, real_attention_map="generated")
    engine = SimpleNamespace(state=SimpleNamespace(iteration=1, epoch=1))
    for batch in batches(n=3):
        step(engine, batch)
    spy = step.networks["disc_n"]
    for (_, real_map), (_, fake_map) in zip(spy.calls[1::3], spy.calls[2::3]):  # D update: real, then fake
        assert torch.equal(real_map, fake_map)
        assert 0.0 < float(real_map.min()) and float(real_map.max()) < 0.25  # an A_N map, as every fake of D_N has


def test_augment_applies_to_every_discriminator_input_with_one_shift_per_image_and_map():
    """DiffAugment (Zhao et al. 2020): every input of both updates is augmented; an image and its map move together."""
    step, attn_n, attn_p = _spied_step(pool_size=0, augment=lambda x: torch.flip(x, dims=[-1]))
    batch = batches()[0]
    p, n = batch["positive"], batch["negative"]
    with torch.no_grad():
        fake_n = step.translate(p, "n")[0]
    step(SimpleNamespace(state=SimpleNamespace(iteration=1, epoch=1)), batch)
    expected = [(fake_n, attn_n(p)), (n, attn_p(n)), (fake_n, attn_n(p))]
    for (image, seen), (want_image, want_map) in zip(step.networks["disc_n"].calls, expected):
        assert torch.allclose(image, torch.flip(want_image, dims=[-1]), atol=1e-6)
        assert torch.allclose(seen, torch.flip(want_map, dims=[-1]), atol=1e-6)

    shift = DiffAugment(ratio=0.25, fill=-1.0, generator=torch.Generator().manual_seed(0))
    step, _, _ = _spied_step(pool_size=0, augment=shift)
    step(SimpleNamespace(state=SimpleNamespace(iteration=1, epoch=1)), batch)
    calls = step.networks["disc_n"].calls + step.networks["disc_p"].calls
    assert len(calls) == 6
    assert any(bool((image == -1.0).any()) for image, _ in calls)  # the images' shifted-in border is the fill
    assert all(float(seen.min()) >= 0.0 for _, seen in calls)  # the maps' is 0
    for image, seen in calls:  # the same shift: where the image is the fill, the map is 0
        assert torch.all(seen[image == -1.0] == 0.0)


def test_real_attention_map_validation():
    g, d, a = Gen(2), disc(2, True), attn(2)
    opt = torch.optim.SGD(g.parameters(), 0.1)
    with pytest.raises(ValueError, match="real_attention_map"):
        CycleGANStep(g, g, d, d, opt, opt, attn_n=a, attn_p=a, real_attention_map="theirs")


# ---------------------------------------------------------------- the default is unchanged by the method switches
#: losses of four iterations (2 epochs x 2 batches) of make_step(2, attention), recorded before the UAGGAN and AGGAN
#: switches were added (default off); the switches must leave the default family bit for bit as it was.
RECORDED = {
    "separate": ([17.702332, 18.553949, 17.496269, 18.346481], [0.573252, 0.595604, 0.544932, 0.574168]),
    "shared": ([11.684464, 12.156445, 11.449497, 11.914894], [0.79996, 0.701284, 0.774931, 0.673131]),
    "none": ([20.501257, 21.671974, 20.38456, 21.55294], [0.422939, 0.458761, 0.417003, 0.445105]),
}


@pytest.mark.parametrize("attention", ["separate", "shared", "none"])
def test_default_losses_equal_the_recorded_ones(attention):
    from ignite.engine import Events

    step = make_step(2, attention)
    outs = []
    trainer = StepTrainer("cpu", 2, batches(2), step)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outs.append(dict(e.state.output)))
    trainer.run()
    loss_g, loss_d_n = RECORDED[attention]
    assert [o["loss_g"] for o in outs] == pytest.approx(loss_g, rel=1e-4)
    assert [o["loss_d_n"] for o in outs] == pytest.approx(loss_d_n, rel=1e-4)
    assert not {"loss_pixel", "loss_tv"} & set(outs[-1])


# ---------------------------------------------------------------- UAGGAN: two stages
class Recorder(nn.Module):
    """Wraps a network and records a copy of every output (the image part of a tuple)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.outputs = net, []

    def forward(self, x):
        out = self.net(x)
        self.outputs.append((out[0] if isinstance(out, tuple) else out).detach().clone())
        return out


class ImageSpyDisc(Disc):
    """A discriminator without the attention-map input that records every image it sees."""

    def __init__(self, dims):
        super().__init__(dims, guided=False)
        self.calls = []

    def forward(self, x, attention_map=None):
        assert attention_map is None
        self.calls.append(x.detach().clone())
        return super().forward(x)


def attention_net():
    """A trainable attention network whose map ``sigmoid(6 x - 4)`` lies on both sides of tau = 0.1 on ``[0, 1)``."""
    conv = Conv[Conv.CONV, 2](1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(6.0)
        conv.bias.fill_(-4.0)
    return Recorder(nn.Sequential(conv, nn.Sigmoid()))


def uaggan_step(pool_size=0):
    torch.manual_seed(0)
    gen_n, gen_p = Recorder(Gen(2)), Recorder(Gen(2))
    attn_n, attn_p = attention_net(), attention_net()
    disc_n, disc_p = ImageSpyDisc(2), ImageSpyDisc(2)
    g_params = [p for m in (gen_n, gen_p, attn_n, attn_p) for p in m.parameters()]
    return CycleGANStep(
        gen_n,
        gen_p,
        disc_n,
        disc_p,
        torch.optim.Adam(g_params, 1e-2),
        torch.optim.Adam(list(disc_n.parameters()) + list(disc_p.parameters()), 1e-2),
        attn_n=attn_n,
        attn_p=attn_p,
        attention_guided=False,
        lambda_identity=0.0,
        lambda_attention=0.0,
        pool_size=pool_size,
        attention_switch_epoch=1,
        attention_tau=0.1,
    )


def engine_at(epoch, iteration, epoch_length=1):
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch, iteration=iteration, epoch_length=epoch_length))


def clear_records(step):
    for net in step.networks.values():
        for records in (getattr(net, "outputs", None), getattr(net, "calls", None)):
            if records is not None:
                records.clear()


def test_uaggan_discriminators_see_whole_images_then_attended_regions():
    """UAGGAN sec. 3: whole images up to the switch epoch; then t * [A_T(t) > tau] and F(s) * [A_S(s) > tau]."""
    step = uaggan_step()
    nets = step.networks
    batch = batches()[0]
    p, n = batch["positive"], batch["negative"]

    step(engine_at(1, 1), batch)  # first stage: the composites and the whole real images
    raw_n, map_p = nets["gen_n"].outputs[0], nets["attn_n"].outputs[0]
    raw_p, map_n = nets["gen_p"].outputs[0], nets["attn_p"].outputs[0]
    assert step.attended_stage(engine_at(1, 1)) is False
    for disc, raw, mask, source, real in (("disc_n", raw_n, map_p, p, n), ("disc_p", raw_p, map_n, n, p)):
        fake, seen_real, pooled = nets[disc].calls
        assert torch.allclose(fake, mask * raw + (1 - mask) * source, atol=1e-6), disc
        assert torch.equal(seen_real, real) and torch.equal(pooled, fake), disc

    clear_records(step)
    step(engine_at(2, 2), batch)  # second stage: attended regions, maps thresholded at tau
    assert step.attended_stage(engine_at(2, 2)) is True
    raw_n, map_p = nets["gen_n"].outputs[0], nets["attn_n"].outputs[0]
    raw_p, map_n = nets["gen_p"].outputs[0], nets["attn_p"].outputs[0]
    assert (map_n <= 0.1).any() and (map_n > 0.1).any() and (map_p <= 0.1).any()  # the threshold bites
    for disc, raw, fake_map, real, real_map in (("disc_n", raw_n, map_p, n, map_n), ("disc_p", raw_p, map_n, p, map_p)):
        fake, seen_real, pooled = nets[disc].calls
        assert torch.allclose(fake, raw * (fake_map > 0.1).float(), atol=1e-6), disc
        assert torch.equal(seen_real, real * (real_map > 0.1).float()), disc
        assert torch.equal(pooled, fake), disc
        assert (fake[fake_map <= 0.1] == 0).all() and (seen_real[real_map <= 0.1] == 0).all(), disc


def test_uaggan_attended_thresholds_the_map_at_tau():
    step = uaggan_step()
    image = torch.tensor([2.0, -3.0, 4.0, 5.0, -6.0]).view(1, 1, 5, 1)
    mask = torch.tensor([0.05, 0.1, 0.1001, 0.5, 1.0]).view(1, 1, 5, 1)
    assert step.attended(image, mask).flatten().tolist() == [0.0, 0.0, 4.0, 5.0, -6.0]
    step.attention_tau = 0.6
    assert step.attended(image, mask).flatten().tolist() == [0.0, 0.0, 0.0, 0.0, -6.0]


def test_uaggan_attention_networks_are_frozen_after_the_switch():
    step = uaggan_step(pool_size=4)
    nets = step.networks
    batch = batches()[0]

    def snapshot(name):
        return [q.detach().clone() for q in nets[name].parameters()]

    before = {k: snapshot(k) for k in nets}
    step(engine_at(1, 1), batch)  # first stage: the attention networks learn
    for name in nets:
        assert any(not torch.equal(a, b) for a, b in zip(before[name], nets[name].parameters())), name
    assert len(step.pool_n) == 2
    first_stage_pool = torch.cat(step.pool_n.images)

    before = {k: snapshot(k) for k in nets}
    clear_records(step)
    step(engine_at(2, 2), batch)  # second stage: no gradient and no update of A_N and A_P, the rest still learns
    for name in ("attn_n", "attn_p"):
        assert all(torch.equal(a, b) for a, b in zip(before[name], nets[name].parameters())), name
        assert all(q.grad is None for q in nets[name].parameters()), name
        assert all(q.requires_grad for q in nets[name].parameters()), name  # restored after the update
    for name in ("gen_n", "gen_p", "disc_n", "disc_p"):
        assert any(not torch.equal(a, b) for a, b in zip(before[name], nets[name].parameters())), name
    # the pools were emptied at the switch: they hold this iteration's attended fakes only
    assert len(step.pool_n) == 2 and not torch.equal(torch.cat(step.pool_n.images), first_stage_pool)
    assert torch.equal(torch.cat(step.pool_n.images), nets["disc_n"].calls[0])


# ---------------------------------------------------------------- AGGAN: pixel and attention (TV) losses
def test_aggan_generator_loss_includes_weighted_pixel_and_tv_losses():
    torch.manual_seed(0)
    nets = [Gen(2, shared=True), Gen(2, shared=True), Disc(2, True), Disc(2, True)]
    step = CycleGANStep(
        *nets,
        torch.optim.Adam(list(nets[0].parameters()) + list(nets[1].parameters()), 1e-3),
        torch.optim.Adam(list(nets[2].parameters()) + list(nets[3].parameters()), 1e-3),
        attention="shared",
        lambda_identity=0.0,
        lambda_attention=0.0,
        lambda_pixel=1.0,
        lambda_tv=1e-3,
        pool_size=0,
    )
    batch = batches()[0]
    p, n = batch["positive"], batch["negative"]
    with torch.no_grad():
        fake_n, map_p = step.translate(p, "n")
        fake_p, map_n = step.translate(n, "p")

    def tv(m):  # sum over each image of |horizontal| + |vertical| forward differences, mean over the batch
        dh = (m[:, :, 1:, :] - m[:, :, :-1, :]).abs().sum((1, 2, 3))
        dw = (m[:, :, :, 1:] - m[:, :, :, :-1]).abs().sum((1, 2, 3))
        return (dh + dw).mean().item()

    pixel = (fake_n - p).abs().mean().item() + (fake_p - n).abs().mean().item()
    out = step(engine_at(1, 1), batch)
    assert out["loss_pixel"] == pytest.approx(pixel, rel=1e-5)
    assert out["loss_tv"] == pytest.approx(tv(map_p) + tv(map_n), rel=1e-5)
    assert out["loss_tv"] > 1.0  # a sum over pixels, not a mean
    total = out["loss_g_adv"] + 10.0 * out["loss_cycle"] + 1.0 * out["loss_pixel"] + 1e-3 * out["loss_tv"]
    assert out["loss_g"] == pytest.approx(total, rel=1e-5)
    assert "loss_identity" not in out and "loss_attention" not in out


def test_method_switch_validation():
    g, d = Gen(2), disc(2, False)
    opt = torch.optim.SGD(g.parameters(), 0.1)
    kw = dict(attention_guided=False, lambda_attention=0.0)
    with pytest.raises(ValueError, match="lambda_tv"):
        CycleGANStep(g, g, d, d, opt, opt, attention="none", lambda_tv=1e-6, **kw)
    shared = Gen(2, shared=True)
    with pytest.raises(ValueError, match="attention='separate'"):
        CycleGANStep(shared, shared, d, d, opt, opt, attention="shared", attention_switch_epoch=30, **kw)
    a = attn(2)
    with pytest.raises(ValueError, match=">= 0"):
        CycleGANStep(g, g, d, d, opt, opt, attn_n=a, attn_p=a, attention_switch_epoch=-1, **kw)
    with pytest.raises(ValueError, match="attention_tau"):
        CycleGANStep(g, g, d, d, opt, opt, attn_n=a, attn_p=a, attention_switch_epoch=1, attention_tau=1.0, **kw)


# ---------------------------------------------------------------- both methods through the bundle runner
@pytest.mark.parametrize("variant", ["uaggan", "aggan"])
def test_cda_gan_bundle_trains_the_method_variants(tmp_path, variant):
    """bundles/cda_gan with variants/<variant>.yaml and the tiny sizes, 2 epochs through MONAI's ConfigWorkflow:
    UAGGAN (switch after epoch 1) keeps its attention networks of epoch 1 in epoch 2; AGGAN reports and adds its
    pixel and TV losses."""
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    cfg = Path(__file__).resolve().parents[2] / "bundles" / "cda_gan" / "configs"
    files = [str(cfg / "train.yaml"), str(cfg / "variants" / f"{variant}.yaml"), str(cfg / "variants" / "tiny.yaml")]
    override = {"bundle_root": str(tmp_path)}  # data, checkpoints and logs under tmp_path
    if variant == "uaggan":
        override["attention_switch_epoch"] = 1
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, run_id="training", logging_file=False, **override)
    workflow.initialize()
    step, trainer = workflow.parser.get_parsed_content("train#step"), workflow.parser.get_parsed_content(
        "train#trainer"
    )
    snapshots, outputs = {}, []

    @trainer.on(Events.EPOCH_COMPLETED(once=1))
    def _snapshot(engine):
        snapshots.update({k: [q.detach().clone() for q in v.parameters()] for k, v in step.networks.items()})

    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    workflow.run()
    workflow.finalize()
    assert trainer.state.epoch == 2 and len(outputs) == 2 * trainer.state.epoch_length
    assert step.lambda_identity == 0.0 and "loss_identity" not in outputs[-1]
    if variant == "uaggan":
        assert step.attention_switch_epoch == 1 and step.attention_tau == 0.1 and not step.attention_guided
        for name in ("attn_n", "attn_p"):  # frozen in the second epoch
            assert all(torch.equal(a, b) for a, b in zip(snapshots[name], step.networks[name].parameters())), name
        for name in ("gen_n", "disc_n"):
            assert any(not torch.equal(a, b) for a, b in zip(snapshots[name], step.networks[name].parameters())), name
    else:
        assert step.lambda_pixel == 1.0 and step.lambda_tv == 1e-6 and step.attention_guided
        for out in outputs:
            total = out["loss_g_adv"] + 10.0 * out["loss_cycle"] + out["loss_pixel"] + 1e-6 * out["loss_tv"]
            assert out["loss_g"] == pytest.approx(total, rel=1e-5)
    assert list((tmp_path / "models").glob("checkpoint_*.pt")) and (tmp_path / "models" / "model.pt").is_file()
