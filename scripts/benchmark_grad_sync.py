"""Time the gradient averaging of multi-process training: per-parameter vs bucketed ``all_reduce`` (gloo, local).

Examples::

    # the CDA-GAN networks (two generators, two attention networks, two discriminators), 2 processes
    python scripts/benchmark_grad_sync.py --repeats 20 --output grad_sync.json
    # the plain CycleGAN's networks at its 9 residual blocks, bucket sizes 0.25 to 25 MB
    python scripts/benchmark_grad_sync.py --override "{'attention': 'none', 'attention_guided': false, \
'num_res_blocks': 9}" --bucket_mb "[0.25, 1, 4, 25]"

Prints the JSON of :func:`common.bundle.grad_sync_benchmark.benchmark_grad_sync` (per method the sync times, their
speed-up over the per-parameter sync, and whether every bucketed result equalled the per-parameter one).
"""

from __future__ import annotations

from typing import Any

import fire
from common.bundle.benchmark import report_json
from common.bundle.grad_sync_benchmark import CDA_GAN_NETWORKS, benchmark_grad_sync


def main(
    config_file: str = "bundles/cda_gan/configs/train.yaml",
    networks: tuple[str, ...] = CDA_GAN_NETWORKS,
    override: dict[str, Any] | None = None,
    bucket_mb: tuple[float, ...] = (1.0, 4.0, 25.0),
    world_size: int = 2,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
    output: str | None = None,
) -> None:
    """Run the benchmark and print (and with ``output`` write) its JSON; see ``benchmark_grad_sync`` for arguments."""
    result = benchmark_grad_sync(config_file, networks, override, bucket_mb, world_size, repeats, warmup, threads)
    report_json(result, output)


if __name__ == "__main__":
    fire.Fire(main)
