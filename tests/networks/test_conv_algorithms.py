"""The in-place switch of a network's convolutions to another algorithm (``common.networks.blocks.conv_algorithms``:
Winograd, kn2row): same values and gradients as the direct network, state, copies, pickling, fallbacks, the
per-signature measurement, and the ``conv_algorithm`` setting of a training step. Nothing here asserts a time:
``auto`` is tested with the measurement replaced."""

import copy
import io
import weakref

import pytest
import torch
import torch.nn as nn
from common.engines import TrainingStep
from common.engines.acceleration import AccelerationSettingError, NetworkAcceleration
from common.networks.blocks import conv_algorithms
from common.networks.blocks.conv_algorithms import measured_speedup, use_conv_algorithm

from tests.step_loops import train_net

LIMITS = {"winograd": {"min_channels": 0}, "kn2row": {}}


def _net(algorithm: str, dims: int) -> nn.Module:
    """Seven layers, four of them eligible for ``algorithm`` (one through a spectral-norm parametrization)."""
    torch.manual_seed(0)
    conv, pad = (nn.Conv2d, nn.ReflectionPad2d) if dims == 2 else (nn.Conv3d, nn.ReflectionPad3d)
    if algorithm == "winograd":
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
    return nn.Sequential(
        conv(2, 8, 1),  # not: one tap
        nn.LeakyReLU(0.2),
        conv(8, 2, 3, padding=1, padding_mode="reflect"),  # switched
        conv(2, 3, 3, padding="same"),  # switched
        nn.ReLU(),
        conv(3, 1, 4, padding=1),  # switched: an even kernel, the output one smaller
        conv(1, 2, 3, stride=2, padding=1),  # not: stride 2
        nn.utils.parametrizations.spectral_norm(conv(2, 1, 3)),  # switched, through its parametrization
    )


@pytest.mark.parametrize("algorithm", conv_algorithms.ALGORITHMS)
@pytest.mark.parametrize("dims", [2, 3])
def test_switched_network_equals_the_direct_one_and_keeps_its_state(algorithm, dims):
    net = _net(algorithm, dims)
    twin = copy.deepcopy(net)
    keys = list(net.state_dict())
    params = [id(p) for p in net.parameters()]
    assert use_conv_algorithm(net, algorithm, **LIMITS[algorithm]) == 4
    assert use_conv_algorithm(net, algorithm, **LIMITS[algorithm]) == 0  # already switched
    other = "kn2row" if algorithm == "winograd" else "winograd"
    assert use_conv_algorithm(net, other, min_channels=0) == 0  # each layer takes one algorithm only
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


def test_unknown_algorithm_raises():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        use_conv_algorithm(nn.Conv2d(1, 1, 3), "fft")


def test_a_convolution_with_another_replaced_forward_is_left_alone():
    net = _net("winograd", 2)
    marker = net[0]._conv_forward  # a bound method stored on the instance, as the bf16 guard installs
    net[0]._conv_forward = marker
    assert use_conv_algorithm(net, "winograd", min_channels=0) == 3
    assert net[0]._conv_forward is marker
    assert use_conv_algorithm(net, "kn2row", enable=False) == 0  # restores only its own algorithm's layers
    assert use_conv_algorithm(net, "winograd", enable=False) == 3 and net[0]._conv_forward is marker


def test_copies_and_pickles_keep_the_switch_and_it_can_be_undone():
    net = _net("winograd", 2)[:6]  # without the spectral norm, which torch pickles only through state_dict()
    assert use_conv_algorithm(net, "winograd", min_channels=0) == 3
    net[0]._conv_forward.choices[((1, 2, 9, 9), False)] = True  # as measured by ``auto`` in this process
    clone = copy.deepcopy(net)
    assert clone[0]._conv_forward.conv is clone[0]
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded[3]._conv_forward.conv is loaded[3]
    # the measured choices stay with the process: a copy or a pickle measures again (perhaps on another CPU)
    assert clone[0]._conv_forward.choices == {} == loaded[0]._conv_forward.choices
    assert net[0]._conv_forward.choices
    assert use_conv_algorithm(clone, "winograd", enable=False) == 3
    assert not any("_conv_forward" in vars(m) for m in clone.modules())
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(clone(x), loaded(x), rtol=1e-5, atol=1e-5)


def _count_calls(monkeypatch, algorithm: str) -> list:
    name = f"{algorithm}_conv"
    calls: list = []
    original = getattr(conv_algorithms, name)
    monkeypatch.setattr(conv_algorithms, name, lambda *a: calls.append(a[0].shape) or original(*a))
    return calls


@pytest.mark.parametrize("algorithm", conv_algorithms.ALGORITHMS)
def test_falls_back_to_the_direct_convolution_under_autocast_and_in_float64(monkeypatch, algorithm):
    net = _net(algorithm, 2)
    use_conv_algorithm(net, algorithm, **LIMITS[algorithm])
    calls = _count_calls(monkeypatch, algorithm)
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
    """One layer for each algorithm: a 128-channel 3x3 (Winograd) and a 3x3 to one channel (kn2row)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 128, 1), nn.ReflectionPad2d(1), nn.Conv2d(128, 128, 3), nn.Conv2d(128, 1, 3, padding=1)
    )


@pytest.mark.parametrize("algorithm", conv_algorithms.ALGORITHMS)
def test_step_trains_with_the_algorithm_as_with_direct_convolutions(algorithm):
    images = torch.randn(2, 2, 10, 10)
    switched = _step(_wide(), conv_algorithm=algorithm)
    direct = _step(_wide())
    assert switched.acceleration.switched_convolutions == {algorithm: {"net": 1}}
    assert direct.acceleration.switched_convolutions == {}
    assert f"conv algorithm {algorithm} ({algorithm}-capable: net 1)" in switched.acceleration.describe()
    torch.testing.assert_close(train_net(switched, images, 3), train_net(direct, images, 3), rtol=1e-4, atol=1e-6)
    state = {k: v.state_dict() for k, v in switched.state_objects().items()}
    resumed = _step(_wide(seed=5))  # a checkpoint of a switched run resumes with direct convolutions
    for key, obj in resumed.state_objects().items():
        obj.load_state_dict(state[key])
    for p, q in zip(switched.networks["net"].parameters(), resumed.networks["net"].parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("speedup, used", [(1.5, True), (1.05, False)])
def test_auto_uses_each_algorithm_only_where_measured_faster(monkeypatch, speedup, used):
    measured = []
    monkeypatch.setattr(conv_algorithms, "measured_speedup", lambda *key, **kw: measured.append(key) or speedup)
    calls = {algorithm: _count_calls(monkeypatch, algorithm) for algorithm in conv_algorithms.ALGORITHMS}
    step = _step(_wide(), conv_algorithm="auto")
    assert step.acceleration.switched_convolutions == {"winograd": {"net": 1}, "kn2row": {"net": 1}}
    assert "conv algorithm auto (winograd-capable: net 1; kn2row-capable: net 1)" in step.acceleration.describe()
    direct = _step(_wide())
    images = torch.randn(2, 2, 10, 10)
    torch.testing.assert_close(train_net(step, images, 2), train_net(direct, images, 2), rtol=1e-4, atol=1e-6)
    assert {k: len(v) for k, v in calls.items()} == (
        {"winograd": 2, "kn2row": 2} if used else {"winograd": 0, "kn2row": 0}
    )
    # the call signatures: one sample of the (reflection-padded) input, the weight, the zero padding, with gradients
    assert measured[:2] == [
        ("winograd", (1, 128, 12, 12), (128, 128, 3, 3), (0, 0), True),
        ("kn2row", (1, 128, 10, 10), (1, 128, 3, 3), (1, 1), True),
    ]
    with torch.no_grad():
        step.networks["net"](images)
    assert measured[-1][-1] is False


@pytest.mark.parametrize("algorithm", conv_algorithms.ALGORITHMS)
def test_measured_speedup_is_cached_and_leaves_the_random_state_alone(algorithm):
    state = torch.get_rng_state()
    key = (algorithm, (1, 2, 6, 6), (1, 2, 3, 3), (1, 1), True)
    first = measured_speedup(*key)
    assert first > 0 and measured_speedup(*key) == first
    assert torch.equal(torch.get_rng_state(), state)
    record = {"algorithm": algorithm, "input": [1, 2, 6, 6], "weight": [1, 2, 3, 3], "trained": True}
    assert any(record.items() <= m.items() for m in conv_algorithms.conv_measurements())


def test_a_signature_measured_slower_is_measured_once_more_at_the_recheck_call(monkeypatch):
    """A start-up measurement disturbed by other load does not leave the layers direct for the whole run: the better
    of two measurements decides, one second measurement per signature for all the layers that share it."""
    results = iter([1.05, 1.6])
    timed = []
    monkeypatch.setattr(conv_algorithms, "_MEASURED", {})
    monkeypatch.setattr(conv_algorithms, "_measure", lambda *key, rounds: timed.append(key) or next(results))
    monkeypatch.setattr(conv_algorithms, "_AWAITING_RECHECK", weakref.WeakSet())
    calls = _count_calls(monkeypatch, "winograd")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.Conv2d(128, 128, 3, padding=1))
    assert use_conv_algorithm(net, "winograd", measure=True) == 2
    x = torch.randn(1, 128, 6, 6)
    assert conv_algorithms.recheck_state() == (0, 0)
    with torch.no_grad():
        for _ in range(conv_algorithms.RECHECK_CALL - 1):
            net(x)
        assert len(timed) == 1 and calls == []  # measured 1.05x: direct
        # both layers wait for their recheck, 9 calls counted each (what a benchmark's warm-up settles)
        assert conv_algorithms.recheck_state() == (2, 2 * (conv_algorithms.RECHECK_CALL - 1))
        net(x)  # the tenth call: measured again, 1.6x
        assert len(timed) == 2 and len(calls) == 2
        assert conv_algorithms.recheck_state() == (0, 0)
        net(x)
    assert len(timed) == 2 and len(calls) == 4
    (record,) = conv_algorithms.conv_measurements()
    assert record["measurements"] == [1.05, 1.6] and record["speedup"] == 1.6 and record["used"]


def test_measurement_alternates_the_two_methods_in_every_round():
    """So that a burst of other load on the machine slows both alike (a one-sided slow-down flipped the choice)."""
    order: list[str] = []
    best = conv_algorithms._best_times((lambda: order.append("direct"), lambda: order.append("other")), rounds=3)
    assert order == ["direct", "other"] * 4  # one untimed pass each, then 3 timed rounds
    assert len(best) == 2 and all(t >= 0 for t in best)


def test_auto_does_not_switch_under_autocast_or_off_the_cpu():
    assert _step(_wide(), conv_algorithm="auto", amp=True).acceleration.switched_convolutions == {}
    meta = NetworkAcceleration({"net": _wide()}, "meta", conv_algorithm="auto")
    assert meta.switched_convolutions == {}
    assert "direct: not an fp32 CPU step" in meta.describe()


def _checkpoint(step: TrainingStep) -> dict:
    buffer = io.BytesIO()
    torch.save({k: v.state_dict() for k, v in step.state_objects().items()}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _measuring(monkeypatch, speedups: dict) -> list:
    """A fresh process's measurements (none cached), each algorithm timed at ``speedups[algorithm]``."""
    timed: list = []
    monkeypatch.setattr(conv_algorithms, "_MEASURED", {})
    monkeypatch.setattr(conv_algorithms, "_measure", lambda *key, rounds: timed.append(key) or speedups[key[0]])
    return timed


def test_auto_choices_are_checkpointed_and_a_run_resumed_on_this_cpu_keeps_them(monkeypatch, caplog):
    """A resumed ``auto`` run on the same CPU and threads computes each layer as the killed run did, even where a new
    measurement would decide otherwise (another algorithm rounds differently: the continuation would not be exact);
    each layer also keeps its count of calls towards the second measurement of a signature measured slower."""
    images = torch.randn(2, 2, 10, 10)
    timed = _measuring(monkeypatch, {"winograd": 1.5, "kn2row": 1.05})  # Winograd used, kn2row not
    straight = _step(_wide(), conv_algorithm="auto")
    straight_losses = train_net(straight, images, 3)
    timed = _measuring(monkeypatch, {"winograd": 1.5, "kn2row": 1.05})
    first = _step(_wide(), conv_algorithm="auto")
    first_losses = train_net(first, images, 2)
    assert len(timed) == 2
    state = _checkpoint(first)
    choices = state["acceleration"]["conv_choices"]
    assert choices["layers"]["net"]["2"] == {"algorithm": "winograd", "choices": [[[1, 128, 12, 12], True, True, 1]]}
    assert choices["layers"]["net"]["3"] == {"algorithm": "kn2row", "choices": [[[1, 128, 10, 10], True, False, 2]]}

    # a new process where the measurements would come out the other way round
    timed = _measuring(monkeypatch, {"winograd": 0.5, "kn2row": 3.0})
    calls = {algorithm: _count_calls(monkeypatch, algorithm) for algorithm in conv_algorithms.ALGORITHMS}
    resumed = _step(_wide(seed=5), conv_algorithm="auto")
    with caplog.at_level("INFO", logger="common.engines.acceleration"):
        for key, obj in resumed.state_objects().items():
            obj.load_state_dict(state[key])
    assert "2 layers keep the choices of the checkpoint" in caplog.text
    assert first_losses + train_net(resumed, images, 1) == straight_losses
    assert timed == [] and len(calls["winograd"]) == 1 and calls["kn2row"] == []  # one forward, as the killed run
    assert resumed.networks["net"][3]._conv_forward.calls == {((1, 128, 10, 10), True): 3}
    for p, q in zip(straight.networks["net"].parameters(), resumed.networks["net"].parameters()):
        assert torch.equal(p, q)


def test_auto_choices_of_another_cpu_or_thread_count_are_measured_again(monkeypatch, caplog):
    """Timings from another CPU model, vector ISA or thread count do not hold here: the resumed run measures."""
    _measuring(monkeypatch, {"winograd": 1.5, "kn2row": 1.05})
    first = _step(_wide(), conv_algorithm="auto")
    train_net(first, torch.randn(2, 2, 10, 10), 1)
    state = _checkpoint(first)
    state["acceleration"]["conv_choices"]["identity"]["threads"] += 1
    timed = _measuring(monkeypatch, {"winograd": 0.5, "kn2row": 3.0})
    resumed = _step(_wide(), conv_algorithm="auto")
    with caplog.at_level("INFO", logger="common.engines.acceleration"):
        resumed.acceleration.load_state_dict(state["acceleration"])
    assert "measuring again on this CPU" in caplog.text
    train_net(resumed, torch.randn(2, 2, 10, 10), 1)
    assert [key[0] for key in timed] == ["winograd", "kn2row"]
    assert resumed.networks["net"][2]._conv_forward.choices == {((1, 128, 12, 12), True): False}
    assert resumed.networks["net"][3]._conv_forward.choices == {((1, 128, 10, 10), True): True}
    # the same CPU with nothing measured yet adopts nothing, but is not "another CPU"
    saved = conv_algorithms.choices_state({})
    assert conv_algorithms.load_choices_state({}, saved) == 0
    assert conv_algorithms.load_choices_state({}, state["acceleration"]["conv_choices"]) is None
    # a fixed algorithm, or direct convolutions, record nothing to adopt
    assert "conv_choices" not in _step(_wide(), conv_algorithm="winograd").acceleration.state_dict()
    assert "conv_choices" not in _step(_wide()).acceleration.state_dict()


def test_invalid_conv_algorithm_raises_a_user_error():
    with pytest.raises(AccelerationSettingError, match="conv_algorithm must be one of"):
        _step(_wide(), conv_algorithm="fft")


def _graph_ops(graphs: list) -> dict[str, int]:
    """The convolutions and matrix products in the graphs that Dynamo traced (with the subgraphs of autograd
    Functions, the forward and the backward)."""
    modules = [m for gm in graphs for m in gm.modules() if isinstance(m, torch.fx.GraphModule)]
    targets = [str(node.target) for m in modules for node in m.graph.nodes if node.op == "call_function"]
    return {op: sum(op in t for t in targets) for op in ("conv2d", "matmul")}


@pytest.mark.parametrize("speedup, used", [(1.5, True), (1.05, False)])
def test_auto_under_compile_measures_at_an_eager_first_call_and_traces_the_choice(monkeypatch, speedup, used):
    """``conv_algorithm: auto`` with ``compile``: the first call runs eagerly and measures (a trace cannot time
    anything); the trace computes each layer as measured; a signature first seen in a trace takes the direct
    convolution without measuring. A recording backend stands in for Inductor (its graphs run as traced)."""
    measured = []
    monkeypatch.setattr(conv_algorithms, "measured_speedup", lambda *key, **kw: measured.append(key) or speedup)
    graphs: list = []

    def recording_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    net, direct = _wide(), _wide()
    acceleration = NetworkAcceleration(
        {"net": net}, "cpu", compile={"backend": recording_backend}, conv_algorithm="auto"
    )
    x = torch.randn(2, 2, 10, 10)
    first = net(x)
    assert len(measured) == 2 and not graphs
    second = net(x)
    assert acceleration.compile_status == "on" and len(graphs) == 1
    # used: Winograd's matrix products (forward; backward: weight and input gradients) and kn2row's 1x1 convolution
    # beside the unswitched first layer
    assert _graph_ops(graphs) == ({"conv2d": 2, "matmul": 3} if used else {"conv2d": 3, "matmul": 0})
    for y in (first, second):
        torch.testing.assert_close(y, direct(x), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        third = net(x)  # a new signature (no gradients), first seen in a trace: direct, nothing measured
    assert len(measured) == 2 and len(graphs) == 2
    assert _graph_ops(graphs[1:]) == {"conv2d": 3, "matmul": 0}
    torch.testing.assert_close(third, direct(x), rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
