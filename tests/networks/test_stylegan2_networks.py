"""Tests of the StyleGAN2 layers and networks (Karras et al. 2020) and of C-SG's mask conditioning (paper 004)."""

import math

import pytest
import torch
import torch.nn.functional as F
from common.networks import MappingNetwork, StyleGAN2Discriminator, StyleGAN2Generator
from common.networks.blocks import (
    EqualizedLinear,
    FIRResample,
    MinibatchStdDev,
    ModulatedConv,
    NoiseInjection,
    ToRGB,
    upfirdn,
)
from common.networks.stylegan2 import stylegan2_shapes

TINY = {"latent_dim": 8, "style_dim": 8, "channel_base": 64, "channel_max": 8}


def _generator(spatial_dims=2, size=16, out_channels=2, cond=0):
    torch.manual_seed(0)
    g = StyleGAN2Generator(spatial_dims, out_channels, size, condition_channels=cond, **TINY)
    with torch.no_grad():  # noise strengths start at 0: make the noise visible
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.strength.fill_(0.5)
    return g


def _discriminator(spatial_dims=2, size=16, in_channels=2, cond=0):
    torch.manual_seed(1)
    return StyleGAN2Discriminator(
        spatial_dims, in_channels, size, channel_base=64, channel_max=8, condition_channels=cond
    )


# ---- upfirdn and FIR resampling


def test_upfirdn_hand_computed_1d():
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 3)
    k = torch.tensor([1.0, 2.0])  # asymmetric: checks that the filter is flipped (a true convolution)
    # zeros inserted: [1, 0, 2, 0, 3, 0]; padded (1, 0): [0, 1, 0, 2, 0, 3, 0]; out[j] = 2 y[j] + y[j + 1]
    assert upfirdn(x, k, up=2, padding=(1, 0)).flatten().tolist() == [1.0, 2.0, 2.0, 4.0, 3.0, 6.0]
    # padded (0, 1): [1, 2, 3, 0]; filtered [4, 7, 6]; every second kept from the first: [4, 6]
    assert upfirdn(x, k, down=2, padding=(0, 1)).flatten().tolist() == [4.0, 6.0]
    # negative padding crops
    assert upfirdn(x, torch.tensor([1.0]), padding=(-1, 0)).flatten().tolist() == [2.0, 3.0]


def test_upfirdn_hand_computed_2d_and_fir_resample():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    # [1, 1] with up 2 and padding (1, 0) is nearest-neighbour upsampling on each axis
    expected = [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]
    assert upfirdn(x, torch.tensor([1.0, 1.0]), up=2, padding=(1, 0))[0, 0].tolist() == expected
    # [1, 3, 3, 1] upsampling of [4, 8]: filter [1, 3, 3, 1] / 8 * 2, padding (2, 1), on [0, 0, 4, 0, 8, 0, 0]
    up = FIRResample(up=2)
    assert up.padding == (2, 1)
    assert torch.allclose(up(torch.tensor([4.0, 8.0]).reshape(1, 1, 2)).flatten(), torch.tensor([3.0, 5.0, 7.0, 6.0]))
    # downsampling of an impulse of 64 at (0, 0) in 4x4: padding (1, 1); out (0, 0) = 64 * (3 / 8) * (3 / 8) = 9
    impulse = torch.zeros(1, 1, 4, 4)
    impulse[0, 0, 0, 0] = 64.0
    assert torch.allclose(FIRResample(down=2)(impulse)[0, 0], torch.tensor([[9.0, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_fir_resampling_preserves_a_constant_image(spatial_dims):
    const = torch.full([2, 3] + [8] * spatial_dims, 2.5)
    inner = (slice(None), slice(None)) + (slice(1, -1),) * spatial_dims
    up, down = FIRResample(up=2)(const), FIRResample(down=2)(const)
    assert up.shape[2:] == (16,) * spatial_dims and down.shape[2:] == (4,) * spatial_dims
    assert torch.allclose(up[inner], torch.full_like(up[inner], 2.5))
    assert torch.allclose(down[inner], torch.full_like(down[inner], 2.5))
    assert not torch.allclose(up, torch.full_like(up, 2.5))  # the zero padding shows at the borders


def test_upfirdn_scripts():
    x, k = torch.randn(2, 3, 5, 6), torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.allclose(torch.jit.script(upfirdn)(x, k, 2, 1, (2, 1)), upfirdn(x, k, 2, 1, (2, 1)))


# ---- equalised layers with the learning-rate multiplier, minibatch stddev with several channels


def test_equalized_linear_lr_multiplier_and_bias_init():
    torch.manual_seed(0)
    lin = EqualizedLinear(400, 300, gain=1.0, lr_multiplier=0.01, bias_init=0.5)
    assert lin.linear.weight.std().item() == pytest.approx(100.0, rel=0.02)  # stored N(0, 1 / lr_multiplier)
    x = torch.randn(3, 400)
    expected = x @ (lin.linear.weight * 0.01 / math.sqrt(400)).T + lin.linear.bias * 0.01
    assert torch.allclose(lin(x), expected, atol=1e-5)
    assert torch.allclose(lin(torch.zeros(1, 400)), torch.full((1, 300), 0.5))  # effective initial bias
    plain = EqualizedLinear(4, 2)  # defaults unchanged: N(0, 1) weights, zero bias, He gain
    assert plain.scale == pytest.approx(math.sqrt(2.0) / 2.0) and torch.equal(plain.linear.bias, torch.zeros(2))


def test_minibatch_stddev_num_channels_hand_made():
    # 2 samples, 4 channels, 1x1, one group of 2; channels {0, 1} differ by 2 and 4 (stds 1, 2), {2, 3} are equal
    x = torch.tensor([[0.0, 0.0, 7.0, 1.0], [2.0, 4.0, 7.0, 1.0]]).reshape(2, 4, 1, 1)
    y = MinibatchStdDev(group_size=2, eps=0.0, num_channels=2)(x)
    assert y.shape == (2, 6, 1, 1)
    assert torch.allclose(y[:, 4:].flatten(), torch.tensor([1.5, 0.0, 1.5, 0.0]))
    one = MinibatchStdDev(group_size=2, eps=0.0)(x)  # the default keeps one channel: mean of (1, 2, 0, 0)
    assert torch.allclose(one[:, 4].flatten(), torch.tensor([0.75, 0.75]))


# ---- modulated convolution


@pytest.mark.parametrize("spatial_dims,size", [(2, 24), (3, 10)])
def test_weight_demodulation_gives_unit_variance(spatial_dims, size):
    torch.manual_seed(0)
    x = torch.randn([4, 64] + [size] * spatial_dims)
    w = 4.0 * torch.randn(4, 16)  # styles far from 1, so that modulation alone changes the scale
    inner = (slice(None), slice(None)) + (slice(1, -1),) * spatial_dims  # away from the zero padding
    with torch.no_grad():
        demod = ModulatedConv(spatial_dims, 64, 32, 3, 16)(x, w)[inner]
        plain = ModulatedConv(spatial_dims, 64, 32, 3, 16, demodulate=False)(x, w)[inner]
    per_map = demod.transpose(0, 1).reshape(4 * 32, -1).std(dim=1)  # every sample's every output map
    assert demod.std().item() == pytest.approx(1.0, abs=0.05)
    assert per_map.min().item() > 0.8 and per_map.max().item() < 1.2
    assert abs(plain.std().item() - 1.0) > 0.5


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_modulated_conv_grouped_equals_per_sample_and_upsamples(spatial_dims):
    torch.manual_seed(0)
    conv = ModulatedConv(spatial_dims, 3, 5, 3, 4)
    x, w = torch.randn([2, 3] + [6] * spatial_dims), torch.randn(2, 4)
    fn = [F.conv1d, F.conv2d, F.conv3d][spatial_dims - 1]
    weight = conv.modulated_weight(w)
    for b in range(2):
        assert torch.allclose(conv(x, w)[b : b + 1], fn(x[b : b + 1], weight[b], padding=1), atol=1e-5)
    up = ModulatedConv(spatial_dims, 3, 5, 3, 4, up=2)
    assert up(x, w).shape == (2, 5) + (12,) * spatial_dims
    rgb = ToRGB(spatial_dims, 3, 2, 4)
    assert rgb(x, w).shape == (2, 2) + (6,) * spatial_dims


# ---- generator


def test_generator_and_mapping_shapes_2d_and_3d():
    g = _generator(2, 16)
    assert g.num_ws == 6 and g.channels == [8, 8, 4]  # 4, 8, 16 px: min(64 // r, 8)
    z = torch.randn(3, 8)
    ws = g.mapping(z)
    assert ws.shape == (3, 6, 8) and torch.equal(ws[:, 0], ws[:, 5])
    assert g(z).shape == (3, 2, 16, 16)
    g3 = _generator(3, 8, out_channels=1)
    assert g3.num_ws == 4 and g3(torch.randn(2, 8)).shape == (2, 1, 8, 8, 8)
    g_aniso = StyleGAN2Generator(3, 1, (16, 16, 8), **TINY)
    assert g_aniso.synthesis_network.start_shape == [8, 8, 4] and g_aniso.num_ws == 4
    assert g_aniso(torch.randn(2, 8)).shape == (2, 1, 16, 16, 8)
    mapping = MappingNetwork(8, 6, num_ws=5, num_layers=3)
    assert mapping(torch.randn(4, 8)).shape == (4, 5, 6) and len(mapping.net) == 7  # pixel norm + 3 x (FC, act)


def test_image_size_validation():
    assert stylegan2_shapes((64, 64, 32), 3) == [[8, 8, 4], [16, 16, 8], [32, 32, 16], [64, 64, 32]]
    assert stylegan2_shapes(4, 2) == [[4, 4]]
    for bad in (12, 2, (16, 12), (16, 16, 16)):
        with pytest.raises(ValueError):
            stylegan2_shapes(bad, 2)


def test_w_avg_tracking_and_truncation():
    g = _generator()
    assert torch.equal(g.w_avg, torch.zeros(8))
    g.train()
    g.mapping(torch.randn(16, 8))
    tracked = g.w_avg.clone()
    assert tracked.abs().sum() > 0
    g.eval()
    z = torch.randn(4, 8)
    ws = g.mapping(z)
    assert torch.equal(g.w_avg, tracked)  # not updated in eval mode
    assert torch.allclose(g.mapping(z, truncation_psi=0.0), tracked.expand(4, 6, 8))
    half = g.mapping(z, truncation_psi=0.5)
    assert torch.allclose(half, tracked + 0.5 * (ws - tracked), atol=1e-6)
    cut = g.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], tracked.expand(4, 2, 8)) and torch.equal(cut[:, 2:], ws[:, 2:])


def test_noise_modes():
    g = _generator().eval()
    ws = g.mapping(torch.randn(2, 8))
    with torch.no_grad():
        const = [g.synthesis(ws, noise_mode="const") for _ in range(2)]
        rand = [g.synthesis(ws, noise_mode="random") for _ in range(2)]
        none = g.synthesis(ws, noise_mode="none")
    assert torch.equal(const[0], const[1])
    assert not torch.allclose(rand[0], rand[1])
    assert not torch.allclose(none, const[0])
    with pytest.raises(ValueError):
        g.synthesis(ws, noise_mode="fixed")


def test_style_mixing_uses_every_ws_row():
    g = _generator().eval()
    ws1, ws2 = g.mapping(torch.randn(2, 8)), g.mapping(torch.randn(2, 8))
    with torch.no_grad():
        out1, out2 = g.synthesis(ws1, noise_mode="const"), g.synthesis(ws2, noise_mode="const")
        mixed = torch.cat([ws1[:, :3], ws2[:, 3:]], dim=1)
        out_mixed = g.synthesis(mixed, noise_mode="const")
        assert not torch.allclose(out_mixed, out1) and not torch.allclose(out_mixed, out2)
        for i in range(g.num_ws):  # every style vector reaches the output
            changed = ws1.clone()
            changed[:, i] = ws2[:, i]
            assert not torch.allclose(g.synthesis(changed, noise_mode="const"), out1)
    with pytest.raises(ValueError):
        g.synthesis(ws1[:, :5])


def test_generator_double_backward_for_path_length():
    g = _generator()
    ws = g.mapping(torch.randn(2, 8)).detach().requires_grad_(True)
    image = g.synthesis(ws)
    (grad,) = torch.autograd.grad((image * torch.randn_like(image)).sum(), ws, create_graph=True)
    grad.pow(2).sum().backward()
    assert g.synthesis_network.blocks[-1].conv1.conv.weight.grad.abs().sum() > 0


def test_generator_trace_and_script_match_eager():
    g = _generator().eval()
    with torch.no_grad():
        ws = g.mapping(torch.randn(2, 8))

    class Synthesis(torch.nn.Module):
        def __init__(self, generator):
            super().__init__()
            self.generator = generator

        def forward(self, ws):
            return self.generator.synthesis(ws, noise_mode="const")

    with torch.no_grad():
        traced = torch.jit.trace(Synthesis(g), (ws,))
        assert torch.allclose(traced(ws), g.synthesis(ws, noise_mode="const"), atol=1e-6)
        z = torch.randn(2, 8)
        scripted = torch.jit.script(g)
        assert torch.allclose(scripted(z, None, 0.7, None, "const"), g(z, None, 0.7, None, "const"), atol=1e-6)


# ---- C-SG conditioning


def _record_inputs(modules):
    seen = {}

    def hook(name):
        return lambda _module, args: seen.__setitem__(name, args[0].detach())

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    return seen, handles


@pytest.mark.parametrize("spatial_dims,size", [(2, 16), (3, 8)])
def test_csg_generator_concatenates_the_mask_after_every_demodulated_conv(spatial_dims, size):
    k = 3
    g = _generator(spatial_dims, size, out_channels=1, cond=k).eval()
    mask = F.one_hot(torch.randint(0, k, [2] + [size] * spatial_dims), k).movedim(-1, 1).float()
    ws = g.mapping(torch.randn(2, 8))
    net = g.synthesis_network
    named = {"start_to_rgb": net.start_to_rgb}
    for j, block in enumerate(net.blocks):
        named.update({f"{j}.conv1": block.conv1.conv, f"{j}.to_rgb": block.to_rgb, f"{j}.next": block.conv0.conv})
    seen, handles = _record_inputs(named)
    with torch.no_grad():
        out = g.synthesis(ws, mask, noise_mode="const")
    for h in handles:
        h.remove()
    assert out.shape == (2, 1) + (size,) * spatial_dims
    pool = [F.avg_pool1d, F.avg_pool2d, F.avg_pool3d][spatial_dims - 1]
    start_mask = pool(mask, size // 4)
    assert seen["start_to_rgb"].shape[1] == g.channels[0] + k
    assert torch.allclose(seen["start_to_rgb"][:, -k:], start_mask)
    assert torch.allclose(seen["0.next"][:, -k:], start_mask)  # the first block's upsampling conv takes it too
    for j in range(len(net.blocks)):
        block_mask = pool(mask, size // (8 * 2**j)) if size > 8 * 2**j else mask
        assert net.blocks[j].conv1.conv.in_channels == g.channels[j + 1] + k
        for name in (f"{j}.conv1", f"{j}.to_rgb"):
            assert seen[name].shape[1] == g.channels[j + 1] + k
            assert torch.allclose(seen[name][:, -k:], block_mask, atol=1e-6)


def test_csg_generator_output_changes_with_the_mask_and_requires_it():
    g = _generator(cond=2).eval()
    z = torch.randn(2, 8)
    m0 = torch.zeros(2, 2, 16, 16)
    m0[:, 0] = 1.0
    m1 = m0.clone()
    m1[:, :, 4:9, 4:9] = torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1)
    with torch.no_grad():
        a, b = g(z, m0, noise_mode="const"), g(z, m1, noise_mode="const")
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError):
        g(z)
    with pytest.raises(ValueError):
        g(z, torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError):
        _generator()(z, m0)


@pytest.mark.parametrize("spatial_dims,size", [(2, 16), (3, 8)])
def test_csg_discriminator_takes_the_mask_before_from_rgb_and_every_block(spatial_dims, size):
    k = 2
    d = _discriminator(spatial_dims, size, in_channels=3, cond=k)
    x = torch.randn([4, 3] + [size] * spatial_dims)
    mask = torch.zeros([4, k] + [size] * spatial_dims)
    mask[:, 0] = 1.0
    other = mask.clone()
    other[:, :, 2:6] = torch.tensor([0.0, 1.0]).reshape([1, 2] + [1] * spatial_dims)
    named = {"from_rgb": d.from_rgb}
    named.update({f"block{j}": b for j, b in enumerate(d.blocks)})
    seen, handles = _record_inputs(named)
    out = d(x, mask)
    for h in handles:
        h.remove()
    assert out.shape == (4, 1)
    assert seen["from_rgb"].shape[1] == 3 + k and torch.equal(seen["from_rgb"][:, -k:], mask)
    pool = [F.avg_pool1d, F.avg_pool2d, F.avg_pool3d][spatial_dims - 1]
    for j, block in enumerate(d.blocks):
        block_mask = pool(mask, 2**j) if j else mask
        assert block.conv0[0].conv.in_channels == block.skip[1].conv.in_channels == seen[f"block{j}"].shape[1]
        assert torch.allclose(seen[f"block{j}"][:, -k:], block_mask)
    assert not torch.allclose(d(x, other), out)
    with pytest.raises(ValueError):
        d(x)


# ---- discriminator


@pytest.mark.parametrize("spatial_dims,size", [(2, 16), (3, 8)])
def test_discriminator_logits_minibatch_stddev_and_input_gradients(spatial_dims, size):
    d = _discriminator(spatial_dims, size)
    seen, handles = _record_inputs({"conv": d.conv[0]})
    x = torch.randn([4, 2] + [size] * spatial_dims, requires_grad=True)
    out = d(x)
    for h in handles:
        h.remove()
    assert out.shape == (4, 1)
    h = seen["conv"]
    assert h.shape[1] == 8 + 1  # channels at 4 px plus the stddev channel
    assert torch.allclose(h[:, -1], h[:1, -1].expand_as(h[:, -1]))  # one value for the group of 4
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)  # R1 needs the gradient and its graph
    assert grad.abs().sum() > 0
    grad.pow(2).sum().backward()
    assert d.from_rgb[0].conv.weight.grad.abs().sum() > 0


def test_discriminator_scripts():
    d = _discriminator(cond=1)
    x, c = torch.randn(2, 2, 16, 16), torch.rand(2, 1, 16, 16)
    assert torch.allclose(torch.jit.script(d)(x, c), d(x, c), atol=1e-6)


def test_bfloat16_autocast_with_w_avg_tracking_and_truncation():
    g, d = _generator(cond=1).train(), _discriminator(cond=1)
    mask = torch.rand(2, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image = g(torch.randn(2, 8), mask, truncation_psi=0.5)
        logits = d(image, mask)
    assert image.dtype == logits.dtype == torch.bfloat16 and g.w_avg.dtype == torch.float32
    assert torch.isfinite(logits.float()).all() and g.w_avg.abs().sum() > 0
