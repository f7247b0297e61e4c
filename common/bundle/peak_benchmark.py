"""The machine a benchmark ran on, its measured peak arithmetic rate, and the FLOPs of a training step.

Every speed result names its hardware (CPU model and whether it has AMX, or the GPU,
driver and torch/CUDA versions) and gives the achieved GFLOP/s of the training steps as a fraction of the peak that
the same run measures:

- :func:`hardware_info`: CPU model, the vector/matrix flags of ``/proc/cpuinfo`` that decide fp32 vs bf16 speed
  (:data:`CPU_FLAGS`), torch's own CPU capability and AMX queries, the CPUs and threads used, torch version; on CUDA
  the GPU model, compute capability, driver, CUDA and cuDNN versions.
- :func:`benchmark_peak`: achieved GFLOP/s of a large matmul and of a wide 3x3 convolution (forward), in fp32 and
  in bf16 (native bf16 inputs and weights, no autocast), median of several timed repetitions after warm-up.
- :func:`count_flops`: the FLOPs of one call, forward and backward, from ``torch.utils.flop_counter``
  (``FlopCounterMode`` counts matrix products, convolutions and attention: elementwise work, norms, padding and
  optimiser updates count as zero, so achieved GFLOP/s is the rate of the arithmetic-heavy part over the whole
  step time).
- :func:`fractions_of_peak`: an achieved rate over each measured peak.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from common.engines.precision import cpu_has_bf16_instructions
from common.utils.cpu import cpu_name, cpuinfo_flags
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "BF16_MODE",
    "CPU_FLAGS",
    "benchmark_peak",
    "count_flops",
    "cpu_flags",
    "cpu_name",
    "fractions_of_peak",
    "hardware_info",
]

CPU_FLAGS: tuple[str, ...] = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
"""``/proc/cpuinfo`` flags reported with every result: the vector units (fp32 rate) and the bf16 paths (AVX-512-BF16
dot products, AMX tiles) that decide whether bf16 is faster than fp32 on a CPU."""
BF16_MODE = "native bfloat16 inputs and weights (no autocast, no casts timed)"
"""How the bf16 peaks of :func:`benchmark_peak` are measured."""
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_flags(flags: Sequence[str] = CPU_FLAGS) -> list[str]:
    """The ``flags`` that the first CPU of ``/proc/cpuinfo`` lists, in the order given (empty where unreadable)."""
    present = cpuinfo_flags() or frozenset()
    return [flag for flag in flags if flag in present]


def _torch_cpu_query(name: str) -> bool | None:
    """``torch.cpu._is_<name>_supported()`` (torch's own CPUID query), or None where this torch has no such query."""
    query = getattr(torch.cpu, f"_is_{name}_supported", None)
    return bool(query()) if callable(query) else None


def _cuda_driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi``, or None where it cannot be asked."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def hardware_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The machine and libraries of a measurement on ``device``, JSON-serialisable.

    Returns:
        ``cpu`` (model name), ``cpu_flags`` (those of :data:`CPU_FLAGS` present), ``cpu_capability`` (torch's
        ``get_cpu_capability``, e.g. ``AVX512``), ``amx`` and ``avx512_bf16`` (torch's CPUID queries; None where
        this torch lacks them), ``logical_cpus``, ``usable_cpus`` (this process's affinity), ``threads``
        (``torch.get_num_threads``), ``torch``, ``python``; on CUDA also ``gpu``, ``gpu_capability``,
        ``gpu_memory_gib``, ``cuda_driver``, ``cuda`` (torch's CUDA version), ``cudnn`` and ``bf16_supported``.
    """
    device = torch.device(device)
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "amx": _torch_cpu_query("amx_tile"),
        "avx512_bf16": _torch_cpu_query("avx512_bf16"),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda_driver=_cuda_driver(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return info


class _GlobalOnlyTracker:
    """Stands in for ``FlopCounterMode``'s module tracker, which attributes counts to modules through autograd hooks
    on their inputs: those hooks make ``torch.autograd.grad`` with a leaf input fail ("A leaf node was passed to
    _will_engine_execute_node"), i.e. every WGAN-GP/R1 gradient penalty. Only the global total is needed here."""

    parents = ("Global",)

    def __enter__(self) -> _GlobalOnlyTracker:
        return self

    def __exit__(self, *args: Any) -> None:
        return None


def count_flops(call: Callable[[], Any]) -> int:
    """Floating-point operations of ``call()`` (every matmul, convolution and attention op it dispatches, forward
    and backward, gradient penalties' double backward included), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (global total only, no per-module attribution); ``call`` runs once,
    for real."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnlyTracker()
    with counter:
        call()
    return int(counter.get_total_flops())


def _median_seconds(call: Callable[[], Any], reps: int, warmup: int, device: torch.device) -> list[float]:
    """Wall-clock seconds of ``reps`` calls of ``call`` after ``warmup`` untimed calls (device-synchronised)."""
    times = []
    for i in range(warmup + reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _rate(call: Callable[[], Any], reps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """FLOPs of one call (counted) and the achieved GFLOP/s at the median and the shortest of ``reps`` calls."""
    flops = count_flops(call)
    times = _median_seconds(call, reps, warmup, device)
    median = statistics.median(times)
    return {
        "gflop_per_call": flops / 1e9,
        "median_s": median,
        "times_s": times,
        "gflops": flops / 1e9 / median,
        "best_gflops": flops / 1e9 / min(times),
    }


def benchmark_peak(
    device: str = "cpu",
    threads: int | None = None,
    matmul_size: int = 2048,
    conv_channels: int = 256,
    conv_size: int = 64,
    conv_batch: int = 1,
    precisions: Sequence[str] | None = None,
    reps: int = 10,
    warmup: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Achieved GFLOP/s of a square matmul and of a 3x3 convolution on ``device`` with the current threads.

    The matmul multiplies two ``(matmul_size, matmul_size)`` matrices (``2 n^3`` FLOPs). The convolution is the
    forward pass, without gradients, of a ``conv_channels -> conv_channels`` 3x3 convolution, padding 1, on a
    ``(conv_batch, conv_channels, conv_size, conv_size)`` input: the shape of a CycleGAN residual block at
    256x256 when ``conv_size`` is 64. bf16 uses :data:`BF16_MODE`. FLOPs are counted by :func:`count_flops`.

    Args:
        device: torch device of the measurement.
        threads: ``torch.set_num_threads`` first (default: leave as is).
        matmul_size: side of the square matrices.
        conv_channels: input and output channels of the convolution.
        conv_size: spatial side of the convolution's input.
        conv_batch: batch of the convolution's input.
        precisions: any of ``fp32``, ``bf16``. Default: both, except on a CPU without bfloat16 instructions
            (:func:`~common.engines.precision.cpu_has_bf16_instructions`), where bf16 is emulated and its peaks took
            15 min per round at the default sizes (0.3 GFLOP/s on an AVX2 AMD EPYC, 2026-12-07): fp32 alone, and
            ``skipped`` says why.
        reps: timed repetitions (the median counts).
        warmup: untimed repetitions first.
        seed: seed of the random operands.

    Returns:
        ``workflow`` ``"peak"``, :func:`hardware_info` under ``hardware``, ``bf16_mode``, the sizes, ``peaks``
        (per ``<precision>_matmul`` / ``<precision>_conv``: ``gflop_per_call``, ``median_s``, ``times_s``,
        ``gflops`` at the median time, ``best_gflops`` at the shortest, which other processes' load inflates
        least) and ``peak_gflops`` (the median-time ``gflops`` alone).
    """
    skipped: dict[str, str] = {}
    if precisions is None:
        precisions = ("fp32", "bf16")
        if torch.device(device).type == "cpu" and not cpu_has_bf16_instructions():
            precisions = ("fp32",)
            skipped["bf16"] = "CPU without bfloat16 instructions (emulated); pass precisions to measure it"
    unknown = [p for p in precisions if p not in _DTYPES]
    if unknown:
        raise ValueError(f"precisions must be among {sorted(_DTYPES)}, got {unknown}.")
    if min(matmul_size, conv_channels, conv_size, conv_batch, reps) < 1 or warmup < 0:
        raise ValueError("sizes and reps must be >= 1 and warmup >= 0.")
    if threads is not None:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    peaks: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for precision in precisions:
            dtype = _DTYPES[precision]
            a, b = (torch.randn(matmul_size, matmul_size, generator=generator).to(dev, dtype) for _ in range(2))
            peaks[f"{precision}_matmul"] = _rate(lambda: torch.mm(a, b), reps, warmup, dev)
            conv = torch.nn.Conv2d(conv_channels, conv_channels, 3, padding=1).to(dev, dtype)
            x = torch.randn(conv_batch, conv_channels, conv_size, conv_size, generator=generator).to(dev, dtype)
            peaks[f"{precision}_conv"] = _rate(lambda: conv(x), reps, warmup, dev)
    return {
        "workflow": "peak",
        "hardware": hardware_info(dev),
        "bf16_mode": BF16_MODE,
        "matmul_size": matmul_size,
        "conv_shape": [conv_batch, conv_channels, conv_size, conv_size],
        "conv_kernel": 3,
        "peaks": peaks,
        "peak_gflops": {name: peak["gflops"] for name, peak in peaks.items()},
        **({"skipped": skipped} if skipped else {}),
    }


def fractions_of_peak(achieved_gflops: float, peak_gflops: dict[str, float]) -> dict[str, float]:
    """``achieved_gflops`` over each positive peak of ``peak_gflops`` (e.g. ``{"fp32_conv": 0.61, ...}``)."""
    return {name: achieved_gflops / peak for name, peak in peak_gflops.items() if peak > 0}
