"""The precision policy of a training step: which autocast dtype (if any) a device trains in, and why.

``amp: auto`` (the bundles' default) picks per device what is reliably faster without changing what is learnt:

- CPU **with AMX** (Intel Advanced Matrix Extensions, e.g. Sapphire Rapids and later): ``bfloat16`` autocast. Its
  tile units make bf16 convolutions and matrix products about twice as fast as fp32. AMX is detected itself
  (:func:`cpu_has_amx`), not inferred from ``avx512_bf16``.
- x86 CPU **without any bfloat16 instruction** (:func:`cpu_has_bf16_instructions`: no AVX-512-BF16, AMX or
  AVX-NE-CONVERT in ``/proc/cpuinfo``, e.g. AVX2 CPUs): ``float32``, without measuring; bf16 is emulated there.
- Other CPUs **without AMX**: measured (:func:`cpu_bf16_speedup`, under a second, once per process). ``bfloat16``
  autocast where a convolution's forward and backward under it runs at least :data:`BF16_MIN_SPEEDUP` times as fast
  as in fp32, ``float32`` otherwise. AVX-512-BF16 alone decides nothing: on one such CPU a CycleGAN step under bf16
  autocast took 1.3x as long as in fp32 (bf16 convolutions at two thirds of the fp32 rate), on another (an AMD EPYC
  of family 26, 2026-12-05) bf16 convolutions ran at 1.9x the fp32 rate. Under ``torch.distributed`` the ranks of a
  training step agree on the slowest rank's measurement (a rank with AMX or ``GDA_CPU_BF16=1`` counts as fast, one
  without bf16 instructions or with ``GDA_CPU_BF16=0`` as 0). The environment variable ``GDA_CPU_BF16``
  (:data:`CPU_BF16_ENV`) replaces the measurement: ``0`` keeps fp32, ``1`` picks bf16 (e.g. to give every node of a
  mixed cluster one precision without editing configs). Known fault: on such a CPU (AMD EPYC, family 26, torch
  2.13.0+cpu), oneDNN's bf16 weight gradient of a stride-1 3D convolution with a 2x2x2 output comes out NaN in some
  calls; :class:`~common.engines.TrainingStep` runs such calls in fp32 wherever it trains in bf16 on a CPU without
  AMX (:mod:`common.engines.cpu_bf16_guard`).
- CUDA device with bf16 support (Ampere and later): ``bfloat16`` autocast, no gradient scaling (bf16 has fp32's
  exponent range).
- Older CUDA devices: ``float16`` autocast with gradient scaling (``torch.amp.GradScaler``) against underflow.
- Any other device type (``mps``, ...): ``float32``.

``amp: true`` keeps its earlier meaning (autocast with ``amp_dtype``, bfloat16 by default, on any device), ``amp:
false`` and ``amp: float32`` train in fp32, and ``amp: bfloat16`` / ``amp: float16`` force that autocast dtype.

What stays float32 under autocast (the step's helpers and the project's losses make sure of it):

- parameters, gradients, optimiser states and batch-/instance-norm running statistics (autocast casts copies of
  the operands of the ops it lists, never the stored tensors);
- the gradient penalties: WGAN-GP (:func:`common.losses.gradient_penalty`), R1 and the path-length penalty
  (:mod:`common.losses.stylegan2`) run with autocast disabled and their inputs cast to float32;
- the losses: :class:`common.losses.AdversarialLoss`, the attention losses and the YOLO loss cast their inputs to
  float32 before reducing; ``l1_loss``/``mse_loss``/``cross_entropy`` and the other losses and reductions on
  autocast's float32 list run in float32 by autocast itself;
- the drift term of :meth:`~common.engines.TrainingStep.critic_update` (``d_real.float()``) and the generated images
  handed to the critic update (``.float()``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import torch
from common.utils import get_world_size
from common.utils.cpu import cpuinfo_flags

__all__ = [
    "AMP_CHOICES",
    "AMP_DTYPES",
    "BF16_MIN_SPEEDUP",
    "CPU_BF16_ENV",
    "PrecisionPolicy",
    "cpu_bf16_speedup",
    "cpu_has_amx",
    "cpu_has_bf16_instructions",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

AMP_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
"""Autocast dtypes by name (``amp_dtype`` and the explicit ``amp`` values)."""

_FP32_NAMES = ("float32", "fp32")
AMP_CHOICES = ("auto", True, False, *AMP_DTYPES, *_FP32_NAMES)
"""The accepted values of ``amp``."""

CPU_BF16_ENV = "GDA_CPU_BF16"
"""Environment variable that replaces :func:`cpu_bf16_speedup` for ``amp: auto`` on a CPU without AMX: ``0``
(``false``, ``off``) keeps float32, ``1`` (``true``, ``on``) picks bfloat16 autocast; unset or empty: measure."""
BF16_MIN_SPEEDUP = 1.2
"""How many times as fast as float32 the :func:`cpu_bf16_speedup` probe must run under bfloat16 autocast for ``amp:
auto`` to pick bf16 on a CPU without AMX: a margin over the probe's run-to-run noise, so that a CPU where both run
at about the same rate keeps fp32 (never slower, nothing changed in what is learnt)."""
X86_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "avx_ne_convert"})
"""``/proc/cpuinfo`` flags of the x86 instructions that compute or convert bfloat16 natively (AVX-512-BF16, AMX-BF16,
AVX-NE-CONVERT). An x86 CPU without any of them emulates bf16 in software: there :func:`cpu_has_bf16_instructions`
decides fp32 without the probe."""
_PROBE_GIVE_UP = 3.0
""":func:`cpu_bf16_speedup` stops after a round where bf16's fastest pass so far took this many times as long as
fp32's: far below :data:`BF16_MIN_SPEEDUP`, so that more passes cannot change the choice."""


@dataclass(frozen=True)
class PrecisionPolicy:
    """The resolved precision of a training step.

    Attributes:
        enabled: whether the forward passes run under ``torch.autocast``.
        dtype: the autocast dtype (``torch.bfloat16`` or ``torch.float16``), ``None`` when autocast is off (fp32).
        grad_scaling: whether losses are scaled before backward (``torch.amp.GradScaler``; float16 on CUDA only).
        reason: why this precision was chosen, e.g. ``"CPU with AMX"``.
    """

    enabled: bool
    dtype: torch.dtype | None
    grad_scaling: bool
    reason: str

    @property
    def name(self) -> str:
        """The compute dtype's name: ``"bfloat16"``, ``"float16"`` or ``"float32"``."""
        return str(self.dtype).replace("torch.", "") if self.enabled and self.dtype is not None else "float32"

    def describe(self) -> str:
        """One line, e.g. ``"bfloat16 autocast (CPU with AMX)"`` or ``"float32 (amp: false)"``."""
        what = f"{self.name} autocast" + (" with gradient scaling" if self.grad_scaling else "")
        return f"{what if self.enabled else 'float32'} ({self.reason})"

    def as_dict(self) -> dict[str, Any]:
        """JSON- and checkpoint-friendly form (strings and booleans only, loadable with ``weights_only=True``)."""
        return {"enabled": self.enabled, "dtype": self.name, "grad_scaling": self.grad_scaling, "reason": self.reason}

    def autocast(self, device_type: str) -> torch.autocast:
        """``torch.autocast(device_type, dtype, enabled)`` of this policy: a context manager and a decorator.

        When the policy is float32 the returned object disables autocast (``enabled=False``), so the wrapped code
        runs in float32 even inside an enclosing autocast region.

        Args:
            device_type: ``"cpu"``, ``"cuda"``, ...
        """
        return torch.autocast(device_type=device_type, dtype=self.dtype or torch.bfloat16, enabled=self.enabled)


@functools.lru_cache(maxsize=None)
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tile units (Intel Advanced Matrix Extensions) usable by PyTorch's kernels.

    Asks torch first (``torch.cpu._is_amx_tile_supported()``, which checks the CPUID bits and that the operating
    system has enabled the tile state; ``torch.backends.cpu.get_cpu_capability()`` reports the vector ISA, e.g.
    ``"AVX512"``, and says nothing about AMX). When this torch build lacks the query, falls back to the
    ``amx_tile`` and ``amx_bf16`` flags of ``/proc/cpuinfo`` on Linux; elsewhere the answer is ``False`` (fp32,
    never slower).

    Returns:
        True when AMX is available.
    """
    query = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    if callable(query):
        try:
            return bool(query())
        except RuntimeError:  # pragma: no cover - a build without the CPU feature detector
            pass
    return _cpuinfo_has_amx()


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup(channels: int = 256, size: int = 32, repeats: int = 9) -> float:
    """How many times as fast a convolution trains under bfloat16 autocast as in float32 on this CPU (measured).

    The probe stands for the bulk of the GAN steps' work: a 3x3 convolution, ``channels`` to ``channels``, on one
    ``channels x size x size`` image (1.2 GFLOP forward at the defaults: a ResNet generator's residual convolution on a
    quarter of its feature map), forward and backward (input and weight gradients) from fp32 parameters, under
    ``torch.autocast("cpu", torch.bfloat16)`` as a step runs it (casts included) and without. Each precision is
    warmed up once (oneDNN builds its kernels at the first call), then both are timed ``repeats`` times, alternating,
    with torch's current thread count, and the fastest pass of each is compared: other jobs on the machine only add
    time to a pass, so the minimum is what the convolution costs. (A median of 5 was swayed by load: with three jobs
    on two cores one run measured 0.93x where the other 88 runs of its grid had measured 1.5-2x.) The passes stop
    early after a round where bf16 took over :data:`_PROBE_GIVE_UP` times as long as fp32. The inputs come from
    a generator of their own: the global random state, and so a run's initial weights, do not depend on the probe.
    Cached per process.

    Args:
        channels: input and output channels of the probe convolution.
        size: its spatial size.
        repeats: timed passes per precision.

    Returns:
        The fastest fp32 pass's time over the fastest bf16 pass's: above 1 where bf16 is faster.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=generator)
    weight = (torch.randn(channels, channels, 3, 3, generator=generator) * 0.05).requires_grad_()

    def one_pass(bf16: bool) -> float:
        inputs = x.detach().requires_grad_()
        start = perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = torch.nn.functional.conv2d(inputs, weight, padding=1)
        out.float().square().mean().backward()
        weight.grad = None
        return perf_counter() - start

    for bf16 in (False, True):  # warm-up
        one_pass(bf16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for bf16 in (False, True):
            times[bf16].append(one_pass(bf16))
        if min(times[True]) > _PROBE_GIVE_UP * min(times[False]):
            break  # bf16 emulated or far slower: more passes cannot reach BF16_MIN_SPEEDUP
    return min(times[False]) / min(times[True])


def _slowest_rank(value: float) -> float:
    """``value`` as the minimum over the ranks of an initialised ``torch.distributed`` group (itself otherwise).

    Every rank calls the policy at the same point of a step's construction, so all of them pick one precision.
    Where the group's backend cannot reduce a CPU tensor (e.g. NCCL), each rank keeps its own value.
    """
    if get_world_size() < 2:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    try:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
    except RuntimeError:  # pragma: no cover - a backend without CPU tensors
        return value
    return float(tensor.item())


def _cpuinfo_has_amx(path: str | None = None) -> bool:
    """Whether the first ``flags`` line of ``/proc/cpuinfo`` (or ``path``) lists ``amx_tile`` and ``amx_bf16``.

    Linux only; ``False`` elsewhere or when the file cannot be read.
    """
    return {"amx_tile", "amx_bf16"} <= (cpuinfo_flags(path) or frozenset())


@functools.lru_cache(maxsize=None)
def cpu_has_bf16_instructions() -> bool:
    """Whether this CPU may compute bfloat16 natively, i.e. whether :func:`cpu_bf16_speedup` is worth measuring.

    ``False`` only where it is known: an x86 CPU whose ``/proc/cpuinfo`` flags list none of :data:`X86_BF16_FLAGS`
    (e.g. an AMD EPYC of family 25, flags up to AVX2, 2026-12-07: bf16 convolutions there ran at 0.02x the fp32
    rate, and the probe took 18 s). ``True`` elsewhere (other architectures, other systems, unreadable flags): the
    probe decides.
    """
    flags = cpuinfo_flags()
    if flags is None or not (flags & {"sse2", "avx", "avx2"}):  # not an x86 flags line: nothing known
        return True
    return bool(flags & X86_BF16_FLAGS)


def _cuda_bf16_native() -> bool:
    """Whether the current CUDA device computes bf16 natively (emulated bf16 on older devices is slow)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # pragma: no cover - torch versions without the emulation argument
        return bool(torch.cuda.is_bf16_supported())


def _parse_amp(amp: bool | str) -> bool | str:
    """``amp`` as ``True``, ``False``, ``"auto"``, ``"float32"`` or an :data:`AMP_DTYPES` name."""
    if isinstance(amp, bool):
        return amp
    if isinstance(amp, str):
        value = amp.strip().lower()
        if value in ("true", "false"):
            return value == "true"
        if value in _FP32_NAMES:
            return "float32"
        if value == "auto" or value in AMP_DTYPES:
            return value
    raise ValueError(f"amp must be 'auto', true, false or a dtype name {[*AMP_DTYPES, *_FP32_NAMES]}, got {amp!r}.")


def _local_cpu_choice() -> tuple[float, str]:
    """This CPU's case for bf16 as ``(speedup, reason)``: ``inf`` with AMX or ``GDA_CPU_BF16=1``, ``0`` where bf16 is
    ruled out (``GDA_CPU_BF16=0``, no bf16 instructions), the probe's measurement otherwise."""
    if cpu_has_amx():
        return math.inf, "CPU with AMX"
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced:
        if forced not in ("0", "false", "off", "1", "true", "on"):
            raise ValueError(f"{CPU_BF16_ENV} must be 0 or 1 (or unset to measure), got {forced!r}.")
        return (math.inf if forced in ("1", "true", "on") else 0.0), f"CPU without AMX, {CPU_BF16_ENV}={forced}"
    if not cpu_has_bf16_instructions():
        return 0.0, "CPU without AMX or bfloat16 instructions (cpuinfo flags)"
    speedup = cpu_bf16_speedup()
    return speedup, f"CPU without AMX, bfloat16 convolutions measured at {speedup:.2f}x the float32 speed"


def _auto_cpu_policy(across_ranks: bool) -> PrecisionPolicy:
    """``amp: auto`` on a CPU: bf16 with AMX; without, as ``GDA_CPU_BF16`` says, fp32 without bf16 instructions,
    else as the probe measures. Across ranks every rank takes part in one minimum, whatever decided its own case,
    so that all pick one precision and none waits for a collective that another skipped."""
    speedup, reason = _local_cpu_choice()
    if across_ranks:
        slowest = _slowest_rank(speedup)
        if slowest < speedup:
            reason += "; another rank: " + ("bfloat16 ruled out" if slowest == 0 else f"{slowest:.2f}x")
            speedup = slowest
    if speedup >= BF16_MIN_SPEEDUP:
        return PrecisionPolicy(True, torch.bfloat16, False, reason)
    if speedup > 0:
        reason += f" (below {BF16_MIN_SPEEDUP}x)"
    return PrecisionPolicy(False, None, False, reason)


def resolve_precision(
    amp: bool | str, device: str | torch.device, amp_dtype: str | None = None, across_ranks: bool = False
) -> PrecisionPolicy:
    """Resolve the ``amp`` setting of a bundle or step for ``device`` (see the module docstring for the rules).

    Args:
        amp: ``"auto"`` (per device), ``True`` (autocast with ``amp_dtype``), ``False`` (fp32), or a dtype name:
            ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"`` (autocast in it), ``"float32"``/``"fp32"`` (off).
        device: the training device.
        amp_dtype: the autocast dtype of ``amp=True`` (default ``"bfloat16"``); ignored by the other values.
        across_ranks: under an initialised ``torch.distributed`` group, let every rank use the slowest rank's bf16
            measurement (a collective: only where every rank resolves its precision at the same point, as
            :class:`~common.engines.TrainingStep` does; never from code that runs on one rank alone).

    Returns:
        The :class:`PrecisionPolicy`; gradient scaling only for float16 on CUDA.

    Raises:
        ValueError: ``amp`` or ``amp_dtype`` is not one of the accepted values.
    """
    mode = _parse_amp(amp)
    if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {list(AMP_DTYPES)}, got {amp_dtype!r}.")
    device = torch.device(device)
    if mode is False or mode == "float32":
        return PrecisionPolicy(False, None, False, f"amp: {str(amp).lower()}")
    if mode is True or mode in AMP_DTYPES:
        name = (amp_dtype or "bfloat16") if mode is True else str(mode)
        dtype = AMP_DTYPES[name]
        scaling = dtype == torch.float16 and device.type == "cuda"
        return PrecisionPolicy(True, dtype, scaling, f"amp: {str(amp).lower()}" + (f", {name}" if mode is True else ""))
    # mode == "auto"
    if device.type == "cpu":
        return _auto_cpu_policy(across_ranks)
    if device.type == "cuda":
        if _cuda_bf16_native():
            return PrecisionPolicy(True, torch.bfloat16, False, "CUDA device with bfloat16 support")
        return PrecisionPolicy(True, torch.float16, True, "CUDA device without bfloat16 support")
    return PrecisionPolicy(False, None, False, f"no mixed-precision policy for device type '{device.type}'")
