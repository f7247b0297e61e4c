"""Memory format (``channels_last``/``auto``) and ``torch.compile`` of a training step's networks, with the eager
fallback. Tiny networks, in-process; compilation uses Dynamo with the ``eager`` backend or a backend that raises
(the real Inductor compile, ~15 s on CPU, is marked slow). Nothing here asserts a time: the ``auto`` choice is
tested with the measurement replaced."""

import copy
import io
import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from common.engines import TrainingStep, acceleration
from common.engines.acceleration import (
    AccelerationSettingError,
    NetworkAcceleration,
    as_memory_format,
    convert_memory_format,
    measure_memory_formats,
)
from common.networks.blocks import conv_algorithms
from common.networks.blocks.instance_norm_kernel import GroupNormKernel

FORMATS = {2: torch.channels_last, 3: torch.channels_last_3d}


def _net(dims: int, seed: int = 0) -> nn.Module:
    """Conv -> instance norm -> LeakyReLU -> reflection pad -> conv -> batch norm (running stats) -> conv (no biases
    before the norms: their gradients are zero up to rounding, which Adam would amplify into format-dependent
    updates)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    pad = nn.ReflectionPad2d if dims == 2 else nn.ReflectionPad3d
    norm = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d
    batch = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    return nn.Sequential(
        conv(2, 6, 3, padding=1, bias=False),
        norm(6, affine=True),
        nn.LeakyReLU(0.2),
        pad(1),
        conv(6, 6, 3, bias=False),
        batch(6),
        conv(6, 1, 1),
    )


def _step(net: nn.Module, **kwargs) -> TrainingStep:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    return TrainingStep({"net": net}, {"net": optimizer}, "cpu", **kwargs)


def _train(step: TrainingStep, images: torch.Tensor, iterations: int) -> list[float]:
    """``iterations`` optimiser steps of ``mean(net(x)^2)`` on the step's images; the losses."""
    engine = SimpleNamespace(state=SimpleNamespace(iteration=0, epoch=1))
    losses = []
    for _ in range(iterations):
        engine.state.iteration += 1
        x = step.images({"image": images})
        loss = step.networks["net"](x).pow(2).mean()
        step.optimise(engine, "net", loss)
        losses.append(loss.item())
    return losses


def _save_load(obj: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("dims", [2, 3])
def test_channels_last_converts_networks_and_inputs_and_trains_as_contiguous(dims):
    images = torch.randn(2, 2, *[8] * dims)
    plain, fast = _step(_net(dims)), _step(_net(dims), memory_format="channels_last")
    fmt = FORMATS[dims]
    net = fast.networks["net"]
    assert net[0].weight.is_contiguous(memory_format=fmt) and not net[0].weight.is_contiguous()
    assert fast.images({"image": images}).is_contiguous(memory_format=fmt)
    assert plain.images({"image": images}).is_contiguous()
    assert fast.acceleration.formats == {"net": "channels_last" if dims == 2 else "channels_last_3d"}
    assert plain.acceleration.formats == {"net": "contiguous"}
    optimizer_params = fast.optimizers["net"].param_groups[0]["params"]
    assert all(p is q for p, q in zip(optimizer_params, net.parameters()))  # converted in place
    losses_plain, losses_fast = _train(plain, images, 3), _train(fast, images, 3)
    assert losses_plain == pytest.approx(losses_fast, rel=1e-4)
    assert net[0].weight.is_contiguous(memory_format=fmt)  # kept through the optimiser steps
    state = fast.optimizers["net"].state[net[0].weight]
    assert state["exp_avg"].is_contiguous(memory_format=fmt)
    for p, q in zip(plain.networks["net"].parameters(), net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_checkpoints_load_across_memory_formats():
    cl_net, plain_net = _net(2, seed=1), _net(2, seed=2)
    convert_memory_format(cl_net, True)
    _train(_step(cl_net), torch.randn(2, 2, 8, 8), 1)
    saved = _save_load(cl_net.state_dict())
    assert list(saved) == list(plain_net.state_dict())  # no prefix, same keys
    plain_net.load_state_dict(saved)
    for (name, p), q in zip(plain_net.state_dict().items(), cl_net.state_dict().values()):
        assert torch.equal(p, q), name
    assert plain_net[0].weight.is_contiguous()  # the destination keeps its own format
    back = convert_memory_format(_net(2, seed=3), True)
    back.load_state_dict(_save_load(plain_net.state_dict()))
    assert back[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(back[0].weight, cl_net[0].weight)


def test_channels_last_training_resumes_exactly_from_a_checkpoint():
    """3 steps straight == 2 steps, a weights-only checkpoint of network and optimiser, a new step, 1 more step."""
    images = torch.randn(2, 2, 8, 8)
    straight = _step(_net(2), memory_format="channels_last")
    _train(straight, images, 3)
    first = _step(_net(2), memory_format="channels_last")
    _train(first, images, 2)
    state = _save_load({k: v.state_dict() for k, v in first.state_objects().items()})
    resumed = _step(_net(2, seed=9), memory_format="channels_last")
    for key, obj in resumed.state_objects().items():
        obj.load_state_dict(state[key])
    _train(resumed, images, 1)
    for p, q in zip(straight.networks["net"].parameters(), resumed.networks["net"].parameters()):
        assert torch.equal(p, q)
        assert q.ndim != 4 or q.is_contiguous(memory_format=torch.channels_last)


def test_invalid_settings_raise_a_user_error():
    with pytest.raises(AccelerationSettingError, match="memory_format must be one of"):
        _step(_net(2), memory_format="nhwc")
    with pytest.raises(AccelerationSettingError, match="compile must be true, false or a mapping"):
        _step(_net(2), compile="yes")


# ---------------------------------------------------------------------- auto
def test_auto_measurement_leaves_the_network_and_the_random_state_unchanged():
    net, twin = _net(2), _net(2)
    net.train()
    x = torch.randn(2, 2, 8, 8)
    torch.manual_seed(5)
    with torch.no_grad():  # e.g. a generator's first call makes the critic's fakes: the backward is timed anyway
        times = measure_memory_formats(net, (x,), {}, "cpu", trained=True, rounds=1)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))  # the random state was forked
    assert set(times) == {"contiguous", "channels_last"} and all(t > 0 for t in times.values())
    for (name, a), b in zip(net.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name  # batch-norm statistics restored, parameters untouched
    assert all(p.grad is None for p in net.parameters())
    assert net[0].weight.is_contiguous()


@pytest.mark.parametrize("times, chosen", [((1.0, 0.5), "channels_last"), ((1.0, 0.97), "contiguous")])
def test_auto_keeps_channels_last_only_when_clearly_faster(monkeypatch, caplog, times, chosen):
    measured = []

    def fake(network, args, kwargs, device, trained=True, rounds=2):
        measured.append((args[0].shape, trained))
        return {"contiguous": times[0], "channels_last": times[1]}

    monkeypatch.setattr(acceleration, "measure_memory_formats", fake)
    step, twin = _step(_net(2), memory_format="auto"), _net(2)
    assert step.acceleration.formats == {"net": acceleration.PENDING}
    x = torch.randn(2, 2, 8, 8)
    with caplog.at_level(logging.INFO, logger="common.engines.acceleration"):
        out = step.networks["net"](x)
        step.networks["net"](x)
    assert measured == [(x.shape, True)]  # once, at the first call, with the backward timed
    assert step.acceleration.formats == {"net": chosen}
    fmt = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[chosen]
    assert step.networks["net"][0].weight.is_contiguous(memory_format=fmt)
    assert step.acceleration.input_channels_last(4) is (chosen == "channels_last")
    assert step.acceleration.as_dict()["auto_times_s"] == {"net": {"contiguous": times[0], "channels_last": times[1]}}
    torch.testing.assert_close(out, twin(x), rtol=1e-4, atol=1e-5)
    assert sum(f"net -> {chosen}" in r.getMessage() for r in caplog.records) == 1
    assert step.networks["net"]._compiled_call_impl is None  # nothing left to do at later calls


def test_auto_choice_is_checkpointed_and_a_resumed_run_keeps_it_without_measuring(monkeypatch):
    """The layouts an ``auto`` run chose are in its checkpoint; a resumed ``auto`` run adopts them (no new measurement,
    which could choose otherwise and change the exact continuation); an explicit setting of the resumed run wins."""
    calls = []

    def fake(network, args, kwargs, device, trained=True, rounds=2):
        calls.append(1)
        return {"contiguous": 1.0, "channels_last": 0.5}

    monkeypatch.setattr(acceleration, "measure_memory_formats", fake)
    images = torch.randn(2, 2, 8, 8)
    straight = _step(_net(2), memory_format="auto")
    _train(straight, images, 3)
    first = _step(_net(2), memory_format="auto")
    _train(first, images, 2)
    state = _save_load({k: v.state_dict() for k, v in first.state_objects().items()})
    assert state["acceleration"]["formats"] == {"net": "channels_last"} and len(calls) == 2

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed auto run measured again")

    monkeypatch.setattr(acceleration, "measure_memory_formats", refuse)
    resumed = _step(_net(2, seed=9), memory_format="auto")
    for key, obj in resumed.state_objects().items():
        obj.load_state_dict(state[key])
    assert resumed.acceleration.formats == {"net": "channels_last"}
    assert resumed.networks["net"][0].weight.is_contiguous(memory_format=torch.channels_last)
    _train(resumed, images, 1)
    for p, q in zip(straight.networks["net"].parameters(), resumed.networks["net"].parameters()):
        assert torch.equal(p, q)
    explicit = _step(_net(2), memory_format="contiguous")
    explicit.acceleration.load_state_dict(state["acceleration"])
    assert explicit.acceleration.formats == {"net": "contiguous"}
    assert explicit.acceleration.state_dict() == {"memory_format": "contiguous", "formats": {}}


# ---------------------------------------------------------------------- compile
def test_compile_where_unavailable_falls_back_with_one_warning(monkeypatch, caplog):
    def unsupported() -> None:
        raise RuntimeError("Python 3.99+ is not supported by this torch")

    from torch._dynamo import eval_frame

    monkeypatch.setattr(eval_frame, "check_if_dynamo_supported", unsupported)
    x = torch.randn(2, 2, 8, 8)
    with caplog.at_level(logging.WARNING, logger="common.engines.acceleration"):
        step = _step(_net(2), compile=True)
        out = step.networks["net"](x)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Python 3.99+ is not supported" in warnings[0]
    assert step.acceleration.compile_status.startswith("eager fallback: torch.compile is not supported here")
    assert step.networks["net"]._compiled_call_impl is None
    torch.testing.assert_close(out, _net(2)(x), rtol=0, atol=0)


def test_inductor_without_a_cpu_compiler_is_unavailable(monkeypatch):
    from torch._inductor import cpp_builder

    def missing() -> str:
        raise RuntimeError("Failed to find a working C++ compiler")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    reason = acceleration.compile_unavailable_reason(torch.device("cpu"), {})
    assert reason is not None and "no C++ compiler" in reason
    assert acceleration.compile_unavailable_reason(torch.device("cpu"), {"backend": "eager"}) is None


def test_compile_failing_at_a_call_falls_back_for_that_network_with_equal_results(caplog):
    """The backend raises for the first graph it gets (the generator's) and compiles the next (the critic's)."""
    calls = []

    def flaky_backend(graph_module, example_inputs):
        calls.append(len(example_inputs))
        if len(calls) == 1:
            raise RuntimeError("this backend cannot compile")
        return graph_module.forward

    gen, disc = _net(2, seed=1), _net(2, seed=2)
    step = TrainingStep(
        {"gen": gen, "disc": disc},
        {"gen": torch.optim.SGD(gen.parameters(), lr=0.1), "disc": torch.optim.SGD(disc.parameters(), lr=0.1)},
        compile={"backend": flaky_backend},
        memory_format="channels_last",
    )
    assert step.acceleration.compile_status == "on"
    x = torch.randn(2, 2, 8, 8)
    with caplog.at_level(logging.WARNING, logger="common.engines.acceleration"):
        out = gen(step.images({"image": x}))
        out2 = disc(x)
    assert len(calls) == 2, "the backend was called for each network"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "compiling gen failed" in warnings[0] and "this backend cannot compile" in warnings[0]
    assert gen._compiled_call_impl is None  # eager from now on
    assert disc._compiled_call_impl is not None  # still compiled
    assert list(step.acceleration.compile_fallbacks) == ["gen"]
    assert step.acceleration.compile_status.startswith("on, eager fallback for gen (BackendCompilerFailed")
    ref_gen, ref_disc = _net(2, seed=1), _net(2, seed=2)
    torch.testing.assert_close(out, ref_gen(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out2, ref_disc(x), rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(gen.state_dict().items(), ref_gen.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)  # batch-norm statistics updated once


def test_compiled_networks_train_as_eager_keep_their_keys_and_make_independent_copies():
    """Dynamo with the ``eager`` backend (the graph capture of torch.compile without code generation)."""
    images = torch.randn(2, 2, 8, 8)
    eager, compiled = _step(_net(2)), _step(_net(2), compile={"backend": "eager"})
    net = compiled.networks["net"]
    assert compiled.acceleration.compile_status == "on" and net._compiled_call_impl is not None
    assert _train(eager, images, 2) == pytest.approx(_train(compiled, images, 2), rel=1e-6)
    assert list(net.state_dict()) == list(eager.networks["net"].state_dict())  # no _orig_mod. prefix
    ema = copy.deepcopy(net)  # e.g. a moving-average generator copied from a compiled one
    assert ema._compiled_call_impl is None  # an eager copy, not the original's compiled forward
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5)
    x = torch.randn(1, 2, 8, 8)
    ema.eval()
    net.eval()
    assert not torch.allclose(ema(x), net(x))
    reference = copy.deepcopy(ema)
    torch.testing.assert_close(ema(x), reference(x), rtol=0, atol=0)


@pytest.mark.slow
def test_inductor_compiled_network_equals_eager(monkeypatch):
    """A real Inductor compile (C++ code generation on CPU, ~15 s here), channels-last, with ``conv_algorithm: auto``
    measuring both algorithms faster (replaced): forward and gradients equal those of the eager network with direct
    convolutions."""
    monkeypatch.setattr(conv_algorithms, "measured_speedup", lambda *key, **kw: 2.0)
    torch.manual_seed(0)
    eager = nn.Sequential(
        nn.Conv2d(2, 128, 1),
        nn.ReflectionPad2d(1),
        nn.Conv2d(128, 128, 3, bias=False),  # Winograd
        nn.InstanceNorm2d(128, affine=True),
        nn.LeakyReLU(0.2),
        nn.Conv2d(128, 1, 3, padding=1),  # kn2row
    )
    compiled = copy.deepcopy(eager)
    x = torch.randn(2, 2, 8, 8)
    accelerated = NetworkAcceleration({"net": compiled}, "cpu", "channels_last", True, conv_algorithm="auto")
    if compiled._compiled_call_impl is None:
        pytest.skip("compilation unavailable here")
    assert accelerated.switched_convolutions == {"winograd": {"net": 1}, "kn2row": {"net": 1}}
    convert_memory_format(eager, True)
    compiled(x)  # the eager first call, which measures
    y_eager, y_compiled = eager(as_memory_format(x, True)), compiled(x)
    assert accelerated.compile_status == "on"
    torch.testing.assert_close(y_compiled, y_eager, rtol=1e-4, atol=1e-5)
    y_eager.pow(2).mean().backward()
    y_compiled.pow(2).mean().backward()
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5)


def test_layout_names_follow_the_convolution_weights():
    class Modulated(nn.Module):
        """A 3D network without torch convolution modules (e.g. modulated convolutions): its 5D weight decides."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(2, 2, 3, 3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.conv3d(x, self.weight, padding=1)

    linear, modulated = nn.Linear(3, 2), Modulated()
    step = TrainingStep(
        {"linear": linear, "modulated": modulated},
        {"linear": torch.optim.SGD(linear.parameters(), lr=0.1)},
        memory_format="channels_last",
    )
    assert step.acceleration.formats == {"linear": "contiguous", "modulated": "channels_last_3d"}
    assert modulated.weight.is_contiguous(memory_format=torch.channels_last_3d)
    auto = NetworkAcceleration({"modulated": Modulated()}, "cpu", "auto")
    assert auto.formats == {"modulated": "contiguous"}  # not measured: no torch convolution module


def test_auto_then_compile_measures_eagerly_once_and_keeps_the_compiled_call(monkeypatch):
    measured = []

    def fake(network, args, kwargs, device, trained=True, rounds=2):
        measured.append(torch.compiler.is_compiling())
        return {"contiguous": 1.0, "channels_last": 0.5}

    monkeypatch.setattr(acceleration, "measure_memory_formats", fake)
    step, twin = _step(_net(2), memory_format="auto", compile={"backend": "eager"}), _net(2)
    net, x = step.networks["net"], torch.randn(2, 2, 8, 8)
    out = net(x)
    net(x)
    assert measured == [False]  # once, outside the compiled region
    assert step.acceleration.formats == {"net": "channels_last"} and step.acceleration.compile_status == "on"
    assert net._compiled_call_impl is not None and net._compiled_call_impl.compiled is not None
    torch.testing.assert_close(out, twin(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_accelerate_inference_computes_what_the_plain_network_does(dims):
    """An inference config's network gets the training's settings, forward only: the instance norm computed by the
    group-norm kernel and the kn2row-capable layer switched (``auto`` on an fp32 CPU), channels-last weights, the same
    outputs up to rounding and the same ``state_dict``; ``None`` passes through."""
    net = _net(dims).eval()
    plain = copy.deepcopy(net)
    assert acceleration.accelerate_inference(None, "channels_last", "auto") is None
    assert acceleration.accelerate_inference(net, "channels_last", "auto") is net
    assert isinstance(net[1]._apply_instance_norm, GroupNormKernel)
    assert "_conv_forward" in vars(net[4])  # 6 -> 6 channels, 3 taps: kn2row-capable, measured per signature
    assert net[0].weight.is_contiguous(memory_format=FORMATS[dims])
    x = torch.randn(2, 2, *([9] * dims))
    with torch.no_grad():
        expected, got = plain(x), net(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.equal(got, torch.zeros_like(got))
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    assert net._compiled_call_impl is None  # nothing runs at its calls but the switched layers


def test_accelerate_inference_under_autocast_or_direct_keeps_torch_layers():
    """Under the config's autocast, or with ``direct``/``contiguous``, nothing is switched or converted."""
    for autocast, algorithm in ((True, "auto"), (False, "direct")):
        net = _net(2).eval()
        acceleration.accelerate_inference(net, "contiguous", algorithm, autocast=autocast)
        assert "_apply_instance_norm" not in vars(net[1])
        assert not any("_conv_forward" in vars(m) for m in net.modules())
        assert net[0].weight.is_contiguous()
    with pytest.raises(AccelerationSettingError, match="memory_format"):
        acceleration.accelerate_inference(_net(2), "nhwc", "auto")
