"""The naming of training checkpoints (``checkpoint_<iteration>.pt``) and how to find the newest one.

It lives in the floor of ``common`` because code of several layers looks for checkpoints: the engines that write
and resume them, and the end-of-run summary handler that reports them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["CHECKPOINT_PREFIX", "latest_checkpoint"]

CHECKPOINT_PREFIX = "checkpoint"
_STEP = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)\.pt$")


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration count in ``ckpt_dir`` (``checkpoint_<iteration>.pt``), if any."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name))]
    return max(found)[1] if found else None
