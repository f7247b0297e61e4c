"""The guard of tiny stride-1 3D convolutions under CPU bf16 autocast (common.engines.cpu_bf16_guard).

The oneDNN fault it avoids shows only on some CPUs and only in some calls, so these tests check what the guard
does (which calls run in float32, with the same result) rather than reproduce the fault.
"""

import copy

import pytest
import torch
import torch.nn as nn
from common.engines import TrainingStep, precision
from common.engines.cpu_bf16_guard import guard_tiny_3d_convolutions, is_guarded
from common.networks.patchgan import PatchGANDiscriminator


def _output_dtype(conv: nn.Module, size: int) -> torch.dtype:
    x = torch.randn(1, conv.in_channels, size, size, size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return conv(x).dtype


@pytest.mark.parametrize(
    "kernel, stride, padding, size, fp32",
    [
        (4, 1, 1, 3, True),  # output 2: the faulty case
        (3, 1, 1, 2, True),  # output 2
        (4, 1, 1, 2, True),  # output 1
        (3, 1, 1, 3, False),  # output 3
        (4, 1, 1, 9, False),  # output 8
        (4, 2, 1, 4, False),  # stride 2: not guarded
        (3, 1, "same", 2, True),
        (3, 1, "valid", 5, False),  # output 3
    ],
)
def test_only_stride_1_convolutions_with_tiny_outputs_run_in_float32(kernel, stride, padding, size, fp32):
    conv = nn.Conv3d(2, 3, kernel, stride, padding)
    assert _output_dtype(conv, size) == torch.bfloat16
    assert guard_tiny_3d_convolutions([conv]) == (1 if stride == 1 else 0)
    assert _output_dtype(conv, size) == (torch.float32 if fp32 else torch.bfloat16)


def test_guarded_values_and_gradients_match_float32_and_outside_autocast_nothing_changes():
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 2, 4, 1, 1)
    reference = copy.deepcopy(conv)
    assert guard_tiny_3d_convolutions([conv]) == 1 and guard_tiny_3d_convolutions([conv]) == 0  # idempotent
    x = torch.randn(2, 4, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    out.square().sum().backward()
    expected = reference(x)
    expected.square().sum().backward()
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(conv.weight.grad, reference.weight.grad, atol=1e-5)
    assert torch.equal(conv(x), reference(x))  # no autocast: the plain call
    assert conv.state_dict().keys() == reference.state_dict().keys()


def test_a_copy_keeps_its_own_guard():
    net = PatchGANDiscriminator(3, 1, base_channels=2, num_layers=3)
    assert guard_tiny_3d_convolutions([net]) == 2  # the two stride-1 layers
    copied = copy.deepcopy(net)
    guarded = [m for m in copied.modules() if is_guarded(m)]
    assert len(guarded) == 2 and all(m._conv_forward.__self__ is m for m in guarded)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert copied(torch.randn(1, 1, 32, 32, 32)).dtype == torch.float32  # 32^3: the last layer's output is 2^3


@pytest.mark.parametrize("amx, speedup, guarded", [(False, 1.9, True), (False, 0.7, False), (True, 1.9, False)])
def test_the_step_guards_only_bf16_on_a_cpu_without_amx(monkeypatch, amx, speedup, guarded):
    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(precision, "cpu_has_bf16_instructions", lambda: True)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)
    net = PatchGANDiscriminator(3, 1, base_channels=2, num_layers=3)
    TrainingStep({"d": net}, {"d": torch.optim.SGD(net.parameters(), 0.1)}, amp="auto")
    assert any(is_guarded(m) for m in net.modules()) == guarded
