"""A bundle's training step with its instance norms on the group-norm kernel and on torch's instance norm, side by
side in one process (:mod:`common.networks.blocks.instance_norm_kernel`).

The step is built once from the bundle's config (``conv_algorithm: auto`` switches the norms on an fp32 CPU step),
then the two kernels alternate round by round (``use_group_norm_kernel(enable=...)`` on every network of the step;
the order within a round alternates too), each round timing ``steps_per_round`` steps on the loader's next batches.
Both kernels thus train the same networks from the same state on the same machine load; the networks go on
learning from round to round, which changes a step's work little. ``warmup`` steps of each kernel first (the
convolution algorithms' measurements, the allocator) are not timed. CPU time of the process per step is the
figure (``time.process_time``: with one thread, the step's compute, which other processes' load inflates less than
the wall clock).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from common.bundle.benchmark import StepFeed, load_training_step
from common.bundle.peak_benchmark import hardware_info
from common.networks.blocks.instance_norm_kernel import use_group_norm_kernel

__all__ = ["KERNELS", "benchmark_norm_kernel"]

KERNELS = ("group_norm", "instance_norm")
"""The two kernels compared: torch's group-norm kernel (the switch) and torch's own instance norm."""


def benchmark_norm_kernel(
    config_file: str | Sequence[str],
    rounds: int = 4,
    steps_per_round: int = 1,
    warmup: int = 2,
    threads: int | None = None,
    step_id: str = "train#step",
    loader_id: str = "train#dataloader",
    **override: Any,
) -> dict[str, Any]:
    """Time the training step of ``config_file`` with each instance-norm kernel, alternating per round.

    Args:
        config_file: a config file or a list merged in order (e.g. train.yaml and a variant).
        rounds: rounds; each times ``steps_per_round`` steps of both kernels.
        steps_per_round: timed steps per kernel and round.
        warmup: untimed steps of each kernel before the first round.
        threads: ``torch.set_num_threads`` for the run (default: leave as is).
        step_id: config id of the training-step object.
        loader_id: config id of the training data loader.
        override: config overrides, e.g. ``image_size=128``.

    Returns:
        ``{"config_file", "override", "hardware", "switched_norms", "rounds", "cpu_time_s": {kernel: [per round
        mean]}, "mean_s": {kernel: mean}, "ratio": instance_norm / group_norm mean, "round_ratios", "rounds_faster"
        (rounds where the group-norm kernel took less time)}``.

    Raises:
        ValueError: the step switches no instance norm (not an fp32 CPU step with ``conv_algorithm: auto``, or a
            network without instance norms): there would be nothing to compare.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    files, _, step, loader = load_training_step(config_file, step_id, loader_id, **override)
    switched = dict(getattr(step.acceleration, "group_norm_kernel", {}))
    if not any(switched.values()):
        raise ValueError(
            f"{files}: the training step computes no instance norm by the group-norm kernel (it needs "
            f"conv_algorithm: auto on an fp32 CPU step and networks with instance norms); nothing to compare."
        )
    networks = [net for net in step.networks.values() if net is not None]
    feed = StepFeed(loader)

    def timed_steps(kernel: str, count: int) -> list[float]:
        for net in networks:
            use_group_norm_kernel(net, enable=kernel == "group_norm")
        times = []
        for _ in range(count):
            batch = feed.next()
            start = time.process_time()
            step(feed.engine, batch)
            times.append(time.process_time() - start)
        return times

    for kernel in KERNELS:
        timed_steps(kernel, warmup)
    per_round: dict[str, list[float]] = {kernel: [] for kernel in KERNELS}
    for r in range(int(rounds)):
        for kernel in KERNELS if r % 2 == 0 else KERNELS[::-1]:
            per_round[kernel].append(statistics.mean(timed_steps(kernel, int(steps_per_round))))
    for net in networks:  # leave the step as its config built it
        use_group_norm_kernel(net, enable=True)
    means = {kernel: statistics.mean(v) for kernel, v in per_round.items()}
    round_ratios = [i / g for g, i in zip(per_round["group_norm"], per_round["instance_norm"])]
    return {
        "config_file": files,
        "override": {k: str(v) for k, v in override.items()},
        "hardware": hardware_info("cpu"),
        "switched_norms": switched,
        "rounds": int(rounds),
        "steps_per_round": int(steps_per_round),
        "cpu_time_s": per_round,
        "mean_s": means,
        "ratio": means["instance_norm"] / means["group_norm"],
        "round_ratios": round_ratios,
        "rounds_faster": sum(r > 1.0 for r in round_ratios),
    }
