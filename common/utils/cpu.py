"""What this process computes on when it is a CPU: its model name, the feature flags that ``/proc/cpuinfo`` lists
(:func:`cpuinfo_flags`), and the identity that decides whether timings measured in one process hold in another
(:func:`cpu_identity`)."""

from __future__ import annotations

import functools
import platform
import sys

import torch

__all__ = ["CPUINFO", "cpu_identity", "cpu_name", "cpuinfo_flags"]

CPUINFO = "/proc/cpuinfo"
"""Where Linux lists the CPU's model name and feature flags."""


def _cpuinfo_field(prefix: str, path: str | None = None) -> str | None:
    """The value of the first line of ``/proc/cpuinfo`` (or ``path``) that starts with ``prefix``; ``None`` when the
    file cannot be read or has no such line."""
    try:
        with open(path or CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[-1].strip()
    except OSError:
        return None
    return None


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, read once per process), or what ``platform`` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpuinfo_flags(path: str | None = None) -> frozenset[str] | None:
    """The feature flags of the first CPU that ``/proc/cpuinfo`` (or ``path``) lists, e.g. ``avx512_bf16``,
    ``amx_tile``; ``None`` off Linux, when the file cannot be read or has no ``flags`` line (e.g. ARM's
    ``Features``). Read on every call: the callers that ask often cache their own answer."""
    if not sys.platform.startswith("linux"):
        return None
    flags = _cpuinfo_field("flags", path)
    return None if flags is None else frozenset(flags.split())


def cpu_identity() -> dict[str, str | int]:
    """``{"cpu": model name, "capability": torch's vector ISA (e.g. "AVX512"), "threads": torch's intra-op
    threads}``: two processes with the same identity run the same CPU kernels at comparable speed, so what one
    measured (e.g. which convolution algorithm is faster) holds for the other. Plain types (a checkpoint entry)."""
    return {
        "cpu": cpu_name(),
        "capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": int(torch.get_num_threads()),
    }
