"""Tests of the rank queries of :mod:`common.utils.dist` outside a distributed run."""

from __future__ import annotations

import multiprocessing as mp

import torch.distributed as dist
from common.utils import get_rank, get_world_size, is_rank0

from tests.gloo import free_port


def test_rank_zero_and_world_size_one_without_process_group():
    assert not (dist.is_available() and dist.is_initialized())
    assert get_rank() == 0 and isinstance(get_rank(), int)
    assert get_world_size() == 1 and isinstance(get_world_size(), int)
    assert is_rank0() is True


def _rank0_alone_asks(rank: int, port: int, results) -> None:
    """Worker: only rank 0 queries rank/world size, then both meet at a barrier (a collective query would hang)."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        if rank == 0:
            results.put((get_rank(), get_world_size(), is_rank0()))
        dist.barrier()
        results.put(("rank", get_rank()))
    finally:
        dist.destroy_process_group()


def test_rank_query_on_one_rank_runs_no_collective():
    """Rank 0 alone asking for the world size (as when it alone writes a datalist) must not wait for the others."""
    port = free_port()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank0_alone_asks, args=(r, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "a rank query called on rank 0 alone blocked the process group"
    got = [results.get(timeout=5) for _ in range(3)]
    assert (0, 2, True) in got
    assert sorted(r for tag, r in (g for g in got if g[0] == "rank")) == [0, 1]
