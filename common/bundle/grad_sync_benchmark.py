"""Benchmark of the multi-process gradient averaging: one ``all_reduce`` per parameter vs per bucket.

:func:`benchmark_grad_sync` spawns ``world_size`` gloo processes on this machine; each builds the same networks
(by default the CDA-GAN bundle's two generators, two attention networks and two discriminators, from its
``train.yaml``), fills their gradients with rank-dependent values and times, in interleaved rounds, the former
per-parameter averaging (:func:`per_parameter_all_reduce`, what ``TrainingStep.sync_gradients`` did before) and
:func:`common.engines.grad_sync.all_reduce_gradients` at several bucket sizes. Every timed sync starts after a
barrier and ends when the slowest rank is done (a second barrier); each round also checks that the bucketed result
equals the per-parameter one exactly. The numbers in the model cards come from ``scripts/benchmark_grad_sync.py``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from common.bundle.benchmark import cpu_name, step_time_summary
from common.engines.grad_sync import all_reduce_gradients, gradient_buckets
from monai.bundle import ConfigParser

__all__ = ["CDA_GAN_NETWORKS", "benchmark_grad_sync", "per_parameter_all_reduce"]

CDA_GAN_NETWORKS = ("gen_n", "gen_p", "attn_n", "attn_p", "disc_n", "disc_p")
"""The networks of the CDA-GAN ``train.yaml`` whose parameters are synchronised (both optimisers together)."""


@torch.no_grad()
def per_parameter_all_reduce(params: Sequence[torch.Tensor]) -> None:
    """Average each parameter's gradient over ranks with its own ``all_reduce`` (the unbucketed baseline)."""
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def network_parameters(config_file: str | Path, names: Sequence[str], override: dict[str, Any]) -> list[nn.Parameter]:
    """The parameters of the networks ``names`` of a bundle config, instantiated on the CPU (seeded)."""
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.update({"device": "$torch.device('cpu')", **override})
    torch.manual_seed(0)
    params: list[nn.Parameter] = []
    for name in names:
        net = parser.get_parsed_content(name)
        if net is not None:
            params.extend(net.parameters())
    return params


def _worker(rank: int, world: int, port: int, kwargs: dict[str, Any], results: Any) -> None:
    torch.set_num_threads(kwargs["threads"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        params = network_parameters(kwargs["config_file"], kwargs["networks"], kwargs["override"])
        gen = torch.Generator().manual_seed(rank)
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        methods: dict[str, Any] = {"per_parameter": per_parameter_all_reduce}
        for mb in kwargs["bucket_mb"]:
            methods[f"bucket_{mb:g}MB"] = lambda ps, mb=mb: all_reduce_gradients(ps, mb)
        times: dict[str, list[float]] = {k: [] for k in methods}
        equal = True
        for round_ in range(kwargs["warmup"] + kwargs["repeats"]):
            results_of: dict[str, list[torch.Tensor]] = {}
            for name, sync in methods.items():
                for p, g in zip(params, grads):
                    p.grad = g.clone()
                dist.barrier()
                start = time.perf_counter()
                sync(params)
                dist.barrier()
                if round_ >= kwargs["warmup"]:
                    times[name].append(time.perf_counter() - start)
                results_of[name] = [p.grad for p in params]
            base = results_of["per_parameter"]
            equal = equal and all(all(map(torch.equal, base, r)) for r in results_of.values())
        if rank == 0:
            results.put(
                {
                    "parameters": sum(p.numel() for p in params),
                    "tensors": len(params),
                    "megabytes": sum(p.numel() * p.element_size() for p in params) / 2**20,
                    "buckets": {f"bucket_{mb:g}MB": len(gradient_buckets(params, mb)) for mb in kwargs["bucket_mb"]},
                    "times": times,
                    "equal": equal,
                }
            )
    finally:
        dist.destroy_process_group()


def benchmark_grad_sync(
    config_file: str | Path = "bundles/cda_gan/configs/train.yaml",
    networks: Sequence[str] = CDA_GAN_NETWORKS,
    override: dict[str, Any] | None = None,
    bucket_mb: Sequence[float] = (1.0, 4.0, 25.0),
    world_size: int = 2,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
) -> dict[str, Any]:
    """Time per-parameter vs bucketed gradient averaging over ``world_size`` local gloo processes.

    Args:
        config_file: the bundle config that defines the networks.
        networks: the config ids of the networks whose parameters are synchronised.
        override: config overrides (e.g. ``{"base_channels": 64}``).
        bucket_mb: the bucket sizes (MB) to time.
        world_size: number of processes.
        repeats: timed rounds; in each round every method syncs once, in the same order.
        warmup: untimed rounds first.
        threads: torch threads per process.

    Returns:
        ``parameters``, ``tensors``, ``megabytes`` (of the gradients), ``buckets`` (count per bucket size),
        ``times`` (per method: mean, median, std, min, times in seconds), ``speedup_vs_per_parameter`` (per method:
        the per-parameter median over its median), ``equal`` (every bucketed result equal to the per-parameter one
        in every round), ``world_size``, ``cpu``, ``torch``.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kwargs = {
        "config_file": str(config_file),
        "networks": list(networks),
        "override": dict(override or {}),
        "bucket_mb": [float(b) for b in bucket_mb],
        "repeats": int(repeats),
        "warmup": int(warmup),
        "threads": int(threads),
    }
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, world_size, port, kwargs, results)) for r in range(world_size)]
    for p in procs:
        p.start()
    out = results.get(timeout=1800)
    for p in procs:
        p.join()
    times = {k: step_time_summary(v) for k, v in out.pop("times").items()}
    base = times["per_parameter"]["median"]
    return {
        **out,
        "times": times,
        "speedup_vs_per_parameter": {k: base / v["median"] for k, v in times.items()},
        "world_size": world_size,
        "threads": threads,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
