from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from common.engines import CycleGANStep, ImagePool, LinearDecay, StepTrainer, constant_then_linear_decay
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


def test_each_discriminator_input_carries_its_own_attention_map():
    """CDA-GAN eq. 7-8: D_N sees (n, A_P(n)) and (G_N^A(p), A_N(p)); D_P sees (p, A_N(p)) and (G_P^A(n), A_P(n))."""
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
        pool_size=0,
    )
    batch = batches()[0]
    p, n = batch["positive"], batch["negative"]
    with torch.no_grad():
        fake_n, fake_p = step.translate(p, "n")[0], step.translate(n, "p")[0]
    step(SimpleNamespace(state=SimpleNamespace(iteration=1, epoch=1)), batch)

    # generator update: the fakes with their sources' maps; discriminator update: real, then fake
    expected = {
        "disc_n": [(fake_n, attn_n(p)), (n, attn_p(n)), (fake_n, attn_n(p))],
        "disc_p": [(fake_p, attn_p(n)), (p, attn_n(p)), (fake_p, attn_p(n))],
    }
    for name, spy in (("disc_n", disc_n), ("disc_p", disc_p)):
        assert len(spy.calls) == 3, name
        for (image, seen), (want_image, want_map) in zip(spy.calls, expected[name]):
            assert torch.allclose(image, want_image, atol=1e-6), name
            assert torch.allclose(seen, want_map, atol=1e-6), name
