"""Benchmark a bundle's training step and print the result as JSON.

Examples::

    python scripts/benchmark.py --config_file bundles/dcgan_wgan/configs/train.yaml
    python scripts/benchmark.py --config_file "['bundles/dcgan_wgan/configs/train.yaml',\
'bundles/dcgan_wgan/configs/variants/wgan.yaml']" --iterations 20 --amp true
    # several configurations, one JSON list
    python scripts/benchmark.py --config_sets "[['a.yaml'], ['a.yaml', 'b.yaml']]"
"""

from __future__ import annotations

import json
import multiprocessing
from typing import Any

import fire

from common.engines.benchmark import benchmark_training_step


def main(
    config_file: Any = None,
    config_sets: Any = None,
    iterations: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    output: str | None = None,
    **override: Any,
) -> None:
    """Print (and optionally write to ``output``) the benchmark JSON of one config list or several."""
    if (config_file is None) == (config_sets is None):
        raise ValueError("give exactly one of --config_file or --config_sets.")
    sets = [config_file] if config_file is not None else list(config_sets)
    # one fresh process per configuration, so that the CPU peak memory (process peak RSS) is its own
    ctx = multiprocessing.get_context("spawn")
    results = []
    for files in sets:
        with ctx.Pool(1) as pool:
            kwargs = dict(iterations=iterations, warmup=warmup, threads=threads, **override)
            results.append(pool.apply(benchmark_training_step, (files,), kwargs))
    text = json.dumps(results[0] if config_file is not None else results, indent=2)
    print(text)
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    fire.Fire(main)
