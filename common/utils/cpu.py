"""What this process computes on when it is a CPU: its model name, and the identity that decides whether timings
measured in one process hold in another (:func:`cpu_identity`)."""

from __future__ import annotations

import functools
import platform

import torch

__all__ = ["cpu_identity", "cpu_name"]


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, read once per process), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_identity() -> dict[str, str | int]:
    """``{"cpu": model name, "capability": torch's vector ISA (e.g. "AVX512"), "threads": torch's intra-op
    threads}``: two processes with the same identity run the same CPU kernels at comparable speed, so what one
    measured (e.g. which convolution algorithm is faster) holds for the other. Plain types (a checkpoint entry)."""
    return {
        "cpu": cpu_name(),
        "capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": int(torch.get_num_threads()),
    }
