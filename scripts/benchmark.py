"""Benchmark a bundle's training step and print the result as JSON.

Examples::

    python scripts/benchmark.py --config_file bundles/dcgan_wgan/configs/train.yaml
    python scripts/benchmark.py --config_file "['bundles/dcgan_wgan/configs/train.yaml',\
'bundles/dcgan_wgan/configs/variants/wgan.yaml']" --iterations 20 --amp true
    # several configurations, one JSON list
    python scripts/benchmark.py --config_sets "[['a.yaml'], ['a.yaml', 'b.yaml']]"
    # the same, side by side with the plain PyTorch CycleGAN of reference_cyclegan.py, in 3 interleaved rounds
    python scripts/benchmark.py --config_sets "[['a.yaml']]" --repeats 3 \
        --reference_cyclegan "{'channels': 1, 'image_size': 256, 'num_res_blocks': 9}"
    # inference throughput: the `benchmark#call` of an inference config (random weights), e.g. 3D MCGAN synthesis
    python scripts/benchmark.py --workflow inference --config_file bundles/mcgan_3d/configs/inference.yaml \
        --benchmark_batch_size 16
    # the release converters (no config): synthetic BraTS, LUNA16 and MedMNIST releases at real per-case size,
    # converted with 0 and 2 workers: cases/s, slices/s, peak memory per worker, the NIfTI writer before/after
    python scripts/benchmark.py --workflow conversion --brats_cases 8 --workers 0,2 --output conversion.json
    python scripts/benchmark.py --workflow conversion --conversions "['brats_2d']" --brats_cases 4

Every configuration runs in a fresh process (its own peak memory). With ``--repeats N`` the configurations run in
N rounds, one after the other within each round, and each result holds the step times of all its rounds, so that a
slow drift of the machine's load falls on every configuration alike. The conversion workflow takes the arguments of
:py:func:`common.bundle.conversion_benchmark.benchmark_conversion` and runs each conversion in a process of its own.
"""

from __future__ import annotations

import json
import multiprocessing
from typing import Any

import fire
from common.bundle.benchmark import benchmark_inference, benchmark_training_step, cpu_name, step_time_summary
from common.bundle.conversion_benchmark import benchmark_conversion
from reference_cyclegan import benchmark_reference_cyclegan

WORKFLOWS = {"training": benchmark_training_step, "inference": benchmark_inference}
CONVERSION = "conversion"
"""The workflow that benchmarks the release converters (no bundle config)."""


def _merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the results of several rounds of the same configuration."""
    merged = dict(rounds[-1])
    prefix = "call" if "call_time_s" in merged else "step"
    times = [t for r in rounds for t in r[f"{prefix}_time_s"]["times"]]
    merged[f"{prefix}_time_s"] = step_time_summary(times)
    merged[f"{prefix}_cpu_time_s"] = step_time_summary([t for r in rounds for t in r[f"{prefix}_cpu_time_s"]["times"]])
    merged["iterations"] = len(times)
    merged["rounds"] = len(rounds)
    merged["peak_memory_mb"] = max(r["peak_memory_mb"] for r in rounds)
    if merged.get("batch_size"):
        merged["samples_per_s"] = merged["batch_size"] / merged["step_time_s"]["mean"]
    if merged.get("items_per_call"):
        merged["items_per_s"] = merged["items_per_call"] / merged["call_time_s"]["mean"]
    return merged


def main(
    config_file: Any = None,
    config_sets: Any = None,
    iterations: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    output: str | None = None,
    repeats: int = 1,
    reference_cyclegan: Any = None,
    workflow: str = "training",
    **override: Any,
) -> None:
    """Print (and optionally write to ``output``) the benchmark JSON of one config list or several.

    Args:
        config_file: one config file or list (merged in order); the output is one JSON object.
        config_sets: a list of config lists; the output is a JSON list in the same order.
        iterations: timed steps per configuration and round.
        warmup: untimed steps first, in every round.
        threads: ``torch.set_num_threads`` in each process.
        output: also write the JSON to this file.
        repeats: rounds over all configurations (interleaved), merged per configuration.
        reference_cyclegan: keyword arguments of ``benchmark_reference_cyclegan`` (``channels``, ``image_size``,
            ``num_res_blocks``, ``batch_size``): also time the plain PyTorch CycleGAN of ``reference_cyclegan.py``
            in the same run, as the last entry of the output list.
        workflow: ``training`` (the training step, ``benchmark_training_step``), ``inference`` (the config's
            ``benchmark#call``, ``benchmark_inference``) or ``conversion`` (the release converters,
            ``benchmark_conversion``; no config, one JSON object).
        override: config overrides for every configuration, e.g. ``--image_size 128``; for ``conversion`` the
            arguments of ``benchmark_conversion``, e.g. ``--brats_cases 8 --workers 0,2``.
    """
    if workflow == CONVERSION:
        if config_file is not None or config_sets is not None or reference_cyclegan is not None:
            raise ValueError("the conversion workflow takes no --config_file, --config_sets or --reference_cyclegan.")
        _report(benchmark_conversion(**override), output)
        return
    if (config_file is None) == (config_sets is None):
        raise ValueError("give exactly one of --config_file or --config_sets.")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    if workflow not in WORKFLOWS:
        raise ValueError(f"workflow must be one of {sorted([*WORKFLOWS, CONVERSION])}, got {workflow!r}.")
    sets = [config_file] if config_file is not None else list(config_sets)
    jobs: list[tuple[Any, tuple, dict[str, Any]]] = [
        (WORKFLOWS[workflow], (files,), dict(iterations=iterations, warmup=warmup, threads=threads, **override))
        for files in sets
    ]
    if reference_cyclegan is not None:
        kwargs = dict(reference_cyclegan, iterations=iterations, warmup=warmup, threads=threads)
        jobs.append((benchmark_reference_cyclegan, (), kwargs))
    # one fresh process per configuration and round, so that the CPU peak memory (process peak RSS) is its own
    ctx = multiprocessing.get_context("spawn")
    rounds: list[list[dict[str, Any]]] = [[] for _ in jobs]
    for _ in range(int(repeats)):
        for i, (func, args, kwargs) in enumerate(jobs):
            with ctx.Pool(1) as pool:
                rounds[i].append(pool.apply(func, args, kwargs))
    results = [_merge(r) for r in rounds]
    for result in results:
        result.setdefault("device_name", cpu_name())
    single = config_file is not None and reference_cyclegan is None
    _report(results[0] if single else results, output)


def _report(result: Any, output: str | None) -> None:
    """Print ``result`` as JSON and write it to ``output`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    fire.Fire(main)
