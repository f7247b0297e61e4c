"""Benchmarks of a bundle configuration: training-step time, inference throughput and peak memory.

:func:`benchmark_training_step`: the bundle's own ``initialize`` runs first (phantom data, validation), then the
configured training step is called on real batches of the configured loader, as the trainer would call it.
:func:`benchmark_inference`: the ``benchmark#call`` of an inference config (e.g. the generator on a batch of
conditioned inputs, or a whole-volume sliding-window detection) is timed with random-initialised weights, items
per second being ``benchmark#items`` per call. Speed claims in the model cards come from these functions through
``scripts/benchmark.py``, never from timed tests. Every result names its hardware
(:func:`common.bundle.peak_benchmark.hardware_info`); a training-step result also holds the FLOPs of one step
(``step_gflop``, counted once outside the timed steps) and the achieved GFLOP/s over the mean step time.
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from common.bundle.peak_benchmark import count_flops, cpu_name, hardware_info
from common.data.loading import cycle_loader
from common.networks.blocks.conv_algorithms import conv_measurements, recheck_state

__all__ = [
    "StepFeed",
    "benchmark_training_step",
    "benchmark_inference",
    "cpu_name",
    "data_fraction",
    "load_training_step",
    "report_json",
    "step_time_summary",
]


def report_json(result: Any, output: str | None = None) -> None:
    """Print a benchmark ``result`` as indented JSON, and write the same text to ``output`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")


def step_time_summary(times: Sequence[float]) -> dict[str, Any]:
    """Mean, median, standard deviation and minimum of step times (seconds), and the times themselves."""
    times = [float(t) for t in times]
    return {
        "mean": statistics.mean(times),
        "median": statistics.median(times),
        "std": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min": min(times),
        "times": times,
    }


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    # Linux reports ru_maxrss in KiB: the peak resident memory of this whole process (run one config per process)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_process_peak_rss"


def _settle(call: Callable[[Any], Any], prepare: Callable[[], Any], limit: int) -> int:
    """Untimed calls while ``conv_algorithm: auto`` has call signatures waiting for their recheck
    (:func:`~common.networks.blocks.conv_algorithms.recheck_state`), at most ``limit``, stopping early where a call
    advances none of them; the number of calls made."""
    state = recheck_state()
    made = 0
    while state[0] and made < limit:
        call(prepare())
        made += 1
        now = recheck_state()
        if now == state:
            break
        state = now
    return made


def _time_calls(
    call: Callable[[Any], Any],
    iterations: int,
    warmup: int,
    device: torch.device,
    prepare: Callable[[], Any] = lambda: None,
    settle: int = 0,
) -> tuple[list[float], list[float], list[float], int]:
    """Wall-clock and process CPU seconds of ``call(prepare())`` after ``warmup`` untimed calls (and up to ``settle``
    more while ``conv_algorithm: auto`` waits for rechecks: :func:`_settle`), the wall-clock seconds of each
    ``prepare()`` (timed apart from the call: e.g. drawing the next batch from a data loader), and the number of
    settling calls made."""
    for _ in range(warmup):
        call(prepare())
    settled = _settle(call, prepare, settle)
    times: list[float] = []
    cpu_times: list[float] = []
    prepare_times: list[float] = []
    for _ in range(iterations):
        prepare_start = time.perf_counter()
        argument = prepare()
        prepare_times.append(time.perf_counter() - prepare_start)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        call(argument)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times, prepare_times, settled


def data_fraction(data_times: Sequence[float], step_times: Sequence[float]) -> float:
    """The share of the training time spent waiting for data: total data time over total data and step time."""
    data, step = float(sum(data_times)), float(sum(step_times))
    return data / (data + step) if data + step > 0 else 0.0


def _environment(files: Sequence[str], override: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The configuration and the machine of a benchmark result."""
    return {
        "config_file": list(files),
        "override": {k: str(v) for k, v in override.items()},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "hardware": hardware_info(device),
    }


def load_training_step(
    config_file: str | Sequence[str], step_id: str = "train#step", loader_id: str = "train#dataloader", **override: Any
) -> tuple[list[str], Any, Any, Any]:
    """A bundle's training step as its trainer gets it: the config (a file or a list merged in order) initialised
    through MONAI's ``ConfigWorkflow`` (phantom data, validation) with ``override``, then the step and the loader
    parsed. Returns ``(files, parser, step, loader)``."""
    from monai.bundle import ConfigWorkflow

    files = [config_file] if isinstance(config_file, str) else list(config_file)
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, logging_file=False, **override)
    workflow.initialize()
    parser = workflow.parser
    return files, parser, parser.get_parsed_content(step_id), parser.get_parsed_content(loader_id)


class StepFeed:
    """A loader's batches, cycling, each counted as the next iteration of a stand-in engine: what a training step's
    call ``step(feed.engine, feed.next())`` needs outside a trainer.

    Attributes:
        engine: ``engine.state.iteration`` and ``engine.state.epoch`` of the last batch drawn.
        batch: the last batch drawn (``None`` before the first).
    """

    def __init__(self, loader: Any) -> None:
        self.engine = SimpleNamespace(state=SimpleNamespace(iteration=0, epoch=1))
        self.batch: Any = None
        self._batches = cycle_loader(loader)

    def next(self) -> Any:
        """The loader's next batch (cycling), counted as the engine's next iteration."""
        self.engine.state.epoch, self.batch = next(self._batches)
        self.engine.state.iteration += 1
        return self.batch


def benchmark_training_step(
    config_file: str | Sequence[str],
    iterations: int = 10,
    warmup: int = 2,
    step_id: str = "train#step",
    loader_id: str = "train#dataloader",
    batch_size_id: str = "batch_size",
    threads: int | None = None,
    flops: bool = True,
    settle: int = 4,
    **override: Any,
) -> dict[str, Any]:
    """Time ``iterations`` calls of a bundle's training step after ``warmup`` untimed calls.

    Args:
        config_file: a config file or a list merged in order (e.g. train.yaml and a variant).
        iterations: timed step calls (each on the next batch of the loader, cycling).
        warmup: untimed calls first (allocator and kernel warm-up). They must cover the step's one-time work:
            with ``compile`` the calls that compile each network (one per kind of call: the first iteration
            compiles the critic's, the first generator turn, iteration ``n_critic``, the generator's), and with
            ``memory_format: auto`` the first call's layout measurement; both are then excluded from the timings.
        step_id: config id of the training-step object.
        loader_id: config id of the training data loader.
        batch_size_id: config id of the batch size, reported in the result.
        threads: ``torch.set_num_threads`` for the run (default: leave as is).
        settle: after the warm-up, up to this many more untimed steps while ``conv_algorithm: auto`` has call
            signatures that measured slower and wait for their recheck at a layer's tenth call
            (:data:`~common.networks.blocks.conv_algorithms.RECHECK_CALL`), so that the timed steps run the choices
            a training run keeps after its first few steps (a first measurement can come out too low while another
            process starts); ``0``: no settling. The steps made are ``settle_steps`` in the result, the signatures
            still waiting ``pending_rechecks``.
        flops: after the timed steps, run one more step under
            :func:`~common.bundle.peak_benchmark.count_flops` (forward and backward of every network the step
            runs) and report ``step_gflop`` and ``achieved_gflops`` (``step_gflop`` over the mean step time).
        override: config overrides, e.g. ``image_size=128``.

    Returns:
        A JSON-serialisable dict: configuration, device and ``hardware``, the step's precision policy
        (``precision``, e.g. ``{"dtype": "bfloat16", "reason": "CPU with AMX", ...}``), the networks' memory
        formats and compile state (``acceleration``, resolved after the timed steps), timings (seconds per step: wall clock
        ``step_time_s`` and the CPU time of this process ``step_cpu_time_s``, which other processes' load does not
        inflate; with one thread it is the step's compute), the wall-clock seconds of each ``next`` on the loader's
        iterator before a timed step (``data_time_s``, not part of ``step_time_s``; it includes starting the
        loader's workers when a pass over the data ends) and ``data_fraction`` (data time over data plus step
        time), the loader's ``num_workers``, samples/s, peak memory, and with ``flops`` ``step_gflop`` and
        ``achieved_gflops``.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    files, parser, step, loader = load_training_step(config_file, step_id, loader_id, **override)
    device = torch.device(step.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    feed = StepFeed(loader)
    engine, next_batch = feed.engine, feed.next

    times, cpu_times, data_times, settled = _time_calls(
        lambda b: step(engine, b), iterations, warmup, device, next_batch, settle
    )
    batch_size = step.images(feed.batch).shape[0]
    peak, kind = _peak_memory_mb(device)
    mean = statistics.mean(times)
    # counted after the timed steps and the peak memory, so that the counter's dispatch overhead is never timed
    step_gflop = count_flops(lambda: step(engine, next_batch())) / 1e9 if flops else None
    return {
        **_environment(files, override, device),
        "batch_size": batch_size,
        "configured_batch_size": parser.get(batch_size_id),
        "amp": bool(getattr(step, "amp", False)),
        "precision": step.precision.as_dict() if hasattr(step, "precision") else None,
        "acceleration": step.acceleration.as_dict() if hasattr(step, "acceleration") else None,
        "iterations": iterations,
        "settle_steps": settled,
        "pending_rechecks": recheck_state()[0],
        "step_time_s": step_time_summary(times),
        "step_cpu_time_s": step_time_summary(cpu_times),
        "data_time_s": step_time_summary(data_times),
        "data_fraction": data_fraction(data_times, times),
        "num_workers": getattr(loader, "num_workers", None),
        "samples_per_s": batch_size / mean if batch_size else None,
        "peak_memory_mb": peak,
        "peak_memory_kind": kind,
        "step_gflop": step_gflop,
        "achieved_gflops": step_gflop / mean if step_gflop is not None else None,
    }


def benchmark_inference(
    config_file: str | Sequence[str],
    iterations: int = 10,
    warmup: int = 2,
    call_id: str = "benchmark#call",
    items_id: str = "benchmark#items",
    threads: int | None = None,
    settle: int = 4,
    **override: Any,
) -> dict[str, Any]:
    """Time ``iterations`` calls of an inference config's benchmark callable, without gradients.

    The config defines ``benchmark#call``, a callable without arguments that runs the timed work on inputs
    built once by the config (e.g. ``$lambda: @network(@benchmark#inputs)``), and ``benchmark#items``, the
    number of items (nodules, volumes) one call produces. The config's ``initialize`` is not run and no
    checkpoint is loaded: the networks keep their random initialisation, which costs the same time as trained
    weights for fixed-size networks (a detector's post-processing time depends on how many boxes it keeps).

    Args:
        config_file: a config file or a list merged in order (e.g. inference.yaml and a variant).
        iterations: timed calls.
        warmup: untimed calls first.
        call_id: config id of the callable.
        items_id: config id of the number of items per call.
        threads: ``torch.set_num_threads`` for the run (default: leave as is).
        settle: up to this many more untimed calls after the warm-up while ``conv_algorithm: auto`` waits for
            rechecks (as :func:`benchmark_training_step`'s ``settle``).
        override: config overrides, e.g. ``benchmark_batch_size=16``.

    Returns:
        A JSON-serialisable dict: configuration, device, ``call_time_s`` and ``call_cpu_time_s`` summaries,
        ``items_per_call``, ``items_per_s``, the peak memory and ``acceleration``: ``{"conv_measurements"}``, every
        call signature that ``conv_algorithm: auto`` timed in this process, with its speedup and whether it was used
        (:func:`~common.networks.blocks.conv_algorithms.conv_measurements`).
    """
    from monai.bundle import ConfigParser

    if threads is not None:
        torch.set_num_threads(int(threads))
    files = [config_file] if isinstance(config_file, str) else list(config_file)
    parser = ConfigParser()
    parser.read_config(files)
    parser.update(override)
    device = torch.device(parser.get_parsed_content("device"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    call = parser.get_parsed_content(call_id)
    items = int(parser.get_parsed_content(items_id))
    with torch.no_grad():
        times, cpu_times, _, settled = _time_calls(lambda _: call(), iterations, warmup, device, settle=settle)
    peak, kind = _peak_memory_mb(device)
    return {
        "workflow": "inference",
        **_environment(files, override, device),
        "iterations": iterations,
        "settle_steps": settled,
        "pending_rechecks": recheck_state()[0],
        "items_per_call": items,
        "call_time_s": step_time_summary(times),
        "call_cpu_time_s": step_time_summary(cpu_times),
        "items_per_s": items / statistics.mean(times),
        "peak_memory_mb": peak,
        "peak_memory_kind": kind,
        # what `conv_algorithm: auto` measured for the networks' calls (common.engines.accelerate_inference)
        "acceleration": {"conv_measurements": conv_measurements()},
    }
