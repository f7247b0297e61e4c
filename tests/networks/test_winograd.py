"""Winograd F(2, 3) convolutions (``common.networks.blocks.winograd``): equal to the direct convolution in 2D and
3D (values, gradients, float64 gradcheck), fp32 error no larger than the direct method's, the in-place switch of a
network's eligible convolutions (state, copies, pickling, fallbacks) and the ``conv_algorithm`` setting of a
training step. Nothing here asserts a time: ``auto`` is tested with the measurement replaced."""

import copy
import io
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from common.engines import TrainingStep
from common.engines.acceleration import AccelerationSettingError, NetworkAcceleration
from common.networks.blocks import winograd as winograd_module
from common.networks.blocks.winograd import measured_speedup, use_winograd, winograd_conv, winograd_eligible

CONV = {2: F.conv2d, 3: F.conv3d}


@pytest.mark.parametrize(
    "shape, padding",
    [
        ((2, 5, 7, 9), 0),  # odd output sizes: the last tile is cut
        ((1, 4, 6, 6), 1),
        ((1, 3, 3, 4), 0),  # a 1x2 output: one tile
        ((2, 3, 5, 6, 7), 1),
        ((1, 2, 4, 4, 4), (0, 1, 0)),
    ],
)
def test_equals_the_direct_convolution_with_gradients(shape, padding):
    dims = len(shape) - 2
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn((6, shape[1]) + (3,) * dims, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    ours = winograd_conv(x, w, b, padding)
    ref = CONV[dims](x, w, b, padding=padding)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(ours, (x, w, b), grad)
    want = torch.autograd.grad(ref, (x, w, b), grad)
    for g, h in zip(got, want):
        torch.testing.assert_close(g, h, rtol=0, atol=1e-11)
    if x.numel() <= 200:  # the small cases, 2D and 3D: gradcheck perturbs every element
        assert torch.autograd.gradcheck(lambda *t: winograd_conv(*t, padding), (x, w, b))


def test_fp32_error_is_no_larger_than_the_direct_methods():
    """Against a float64 reference, at a CycleGAN residual block's width: the transforms' coefficients (0, +-1,
    +-1/2) add no measurable error (measured: Winograd 6e-6, direct 3e-5 at this size)."""
    torch.manual_seed(0)
    x = torch.randn(1, 256, 18, 18, dtype=torch.float64)
    w = torch.randn(256, 256, 3, 3, dtype=torch.float64) * 0.05
    ref = F.conv2d(x, w)
    err_winograd = (winograd_conv(x.float(), w.float()).double() - ref).abs().max()
    err_direct = (F.conv2d(x.float(), w.float()).double() - ref).abs().max()
    assert err_winograd <= 2 * err_direct
    assert err_winograd < 1e-4


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="3-tap kernel"):
        winograd_conv(torch.zeros(1, 2, 8, 8), torch.zeros(3, 2, 5, 5))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        winograd_conv(torch.zeros(1, 2, 2, 8), torch.zeros(3, 2, 3, 3))


def test_eligibility():
    assert winograd_eligible(nn.Conv2d(4, 4, 3, padding=1))
    assert winograd_eligible(nn.Conv3d(4, 4, 3, padding="same", padding_mode="reflect"))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3, stride=2))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3, dilation=2))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3, groups=2))
    assert not winograd_eligible(nn.Conv2d(4, 4, (3, 1)))
    assert not winograd_eligible(nn.ConvTranspose2d(4, 4, 3))
    assert not winograd_eligible(nn.Conv1d(4, 4, 3))
    assert not winograd_eligible(nn.Conv2d(4, 4, 3), min_channels=8)
    assert winograd_eligible(nn.Conv2d(8, 8, 3), min_channels=8)


def _net(dims: int) -> nn.Module:
    torch.manual_seed(0)
    conv, pad = (nn.Conv2d, nn.ReflectionPad2d) if dims == 2 else (nn.Conv3d, nn.ReflectionPad3d)
    return nn.Sequential(
        conv(2, 8, 3, padding=1),  # switched
        nn.LeakyReLU(0.2),
        pad(1),
        conv(8, 8, 3),  # switched
        nn.ReLU(),
        conv(8, 8, 3, padding=1, padding_mode="reflect"),  # switched
        conv(8, 8, 3, stride=2, padding=1),  # not: stride 2
        nn.utils.parametrizations.spectral_norm(conv(8, 4, 3)),  # switched, through its parametrization
    )


@pytest.mark.parametrize("dims", [2, 3])
def test_switched_network_equals_the_direct_one_and_keeps_its_state(dims):
    net = _net(dims)
    twin = copy.deepcopy(net)
    keys = list(net.state_dict())
    params = [id(p) for p in net.parameters()]
    assert use_winograd(net, min_channels=0) == 4
    assert use_winograd(net, min_channels=0) == 0  # already switched
    assert list(net.state_dict()) == keys and [id(p) for p in net.parameters()] == params
    x = torch.randn((2, 2) + (9,) * dims)
    net.eval()  # spectral norm: no power iteration, both use the same vectors
    twin.eval()
    torch.testing.assert_close(net(x), twin(x), rtol=1e-5, atol=1e-5)
    net.train()
    twin.train()
    out, ref = net(x), twin(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.square().mean().backward()
    ref.square().mean().backward()
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_a_convolution_with_another_replaced_forward_is_left_alone():
    net = _net(2)
    marker = net[0]._conv_forward  # a bound method stored on the instance, as the bf16 guard installs
    net[0]._conv_forward = marker
    assert use_winograd(net, min_channels=0) == 3
    assert net[0]._conv_forward is marker
    assert use_winograd(net, enable=False) == 3 and net[0]._conv_forward is marker


def test_copies_and_pickles_keep_the_switch_and_it_can_be_undone():
    net = _net(2)[:6]  # without the spectral norm, which torch pickles only through state_dict()
    assert use_winograd(net, min_channels=0) == 3
    clone = copy.deepcopy(net)
    assert clone[0]._conv_forward.conv is clone[0]
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded[3]._conv_forward.conv is loaded[3]
    assert use_winograd(clone, enable=False) == 3
    assert not any("_conv_forward" in vars(m) for m in clone.modules())
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(clone(x), loaded(x), rtol=1e-5, atol=1e-5)


def test_falls_back_to_the_direct_convolution_under_autocast_and_in_float64(monkeypatch):
    net = _net(2)
    use_winograd(net, min_channels=0)
    calls = _count_winograd_calls(monkeypatch)
    x = torch.randn(1, 2, 9, 9)
    net(x)
    assert len(calls) == 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
    net.double()(x.double())
    assert len(calls) == 4


# ---------------------------------------------------------------------- the training step's setting
def _step(net: nn.Module, **kwargs) -> TrainingStep:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    return TrainingStep({"net": net}, {"net": optimizer}, "cpu", **kwargs)


def _wide(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 128, 1), nn.ReflectionPad2d(1), nn.Conv2d(128, 128, 3), nn.Conv2d(128, 1, 1))


def _train(step: TrainingStep, images: torch.Tensor, iterations: int) -> list[float]:
    engine = SimpleNamespace(state=SimpleNamespace(iteration=0, epoch=1))
    losses = []
    for _ in range(iterations):
        engine.state.iteration += 1
        loss = step.networks["net"](step.images({"image": images})).pow(2).mean()
        step.optimise(engine, "net", loss)
        losses.append(loss.item())
    return losses


def test_step_trains_with_winograd_as_with_direct_convolutions():
    images = torch.randn(2, 2, 10, 10)
    winograd = _step(_wide(), conv_algorithm="winograd")
    direct = _step(_wide())
    assert winograd.acceleration.winograd_convolutions == {"net": 1}
    assert direct.acceleration.winograd_convolutions == {}
    assert "conv algorithm winograd (Winograd-capable: net 1)" in winograd.acceleration.describe()
    torch.testing.assert_close(_train(winograd, images, 3), _train(direct, images, 3), rtol=1e-4, atol=1e-6)
    state = {k: v.state_dict() for k, v in winograd.state_objects().items()}
    resumed = _step(_wide(seed=5))  # a checkpoint of a Winograd run resumes with direct convolutions
    for key, obj in resumed.state_objects().items():
        obj.load_state_dict(state[key])
    for p, q in zip(winograd.networks["net"].parameters(), resumed.networks["net"].parameters()):
        assert torch.equal(p, q)


def _count_winograd_calls(monkeypatch) -> list:
    calls: list = []
    original = winograd_module.winograd_conv
    monkeypatch.setattr(winograd_module, "winograd_conv", lambda *a: calls.append(a[0].shape) or original(*a))
    return calls


@pytest.mark.parametrize("speedup, used", [(1.5, True), (1.05, False)])
def test_auto_uses_winograd_only_where_measured_faster(monkeypatch, speedup, used):
    measured = []
    monkeypatch.setattr(winograd_module, "measured_speedup", lambda *key: measured.append(key) or speedup)
    calls = _count_winograd_calls(monkeypatch)
    step = _step(_wide(), conv_algorithm="auto")
    assert step.acceleration.winograd_convolutions == {"net": 1}
    assert "conv algorithm auto (Winograd-capable: net 1)" in step.acceleration.describe()
    direct = _step(_wide())
    images = torch.randn(2, 2, 10, 10)
    torch.testing.assert_close(_train(step, images, 2), _train(direct, images, 2), rtol=1e-4, atol=1e-6)
    assert len(calls) == (2 if used else 0)
    # the call signature: one sample of the reflection-padded input, the weight, no zero padding, with gradients
    assert measured[0] == ((1, 128, 12, 12), (128, 128, 3, 3), (0, 0), True)
    with torch.no_grad():
        step.networks["net"](images)
    assert measured[-1][-1] is False


def test_measured_speedup_is_cached_and_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    key = ((1, 2, 6, 6), (3, 2, 3, 3), (1, 1), True)
    first = measured_speedup(*key)
    assert first > 0 and measured_speedup(*key) == first
    assert torch.equal(torch.get_rng_state(), state)
    assert {"input": [1, 2, 6, 6], "weight": [3, 2, 3, 3], "trained": True, "speedup": round(first, 3)}.items() <= (
        winograd_module.winograd_measurements()[-1].items()
    )


def test_auto_does_not_switch_under_autocast_or_off_the_cpu():
    assert _step(_wide(), conv_algorithm="auto", amp=True).acceleration.winograd_convolutions == {}
    meta = NetworkAcceleration({"net": _wide()}, "meta", conv_algorithm="auto")
    assert meta.winograd_convolutions == {}
    assert "direct: not an fp32 CPU step" in meta.describe()


def test_invalid_conv_algorithm_raises_a_user_error():
    with pytest.raises(AccelerationSettingError, match="conv_algorithm must be one of"):
        _step(_wide(), conv_algorithm="fft")
