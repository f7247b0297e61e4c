"""Time a bundle's training step with its instance norms on the group-norm kernel against torch's instance norm,
alternating round by round in one process (:mod:`common.bundle.norm_kernel_benchmark`).

Examples::

    # CDA-GAN's `cyclegan` variant at 256x256, 1 channel, 1 thread, 5 rounds
    B=bundles/cda_gan/configs
    OMP_NUM_THREADS=1 python scripts/benchmark_norm_kernel.py \
        --config_file "['$B/train.yaml','$B/variants/cyclegan.yaml','$B/variants/tcia.yaml']" --rounds 5 --threads 1

Prints the JSON of :func:`common.bundle.norm_kernel_benchmark.benchmark_norm_kernel` (CPU seconds per step and
kernel, per round and on average, the ratio, and the hardware).
"""

from __future__ import annotations

from typing import Any

from common.bundle.benchmark import report_json
from common.bundle.norm_kernel_benchmark import benchmark_norm_kernel
from common.utils.cli import run_fire


def main(
    config_file: str | list[str],
    rounds: int = 4,
    steps_per_round: int = 1,
    warmup: int = 2,
    threads: int | None = None,
    output: str | None = None,
    **override: Any,
) -> None:
    """Runs :func:`~common.bundle.norm_kernel_benchmark.benchmark_norm_kernel` and prints (and with ``output``
    writes) its JSON; ``override`` are config overrides such as ``--image_size 128``."""
    result = benchmark_norm_kernel(
        config_file, rounds=rounds, steps_per_round=steps_per_round, warmup=warmup, threads=threads, **override
    )
    report_json(result, output)


if __name__ == "__main__":
    run_fire(main)
