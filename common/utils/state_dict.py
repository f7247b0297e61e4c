"""Reading a state dict of tensors from a local weights file, safely (``torch.load(..., weights_only=True)``).

It lives in the floor of ``common`` because networks (ImageNet weights of a classifier backbone) and metrics (the
weights of a feature extractor) read user-supplied weights files the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import torch

__all__ = ["read_state_dict_file"]


def read_state_dict_file(
    weights_path: str | os.PathLike, drop_prefixes: Sequence[str] = (), what: str = "weights"
) -> dict[str, torch.Tensor]:
    """Loads a state dict from a local file with ``torch.load(..., weights_only=True)``.

    The state dict may be wrapped in a dict under ``"state_dict"`` or ``"model"`` (as MedicalNet and most training
    checkpoints store it); a ``"module."`` prefix (from ``DataParallel``) is stripped, then keys starting with one of
    ``drop_prefixes`` (e.g. a classification head ``"fc."``) are dropped.

    Args:
        weights_path: path of the weights file.
        drop_prefixes: key prefixes to drop after stripping ``"module."``.
        what: what the file holds, for the error messages (e.g. ``"feature extractor weights"``).

    Returns:
        the cleaned state dict.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file cannot be loaded with ``weights_only=True`` or holds no tensor state dict.
    """
    weights_path = str(weights_path)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"{what} file not found: {weights_path}")
    try:
        obj = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling / format errors differ between torch versions
        raise ValueError(f"could not load {what} {weights_path} with weights_only=True: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{weights_path} does not hold a state dict of tensors (optionally under 'state_dict' or 'model'); "
            f"got {type(obj).__name__}."
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        key = re.sub(r"^module\.", "", str(key))
        if not key.startswith(tuple(drop_prefixes)):
            out[key] = value
    return out
