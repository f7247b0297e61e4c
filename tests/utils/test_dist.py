"""Tests of the rank queries of :mod:`common.utils.dist` outside a distributed run."""

from __future__ import annotations

import torch.distributed as dist

from common.utils import get_rank, get_world_size, is_rank0


def test_rank_zero_and_world_size_one_without_process_group():
    assert not (dist.is_available() and dist.is_initialized())
    assert get_rank() == 0 and isinstance(get_rank(), int)
    assert get_world_size() == 1 and isinstance(get_world_size(), int)
    assert is_rank0() is True
