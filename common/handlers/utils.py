"""Former home of the rank queries and atomic writes, now in :mod:`common.utils`; these names are re-exported
from there until the last of their importers uses :mod:`common.utils` directly, then this module is removed."""

from common.utils import atomic_path, atomic_write_json, get_rank, get_world_size, is_rank0, split_ext

__all__ = ["get_rank", "get_world_size", "is_rank0", "split_ext", "atomic_path", "atomic_write_json"]
