"""Small helpers shared by the handlers: distributed rank queries and atomic file writes."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch.distributed as dist

__all__ = ["get_rank", "get_world_size", "is_rank0", "split_ext", "atomic_path", "atomic_write_json"]

_MULTI_EXTS = (".nii.gz", ".tar.gz")


def get_rank() -> int:
    """Rank of this process in the default process group, 0 when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


def get_world_size() -> int:
    """Number of processes in the default process group, 1 when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


def is_rank0() -> bool:
    """Whether this process is the one that writes shared outputs (rank 0, or the only process)."""
    return get_rank() == 0


def split_ext(path: str) -> tuple[str, str]:
    """Split ``path`` into stem and extension, keeping double extensions such as ``.nii.gz`` together.

    Args:
        path: a file name or path.

    Returns:
        ``(stem, ext)`` with ``stem + ext == path``.
    """
    lower = path.lower()
    for ext in _MULTI_EXTS:
        if lower.endswith(ext):
            return path[: -len(ext)], path[-len(ext) :]
    return os.path.splitext(path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Context manager yielding a temporary file name next to ``path``; on success it is moved onto ``path``.

    The temporary file lives in the same folder (so ``os.replace`` is atomic) and keeps the extension of
    ``path`` (so writers that infer the format from the name, such as nibabel, still work). If the body
    raises, the temporary file is removed and ``path`` is left untouched, so no half-written file remains.

    Args:
        path: final destination; missing parent folders are created.

    Yields:
        the temporary path to write to.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = split_ext(os.path.basename(path))
    # a unique name created by the writer itself, so the final file gets the usual umask permissions
    tmp = os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(obj: Any, path: str | os.PathLike, indent: int = 4) -> None:
    """Write ``obj`` as JSON to ``path`` atomically.

    Args:
        obj: a JSON-serialisable object.
        path: destination file.
        indent: JSON indentation.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
