"""Instance norms computed by the group-norm kernel (``common.networks.blocks.instance_norm_kernel``): the same values
and gradients as torch's instance norm, the fallbacks, state, copies and pickling, and ``conv_algorithm: auto``'s use
of it in a training step. Nothing here asserts a time."""

import copy
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from common.engines import TrainingStep
from common.networks import ResNetGenerator
from common.networks.blocks.instance_norm_kernel import GroupNormKernel, use_group_norm_kernel

from tests.step_loops import train_net


def _net(dims: int, affine: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    conv, norm = (nn.Conv2d, nn.InstanceNorm2d) if dims == 2 else (nn.Conv3d, nn.InstanceNorm3d)
    net = nn.Sequential(conv(2, 6, 3, padding=1), norm(6, affine=affine), nn.ReLU(), conv(6, 1, 3, padding=1))
    if affine:  # not the identity initialisation, so that the affine part is checked too
        with torch.no_grad():
            net[1].weight.uniform_(0.5, 1.5)
            net[1].bias.uniform_(-0.5, 0.5)
    return net


def _kernel_calls(monkeypatch) -> list:
    calls: list = []
    group_norm = F.group_norm
    monkeypatch.setattr(F, "group_norm", lambda *a, **k: calls.append(a[0].shape) or group_norm(*a, **k))
    return calls


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("affine", [False, True])
def test_switched_norm_equals_instance_norm_in_values_and_gradients(monkeypatch, dims, affine):
    plain, switched = _net(dims, affine), _net(dims, affine)
    assert use_group_norm_kernel(switched) == 1
    calls = _kernel_calls(monkeypatch)
    x = torch.randn((3, 2) + (7,) * dims)
    out_plain, out_switched = plain(x), switched(x)
    assert len(calls) == 1  # the group-norm kernel computed the switched one
    torch.testing.assert_close(out_switched, out_plain, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out_plain)
    out_plain.backward(grad)
    out_switched.backward(grad)
    for p, q in zip(plain.parameters(), switched.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5)
    assert switched.state_dict().keys() == plain.state_dict().keys()
    # an unbatched input goes through the module's own handling, then the kernel
    torch.testing.assert_close(
        switched[1](x[0, :1].expand(6, *x.shape[2:])), plain[1](x[0, :1].expand(6, *x.shape[2:]))
    )


def test_falls_back_to_instance_norm_where_not_measured_or_not_the_same(monkeypatch):
    net = _net(2, affine=False)  # no parameters, so that inputs of any dtype are valid
    use_group_norm_kernel(net)
    norm = net[1]
    calls = _kernel_calls(monkeypatch)
    x = torch.randn(2, 6, 5, 5)
    norm(x)
    assert len(calls) == 1
    norm(x.contiguous(memory_format=torch.channels_last))  # channels-last: slower there once measured
    norm(x.double().contiguous())  # float64
    norm(x.bfloat16())  # bfloat16 (e.g. under autocast)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="more than 1 spatial element"):  # rejected as instance norm rejects it
        norm.train()(torch.randn(2, 6, 1, 1))
    assert len(calls) == 1


def test_only_norms_without_running_statistics_are_switched_and_the_switch_can_be_undone():
    tracked = nn.InstanceNorm2d(4, track_running_stats=True)
    net = nn.Sequential(tracked, nn.InstanceNorm2d(4), nn.BatchNorm2d(4), nn.GroupNorm(2, 4))
    assert use_group_norm_kernel(net) == 1
    assert use_group_norm_kernel(net) == 0  # already switched
    assert isinstance(vars(net[1])["_apply_instance_norm"], GroupNormKernel)
    assert "_apply_instance_norm" not in vars(tracked)
    x = torch.randn(2, 4, 6, 6) + 3.0
    net(x)
    assert tracked.running_mean.min() > 0.1  # its running statistics still update (from 0)
    assert use_group_norm_kernel(net, enable=False) == 1
    assert "_apply_instance_norm" not in vars(net[1])


def test_copies_and_pickles_keep_the_switch():
    net = _net(2, affine=True)
    use_group_norm_kernel(net)
    copied = copy.deepcopy(net)
    assert copied[1]._apply_instance_norm.norm is copied[1]  # the copy's own module, not the original's
    with torch.no_grad():
        copied[1].bias.add_(1.0)
    x = torch.randn(2, 2, 6, 6)
    assert not torch.allclose(copied(x), net(x))
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded[1]._apply_instance_norm.norm is loaded[1]
    torch.testing.assert_close(loaded(x), net(x))


# ---------------------------------------------------------------------- the training step's setting
def _step(net: nn.Module, **kwargs) -> TrainingStep:
    # SGD: Adam would turn the rounding noise of gradients that are zero in exact arithmetic (a convolution's bias
    # before an instance norm) into steps of the learning rate, and the two runs apart
    return TrainingStep({"net": net}, {"net": torch.optim.SGD(net.parameters(), lr=0.1)}, "cpu", **kwargs)


def _generator(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ResNetGenerator(2, 1, 1, base_channels=4, num_res_blocks=1)


def test_auto_trains_a_cyclegan_generator_with_the_kernel_as_with_instance_norm(monkeypatch):
    """``conv_algorithm: auto`` on an fp32 CPU step switches every instance norm; ``direct`` none; both learn alike."""
    images = torch.randn(2, 1, 16, 16)
    auto = _step(_generator(), conv_algorithm="auto")
    direct = _step(_generator())
    norms = sum(isinstance(m, nn.InstanceNorm2d) for m in auto.networks["net"].modules())
    assert norms > 0 and auto.acceleration.group_norm_kernel == {"net": norms}
    assert f"instance norm by the group-norm kernel (net {norms})" in auto.acceleration.describe()
    assert auto.acceleration.as_dict()["group_norm_kernel"] == {"net": norms}
    assert direct.acceleration.group_norm_kernel == {} and "group-norm" not in direct.acceleration.describe()
    calls = _kernel_calls(monkeypatch)
    torch.testing.assert_close(train_net(auto, images, 3), train_net(direct, images, 3), rtol=1e-4, atol=1e-6)
    assert len(calls) >= 3 * norms
    for p, q in zip(auto.networks["net"].parameters(), direct.networks["net"].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)
    # not under autocast: its norms see bfloat16 inputs, where the kernel was not measured
    assert _step(_generator(), conv_algorithm="auto", amp=True).acceleration.group_norm_kernel == {}
