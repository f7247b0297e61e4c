"""The naming of training checkpoints (``checkpoint_<iteration>.pt``), how to find the newest one, and how to write
a weights file atomically and byte for byte reproducibly.

It lives in the floor of ``common`` because code of several layers looks for checkpoints: the engines that write
and resume them, and the end-of-run summary handler that reports them.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import torch
from common.utils.io import atomic_write_bytes

__all__ = ["CHECKPOINT_PREFIX", "latest_checkpoint", "save_atomic"]

CHECKPOINT_PREFIX = "checkpoint"
_STEP = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)\.pt$")


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration count in ``ckpt_dir`` (``checkpoint_<iteration>.pt``), if any."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name))]
    return max(found)[1] if found else None


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically: a reader never sees half a file.

    The object is serialised in memory and the bytes are written to a temporary file in the same folder, then
    renamed (:func:`~common.utils.io.atomic_write_bytes`). Serialising straight to the temporary file would name the
    archive inside it after that file's random name, so two saves of equal weights would differ in their bytes and
    in the SHA-256 that synthetic datalists record of their generator's checkpoint; in memory the archive's name is
    fixed, and equal weights give equal files.

    Args:
        obj: what to save (a state dict, or a dict of them).
        path: destination file; missing folders are created.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)
