"""Other ways to compute a network's convolutions on a CPU, chosen per layer: the in-place switch and, for
``conv_algorithm: auto``, the measurement of each call signature.

Two algorithms compute the same convolution as the direct method, up to float rounding, where the CPU's direct
convolution leaves its vector units idle or does more multiplications than needed (:data:`ALGORITHMS`):

- ``"winograd"`` (:mod:`common.networks.blocks.winograd`): wide 3x3(x3) stride-1 layers, at least
  :data:`~common.networks.blocks.winograd.WINOGRAD_MIN_CHANNELS` input and output channels (a CycleGAN's residual
  blocks), with 16/36 of the multiplications (3x3x3: 64/216);
- ``"kn2row"`` (:mod:`common.networks.blocks.kn2row`): stride-1 layers with few output channels and a kernel of
  several taps, at most :data:`~common.networks.blocks.kn2row.KN2ROW_MAX_COLUMNS` output channels times taps (a
  generator's final 7x7 layer to the image, an attention network's map, a PatchGAN's final 4x4 layer), as one wide
  1x1 convolution and a shifted sum.

A switched layer computes the other algorithm only for an fp32 input and weight on the CPU with the CPU's autocast
off; anywhere else (CUDA, whose cuDNN chooses its own algorithms; bfloat16 autocast on a CPU with AMX; float64) it
computes the usual convolution. With ``measure`` (the training steps' ``conv_algorithm: auto``) each new call
signature (one sample's input shape, the weight shape, the padding, with or without gradients) is timed once per
process against the direct method, and the other algorithm runs only where it measured at least
:data:`AUTO_MARGIN` faster; a signature that measured slower is measured once more a few steps later
(:data:`RECHECK_CALL`). Parameters, ``state_dict`` and checkpoints stay those of the plain convolutions; the
decisions go into a training checkpoint beside them (:func:`choices_state`) and a run resumed on the same CPU
adopts them (:func:`load_choices_state`), so that it computes every layer as before instead of measuring again.

Both algorithms trace into one :func:`torch.compile` graph (``compile: true``; Winograd's transforms take a
stack-based form there). A trace cannot time anything: a compiled network keeps the choices measured at eager calls
(the training steps run its first call eagerly), and a signature first seen in a trace computes the direct
convolution.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.utils.cpu import cpu_identity

from .kn2row import KN2ROW_MAX_COLUMNS, kn2row_conv, kn2row_eligible
from .winograd import WINOGRAD_MIN_CHANNELS, winograd_conv, winograd_eligible

__all__ = [
    "ALGORITHMS",
    "AUTO_MARGIN",
    "RECHECK_CALL",
    "algorithm_eligible",
    "choices_state",
    "conv_measurements",
    "load_choices_state",
    "measured_speedup",
    "recheck_state",
    "use_conv_algorithm",
]

ALGORITHMS = ("winograd", "kn2row")
"""The algorithms a convolution can be switched to; each layer takes at most one of them."""

AUTO_MARGIN = 1.1
"""With ``measure``, a switched layer uses its algorithm for a call signature only where :func:`measured_speedup`
measures it at least this much faster than the direct convolution."""

RECHECK_CALL = 10
"""With ``measure``, a signature that measured slower than :data:`AUTO_MARGIN` is measured once more at a switched
layer's tenth call with it (a few steps into training) and the better of the two measurements decides. Other load at
start-up (another process starting, compiling or loading data) can make the algorithm measure slower than it runs:
on hardware C, beside other jobs, the CycleGAN residual blocks' Winograd measured 1.07x once, and the process ran
its steps about 1.3x slower with all 36 of them direct."""


def algorithm_eligible(
    module: nn.Module, algorithm: str, min_channels: int = WINOGRAD_MIN_CHANNELS, max_columns: int = KN2ROW_MAX_COLUMNS
) -> bool:
    """Whether ``module`` is a convolution that ``algorithm`` can compute (``min_channels``: Winograd's fewest input
    and output channels; ``max_columns``: kn2row's most output channels times taps)."""
    if algorithm == "winograd":
        return winograd_eligible(module, min_channels)
    if algorithm == "kn2row":
        return kn2row_eligible(module, max_columns)
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got '{algorithm}'.")


def _conv(algorithm: str) -> Any:
    """The algorithm's function, looked up at the call (so that a test can wrap it)."""
    return winograd_conv if algorithm == "winograd" else kn2row_conv


def _numeric_padding(conv: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    """The zero padding per axis of an eligible convolution (``"same"``: odd kernels only, as eligibility asks)."""
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    if conv.padding == "same":
        return tuple((k - 1) // 2 for k in conv.kernel_size)
    return tuple(int(p) for p in conv.padding)


def _applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """At a call: an fp32 CPU input and weight, the CPU's autocast off (else the direct convolution runs)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


_AWAITING_RECHECK: weakref.WeakSet[SwitchedForward] = weakref.WeakSet()
"""The switched convolutions of this process with a call signature that measured slower (they may wait for the
recheck at :data:`RECHECK_CALL`; :func:`recheck_state`)."""


def recheck_state() -> tuple[int, int]:
    """``(pending, calls)``: how many call signatures of this process's switched convolutions measured slower and
    still wait for their recheck at :data:`RECHECK_CALL`, and their calls counted so far.

    A benchmark's warm-up can run until ``pending`` is 0, so that it times the choices a training run keeps after its
    first few steps rather than a first measurement that other load at start-up made too low; where ``calls`` stops
    growing (a compiled network's calls run no Python, so nothing counts), waiting longer changes nothing.
    """
    pending = calls = 0
    for switched in list(_AWAITING_RECHECK):
        for key, used in switched.choices.items():
            count = switched.calls.get(key, RECHECK_CALL)
            if not used and count < RECHECK_CALL:
                pending += 1
                calls += count
    return pending, calls


class SwitchedForward:
    """``_ConvNd._conv_forward`` of a switched convolution, set as an attribute of the instance.

    An object rather than a bound method, so that a pickled module (``torch.save(model)``) loads again and a
    ``copy.deepcopy`` refers to the copy.

    Args:
        conv: the convolution.
        algorithm: one of :data:`ALGORITHMS`.
        measure: use the algorithm only for the call signatures where :func:`measured_speedup` finds it faster.
    """

    def __init__(self, conv: nn.modules.conv._ConvNd, algorithm: str, measure: bool = False) -> None:
        self.conv = conv
        self.algorithm = algorithm
        self.measure = measure
        self.choices: dict[tuple[tuple[int, ...], bool], bool] = {}  # measured signature -> use the algorithm
        self.calls: dict[tuple[tuple[int, ...], bool], int] = {}  # signature -> calls while it measured slower

    def __getstate__(self) -> dict[str, Any]:
        """Without the choices: they are this process's measurements (a pickle may load on another CPU)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("choices", "calls")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "choices": {}, "calls": {}})

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        conv = self.conv
        padding = _numeric_padding(conv)
        if not _applies(x, weight) or (self.measure and not self._measured_faster(x, weight, padding)):
            return type(conv)._conv_forward(conv, x, weight, bias)
        if conv.padding_mode != "zeros":
            x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
            padding = (0,) * len(conv.kernel_size)
        return _conv(self.algorithm)(x, weight, bias, padding)

    def _measured_faster(self, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, ...]) -> bool:
        """The call's signature, timed with zero padding (any padding mode costs the convolution the same).

        A signature that measured slower is measured again at the :data:`RECHECK_CALL`-th call. Under
        :func:`torch.compile` nothing is timed (a trace cannot run the measurement): a signature measured at an eager
        call keeps its choice, a new one computes the direct convolution.
        """
        trained = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        one = (1,) + tuple(x.shape[1:])  # one sample: the products run per sample, the time scales with the batch
        key = (one, trained)
        if key not in self.choices:
            if torch.compiler.is_compiling():
                return False
            speedup = measured_speedup(self.algorithm, one, tuple(weight.shape), padding, trained)
            self.choices[key] = speedup >= AUTO_MARGIN
            self.calls[key] = 1
            if not self.choices[key]:
                _AWAITING_RECHECK.add(self)
        elif not torch.compiler.is_compiling() and not self.choices[key] and self.calls[key] < RECHECK_CALL:
            self.calls[key] += 1
            if self.calls[key] == RECHECK_CALL:
                speedup = measured_speedup(self.algorithm, one, tuple(weight.shape), padding, trained, recheck=True)
                self.choices[key] = speedup >= AUTO_MARGIN
        return self.choices[key]


def use_conv_algorithm(
    network: nn.Module,
    algorithm: str,
    enable: bool = True,
    measure: bool = False,
    min_channels: int = WINOGRAD_MIN_CHANNELS,
    max_columns: int = KN2ROW_MAX_COLUMNS,
) -> int:
    """Switch the convolutions of ``network`` that ``algorithm`` can compute to it (or, ``enable=False``, back), in
    place.

    The modules, their parameters (and parametrizations such as spectral norm) and ``state_dict`` stay as they are:
    the instance's ``_conv_forward`` is replaced. A ``copy.deepcopy`` of the network (an EMA copy) and a pickled
    whole module keep the switch; ``enable=False`` undoes it. A convolution whose ``_conv_forward`` something else
    has replaced already (another algorithm, :mod:`common.engines.cpu_bf16_guard`) is left as it is.

    Args:
        network: any module.
        algorithm: one of :data:`ALGORITHMS`.
        enable: switch over (``True``) or restore the direct convolution (``False``) of the layers switched to
            ``algorithm``.
        measure: use the algorithm only for the call signatures where :func:`measured_speedup` finds it faster
            (``conv_algorithm: auto``); ``False``: always, where it applies.
        min_channels, max_columns: see :func:`algorithm_eligible`.

    Returns:
        the number of convolutions switched (or restored).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got '{algorithm}'.")
    count = 0
    for module in network.modules():
        own = vars(module).get("_conv_forward")
        if enable and own is None and algorithm_eligible(module, algorithm, min_channels, max_columns):
            module._conv_forward = SwitchedForward(module, algorithm, measure)
            count += 1
        elif not enable and isinstance(own, SwitchedForward) and own.algorithm == algorithm:
            del module._conv_forward
            count += 1
    return count


def _best_times(fns: tuple[Any, ...], rounds: int) -> list[float]:
    """The best of ``rounds`` timed passes of each function after one untimed pass, the functions interleaved in every
    round, so that a burst of other load on the machine slows them alike rather than one of them."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


_MEASURED: dict[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...], bool], list[float]] = {}


def measured_speedup(
    algorithm: str,
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    padding: tuple[int, ...],
    trained: bool,
    rounds: int = 3,
    recheck: bool = False,
) -> float:
    """Direct time / ``algorithm``'s time of one convolution call signature on this process's CPU threads, cached.

    Times the forward (with ``trained``: forward and backward, the gradients of input and weight) of both methods on
    random fp32 tensors of the call's shapes, the best of ``rounds`` passes each after one untimed pass, the two methods
    alternating in every round, so that a burst of other load on the machine slows both alike. The global random
    state and any network are untouched. A switched convolution measures the signature of one sample of its batch at
    its first call: for a CycleGAN's residual blocks at 256x256 (one signature for all 18), about 1.1 s on a 2-core
    AVX2 EPYC, 1 thread.

    Args:
        algorithm: one of :data:`ALGORITHMS`.
        input_shape: ``(B, C, *spatial)`` of the input, before padding.
        weight_shape: ``(K, C, *kernel)``.
        padding: padding per spatial axis (timed as zero padding).
        trained: time the backward too.
        rounds: timed passes per method.
        recheck: measure a second time if it was measured only once (:data:`RECHECK_CALL`).

    Returns:
        the best of the measurements, above 1 where ``algorithm`` is faster.
    """
    key = (algorithm, tuple(input_shape), tuple(weight_shape), tuple(padding), bool(trained))
    if key not in _MEASURED:
        _MEASURED[key] = [_measure(*key, rounds=rounds)]
    elif recheck and len(_MEASURED[key]) < 2:
        _MEASURED[key].append(_measure(*key, rounds=rounds))
    return max(_MEASURED[key])


def _measure(
    algorithm: str,
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    padding: tuple[int, ...],
    trained: bool,
    rounds: int,
) -> float:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator).requires_grad_(trained)
    weight = (torch.randn(weight_shape, generator=generator) * 0.02).requires_grad_(trained)
    conv = F.conv2d if len(input_shape) == 4 else F.conv3d

    def run(fn: Any) -> Any:
        def once() -> None:
            with torch.enable_grad() if trained else torch.no_grad():
                y = fn()
                if trained:
                    torch.autograd.grad(y, (x, weight), torch.ones_like(y))

        return once

    direct, other = _best_times(
        (run(lambda: conv(x, weight, None, 1, padding)), run(lambda: _conv(algorithm)(x, weight, None, padding))),
        rounds,
    )
    return direct / other


def conv_measurements() -> list[dict[str, Any]]:
    """What :func:`measured_speedup` measured in this process: ``algorithm``, ``input`` and ``weight`` shapes,
    ``trained``, ``speedup`` (the best measurement), ``used`` (whether it was at least :data:`AUTO_MARGIN`) and
    ``measurements`` (one, or two for a signature measured again at :data:`RECHECK_CALL`)."""
    return [
        {
            "algorithm": key[0],
            "input": list(key[1]),
            "weight": list(key[2]),
            "trained": key[4],
            "speedup": round(max(values), 3),
            "used": max(values) >= AUTO_MARGIN,
            "measurements": [round(v, 3) for v in values],
        }
        for key, values in _MEASURED.items()
    ]


def choices_state(networks: Mapping[str, nn.Module]) -> dict[str, Any]:
    """What ``measure`` decided so far, for a checkpoint: ``{"identity", "measurements", "layers"}``.

    ``identity`` is :func:`~common.utils.cpu.cpu_identity`; ``measurements`` every timed call signature of this
    process with its raw speedups (``algorithm``, ``input``, ``weight``, ``padding``, ``trained``, ``values``);
    ``layers`` per network name and module path of each measuring switched convolution its ``algorithm`` and its
    ``choices``, one ``[input, trained, used, calls]`` per call signature (``calls``: its calls counted towards
    :data:`RECHECK_CALL`). Plain types only (loadable with ``weights_only=True``).

    Args:
        networks: the networks whose switched convolutions to record, by name.
    """
    layers: dict[str, dict[str, Any]] = {}
    for name, network in networks.items():
        recorded = {}
        for path, module in network.named_modules():
            switched = vars(module).get("_conv_forward")
            if isinstance(switched, SwitchedForward) and switched.measure:
                recorded[path] = {
                    "algorithm": switched.algorithm,
                    "choices": [
                        [list(key[0]), key[1], used, switched.calls.get(key, 0)]
                        for key, used in switched.choices.items()
                    ],
                }
        layers[name] = recorded
    measurements = [
        {
            "algorithm": key[0],
            "input": list(key[1]),
            "weight": list(key[2]),
            "padding": list(key[3]),
            "trained": key[4],
            "values": [float(v) for v in values],
        }
        for key, values in _MEASURED.items()
    ]
    return {"identity": cpu_identity(), "measurements": measurements, "layers": layers}


def load_choices_state(networks: Mapping[str, nn.Module], state: Mapping[str, Any]) -> int | None:
    """Adopt the decisions of :func:`choices_state` where they were measured on this CPU with this many threads.

    The saved timings replace this process's for their call signatures, and each measuring switched convolution found
    at its saved network name and module path, with the same algorithm, takes its saved choices and call counts: a
    resumed run computes every layer as the run that wrote the checkpoint did, instead of measuring again and perhaps
    deciding otherwise (another algorithm rounds differently, so the continuation would not be exact). A signature
    that the checkpoint's run had not met yet is measured when it comes, as it would have been.

    Args:
        networks: the networks, by the names of :func:`choices_state`.
        state: what :func:`choices_state` returned in the earlier run.

    Returns:
        the number of convolutions that took saved choices; ``None`` where the identity differs (another CPU
        model, vector ISA or thread count: its timings do not hold here, nothing is adopted).
    """
    if dict(state.get("identity", {})) != cpu_identity():
        return None
    for record in state.get("measurements", []):
        key = (
            str(record["algorithm"]),
            tuple(int(s) for s in record["input"]),
            tuple(int(s) for s in record["weight"]),
            tuple(int(p) for p in record["padding"]),
            bool(record["trained"]),
        )
        _MEASURED[key] = [float(v) for v in record["values"]]
    count = 0
    for name, saved in dict(state.get("layers", {})).items():
        if name not in networks:
            continue
        modules = dict(networks[name].named_modules())
        for path, layer in dict(saved).items():
            switched = vars(modules[path]).get("_conv_forward") if path in modules else None
            if (
                not (isinstance(switched, SwitchedForward) and switched.measure)
                or switched.algorithm != layer["algorithm"]
            ):
                continue
            switched.choices, switched.calls = {}, {}
            for shape, trained, used, calls in layer["choices"]:
                key = (tuple(int(s) for s in shape), bool(trained))
                switched.choices[key], switched.calls[key] = bool(used), int(calls)
                if not used:
                    _AWAITING_RECHECK.add(switched)
            count += 1
    return count
