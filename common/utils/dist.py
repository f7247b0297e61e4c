"""Rank and world size of this process.

With an initialised ``torch.distributed`` process group (``torchrun``, NCCL or gloo) the answer comes from
``torch.distributed`` itself: ignite's ``idist.get_rank()`` builds its distributed model on first use, which runs
collectives (``new_group``, all-reduce) and therefore hangs when only rank 0 asks (e.g. rank 0 alone writing a
datalist while the other ranks wait at a barrier). Without a process group, ``ignite.distributed`` answers (0 and 1
in a single process; it also knows Horovod and XLA).
"""

from __future__ import annotations

import ignite.distributed as idist
import torch.distributed as dist

__all__ = ["get_rank", "get_world_size", "is_rank0"]


def _native() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Rank of this process in the default process group; 0 when not running distributed (no collective call)."""
    return int(dist.get_rank()) if _native() else int(idist.get_rank())


def get_world_size() -> int:
    """Number of processes in the default process group; 1 when not running distributed (no collective call)."""
    return int(dist.get_world_size()) if _native() else int(idist.get_world_size())


def is_rank0() -> bool:
    """Whether this process writes shared outputs (rank 0, or the only process)."""
    return get_rank() == 0
