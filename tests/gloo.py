"""Two-process ``torch.distributed`` (gloo) runs shared by several test modules (imported as ``tests.gloo``; the
suite runs as ``python -m pytest`` from the repository root)."""

from __future__ import annotations

import multiprocessing as mp
import socket
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the ``init_method`` of a test's process group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker: Callable[..., None], num_results: int, world_size: int = 2, timeout: float = 120) -> list[Any]:
    """Run ``worker(rank, port, results)`` in ``world_size`` spawned processes and collect what they put.

    Args:
        worker: a module-level function (spawn pickles it) that joins the gloo group at ``tcp://127.0.0.1:port``
            and puts its findings on the ``results`` queue.
        num_results: how many items the workers put in all.
        world_size: the number of processes (ranks).
        timeout: seconds to wait for each item.

    Returns:
        The items in the order they arrived.

    Raises:
        AssertionError: a worker exited with a non-zero status.
    """
    port = free_port()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(rank, port, results)) for rank in range(world_size)]
    for p in procs:
        p.start()
    got = [results.get(timeout=timeout) for _ in range(num_results)]
    for p in procs:
        p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return got
