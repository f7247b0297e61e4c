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
    # the same with the machine's fp32/bf16 matmul and convolution peaks measured in each round (last entry), and
    # each step's achieved GFLOP/s as a fraction of them
    python scripts/benchmark.py --config_sets "[['a.yaml']]" --repeats 2 --peak true --threads 2 \
        --reference_cyclegan "{'channels': 1, 'image_size': 256, 'num_res_blocks': 9}"
    # the peaks alone: GFLOP/s of a 2048^2 matmul and a 256-channel 3x3 convolution, fp32 and bf16
    python scripts/benchmark.py --workflow peak --threads 2 --matmul_size 2048 --conv_size 64
    # inference throughput: the `benchmark#call` of an inference config (random weights), e.g. 3D MCGAN synthesis
    python scripts/benchmark.py --workflow inference --config_file bundles/mcgan_3d/configs/inference.yaml \
        --benchmark_batch_size 16
    # the release converters (no config): synthetic BraTS, LUNA16 and MedMNIST releases at real per-case size,
    # converted with 0 and 2 workers: cases/s, slices/s, peak memory per worker, the NIfTI writer before/after
    python scripts/benchmark.py --workflow conversion --brats_cases 8 --workers 0,2 --output conversion.json
    python scripts/benchmark.py --workflow conversion --conversions "['brats_2d']" --brats_cases 4

Every configuration runs in a fresh process (its own peak memory). With ``--repeats N`` the configurations run in
N rounds, one after the other within each round, and each result holds the step times of all its rounds, so that a
slow drift of the machine's load falls on every configuration alike. Each training result holds ``speedup_vs``
(``first``: the first configuration's mean step time over its own; ``reference``: the reference CycleGAN's over its
own) for wall-clock and CPU time, and a table of them is printed to stderr after the JSON, with the time each step
waited for its batch (``data_time_s``: the loader's ``next``, timed apart from the step) and ``data_fraction`` (data
time over data plus step time). After the ``--warmup`` steps, up to ``--settle`` more untimed ones (default 4) run
while ``conv_algorithm: auto`` has call signatures that measured slower and wait for their recheck at a layer's tenth
call, so that the timed steps run the choices a training keeps after its first few steps (``settle_steps_rounds``,
``pending_rechecks_rounds`` in the result). The FLOPs of a step are counted in the first round only. The conversion workflow
takes the arguments of :py:func:`common.bundle.conversion_benchmark.benchmark_conversion` and runs each conversion
in a process of its own.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from common.bundle.benchmark import (
    benchmark_inference,
    benchmark_training_step,
    cpu_name,
    data_fraction,
    report_json,
    step_time_summary,
)
from common.bundle.conversion_benchmark import benchmark_conversion
from common.bundle.peak_benchmark import benchmark_peak, count_flops, fractions_of_peak, hardware_info
from common.utils.cli import run_fire
from reference_cyclegan import ReferenceCycleGAN, benchmark_reference_cyclegan

WORKFLOWS = {"training": benchmark_training_step, "inference": benchmark_inference}
CONVERSION = "conversion"
"""The workflow that benchmarks the release converters (no bundle config)."""
PEAK = "peak"
"""The workflow that measures the machine's fp32/bf16 matmul and convolution GFLOP/s (no config)."""


def reference_cyclegan_job(flops: bool = True, **kwargs: Any) -> dict[str, Any]:
    """``benchmark_reference_cyclegan(**kwargs)`` with the hardware, and with ``flops`` the FLOPs of one more step
    of a fresh :class:`ReferenceCycleGAN` of the same size (``step_gflop``, ``achieved_gflops``)."""
    result = benchmark_reference_cyclegan(**kwargs)
    result["hardware"] = hardware_info("cpu")
    result["step_gflop"] = result["achieved_gflops"] = None
    if flops:
        channels, size = int(kwargs.get("channels", 1)), int(kwargs.get("image_size", 256))
        batch = int(kwargs.get("batch_size", 1))
        model = ReferenceCycleGAN(channels, int(kwargs.get("num_res_blocks", 9)))
        a, b = (torch.rand(batch, channels, size, size) * 2 - 1 for _ in range(2))
        result["step_gflop"] = count_flops(lambda: model.step(a, b)) / 1e9
        result["achieved_gflops"] = result["step_gflop"] / result["step_time_s"]["mean"]
    return result


def _merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the results of several rounds of the same configuration."""
    merged = dict(rounds[-1])
    prefix = "call" if "call_time_s" in merged else "step"
    times = [t for r in rounds for t in r[f"{prefix}_time_s"]["times"]]
    merged[f"{prefix}_time_s"] = step_time_summary(times)
    merged[f"{prefix}_cpu_time_s"] = step_time_summary([t for r in rounds for t in r[f"{prefix}_cpu_time_s"]["times"]])
    if "data_time_s" in merged:
        data_times = [t for r in rounds for t in r["data_time_s"]["times"]]
        merged["data_time_s"] = step_time_summary(data_times)
        merged["data_fraction"] = data_fraction(data_times, times)
    merged["iterations"] = len(times)
    merged["rounds"] = len(rounds)
    if any(r.get("acceleration", {}).get("conv_measurements") for r in rounds):
        # each round's process measures ``conv_algorithm: auto`` anew, and may choose otherwise
        merged["conv_measurements_rounds"] = [r.get("acceleration", {}).get("conv_measurements", []) for r in rounds]
    if any("settle_steps" in r for r in rounds):
        # each round's process settles its own `conv_algorithm: auto` rechecks
        merged["settle_steps_rounds"] = [r.get("settle_steps", 0) for r in rounds]
        merged["pending_rechecks_rounds"] = [r.get("pending_rechecks", 0) for r in rounds]
    merged["peak_memory_mb"] = max(r["peak_memory_mb"] for r in rounds)
    if merged.get("batch_size"):
        merged["samples_per_s"] = merged["batch_size"] / merged["step_time_s"]["mean"]
    gflop = next((r["step_gflop"] for r in rounds if r.get("step_gflop") is not None), None)
    if gflop is not None:
        merged["step_gflop"] = gflop
        merged["achieved_gflops"] = gflop / merged["step_time_s"]["mean"]
        # at the fastest step: the estimate that other processes' load inflates least on a shared machine
        merged["achieved_gflops_best"] = gflop / merged["step_time_s"]["min"]
    if merged.get("items_per_call"):
        merged["items_per_s"] = merged["items_per_call"] / merged["call_time_s"]["mean"]
    return merged


def _merge_peaks(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One peak result from several rounds: each peak the highest of the rounds (all rounds' rates kept)."""
    merged = dict(rounds[-1])
    names = list(merged["peak_gflops"])
    merged["peak_gflops"] = {name: max(r["peak_gflops"][name] for r in rounds) for name in names}
    merged["peak_gflops_rounds"] = {name: [r["peak_gflops"][name] for r in rounds] for name in names}
    merged["rounds"] = len(rounds)
    return merged


def _label(result: dict[str, Any]) -> str:
    """A short name of a result's configuration: its config file names joined by ``+``."""
    files = result.get("config_file")
    if isinstance(files, list):
        return "+".join(os.path.basename(str(f)) for f in files)
    return "reference_cyclegan" if str(files).startswith("reference:") else str(files)


def add_comparisons(
    results: list[dict[str, Any]], reference: dict[str, Any] | None, peak: dict[str, Any] | None
) -> None:
    """Add ``speedup_vs`` (wall clock) and ``cpu_time_speedup_vs`` to every training result, each ``{"first":
    first mean / own mean, "reference": reference mean / own mean}``, and ``fraction_of_peak`` (achieved GFLOP/s
    over each of ``peak``'s ``peak_gflops``) where the step's FLOPs were counted."""
    timed = [r for r in results if "step_time_s" in r]
    if not timed:
        return
    for key, out in (("step_time_s", "speedup_vs"), ("step_cpu_time_s", "cpu_time_speedup_vs")):
        for result in timed:
            ratios = {"first": timed[0][key]["mean"] / result[key]["mean"]}
            if reference is not None:
                ratios["reference"] = reference[key]["mean"] / result[key]["mean"]
            result[out] = ratios
    if peak is not None:
        for result in timed:
            if result.get("achieved_gflops") is not None:
                result["fraction_of_peak"] = fractions_of_peak(result["achieved_gflops"], peak["peak_gflops"])


def comparison_table(results: list[dict[str, Any]]) -> str:
    """A plain-text table of the training results: mean wall and CPU step time, data time per step and its share
    of data plus step time, speed-ups, GFLOP/s, fractions of the peaks."""
    rows = [
        "configuration | step s | cpu s | data s | data % | speedup vs first | vs reference | step GFLOP | GFLOP/s"
        " | of fp32 conv peak | of bf16 conv peak"
    ]

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in (r for r in results if "step_time_s" in r):
        fractions = r.get("fraction_of_peak", {})
        rows.append(
            " | ".join(
                [
                    _label(r),
                    fmt(r["step_time_s"]["mean"], ".3f"),
                    fmt(r["step_cpu_time_s"]["mean"], ".3f"),
                    fmt(r.get("data_time_s", {}).get("mean"), ".4f"),
                    fmt(r.get("data_fraction"), ".1%"),
                    fmt(r.get("speedup_vs", {}).get("first"), ".3f"),
                    fmt(r.get("speedup_vs", {}).get("reference"), ".3f"),
                    fmt(r.get("step_gflop"), ".2f"),
                    fmt(r.get("achieved_gflops"), ".2f"),
                    fmt(fractions.get("fp32_conv"), ".1%"),
                    fmt(fractions.get("bf16_conv"), ".1%"),
                ]
            )
        )
    return "\n".join(rows)


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
    peak: Any = False,
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
            ``benchmark_conversion``; no config, one JSON object) or ``peak`` (the machine's fp32/bf16 matmul and
            convolution GFLOP/s, ``benchmark_peak``; no config, one JSON object).
        peak: training workflow: ``true`` (default sizes) or a dict of ``benchmark_peak`` arguments (e.g.
            ``"{'matmul_size': 1024}"``): also measure the peaks in each round, in this process after the
            configurations' processes, as the last entry of the output list, and give every step's ``fraction_of_peak``.
        override: config overrides for every configuration, e.g. ``--image_size 128``; for ``conversion`` and
            ``peak`` the arguments of ``benchmark_conversion`` / ``benchmark_peak``, e.g. ``--brats_cases 8
            --workers 0,2`` or ``--matmul_size 1024``.
    """
    if workflow in (CONVERSION, PEAK):
        if config_file is not None or config_sets is not None or reference_cyclegan is not None or peak:
            raise ValueError(
                f"the {workflow} workflow takes no --config_file, --config_sets, --reference_cyclegan or --peak."
            )
        if workflow == PEAK:
            report_json(benchmark_peak(threads=threads, **override), output)
        else:
            report_json(benchmark_conversion(**override), output)
        return
    if (config_file is None) == (config_sets is None):
        raise ValueError("give exactly one of --config_file or --config_sets.")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    if workflow not in WORKFLOWS:
        raise ValueError(f"workflow must be one of {sorted([*WORKFLOWS, CONVERSION, PEAK])}, got {workflow!r}.")
    if peak and workflow != "training":
        raise ValueError("--peak true is for the training workflow.")
    sets = [config_file] if config_file is not None else list(config_sets)
    jobs: list[tuple[Any, tuple, dict[str, Any]]] = [
        (WORKFLOWS[workflow], (files,), dict(iterations=iterations, warmup=warmup, threads=threads, **override))
        for files in sets
    ]
    if reference_cyclegan is not None:
        kwargs = dict(reference_cyclegan, iterations=iterations, warmup=warmup, threads=threads)
        jobs.append((reference_cyclegan_job, (), kwargs))
    if peak:
        jobs.append((benchmark_peak, (), dict(peak if isinstance(peak, dict) else {}, threads=threads)))
    # one fresh process per configuration and round, so that the CPU peak memory (process peak RSS) is its own
    ctx = multiprocessing.get_context("spawn")
    rounds: list[list[dict[str, Any]]] = [[] for _ in jobs]
    for round_index in range(int(repeats)):
        for i, (func, args, kwargs) in enumerate(jobs):
            if func is benchmark_peak:  # no memory to measure: in this process, saving a start-up per round
                rounds[i].append(func(*args, **kwargs))
                continue
            if workflow == "training":
                kwargs = dict(kwargs, flops=round_index == 0)  # the FLOPs of a step do not change between rounds
            # not a multiprocessing.Pool: its daemonic process could not start the data loader's workers
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                rounds[i].append(pool.submit(func, *args, **kwargs).result())
    peak_result = _merge_peaks(rounds.pop()) if peak else None
    results = [_merge(r) for r in rounds]
    for result in results:
        result.setdefault("device_name", cpu_name())
    if workflow == "training":
        add_comparisons(results, results[-1] if reference_cyclegan is not None else None, peak_result)
    if peak_result is not None:
        results.append(peak_result)
    single = config_file is not None and reference_cyclegan is None and not peak
    report_json(results[0] if single else results, output)
    if workflow == "training" and len(results) > 1:
        print(comparison_table(results), file=sys.stderr)


if __name__ == "__main__":
    run_fire(main)  # `--help` would otherwise land in **override
