"""Rank and world size of this process, through ``ignite.distributed`` (which also knows Horovod and XLA)."""

from __future__ import annotations

import ignite.distributed as idist

__all__ = ["get_rank", "get_world_size", "is_rank0"]


def get_rank() -> int:
    """Rank of this process in the default process group; 0 when not running distributed."""
    return int(idist.get_rank())


def get_world_size() -> int:
    """Number of processes in the default process group; 1 when not running distributed."""
    return int(idist.get_world_size())


def is_rank0() -> bool:
    """Whether this process writes shared outputs (rank 0, or the only process)."""
    return get_rank() == 0
