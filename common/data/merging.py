"""One datalist from several (Han's thesis sec. 4.2: tumour and non-tumour images are generated and refined
separately, by one PGGAN/MUNIT/SimGAN per class, and used together; Table 2's "classic DA & GAN-based DA" setups add
both kinds of images).

:func:`merge_datalists` concatenates one section of several Decathlon-style datalists, optionally repeating a
datalist's entries, into a new JSON file whose paths are relative to it (the project's datalist contract).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from common.utils import atomic_write_json

__all__ = ["NOISE_SOURCE", "PATH_KEYS", "merge_datalists"]

PATH_KEYS = ("image", "label", "source")
"""Entry keys holding file paths (a path or a list of paths) relative to their datalist file."""

NOISE_SOURCE = "noise"
"""The ``source`` of an entry generated from noise alone (PGGAN, DCGAN, StyleGAN2...): a marker, not a file."""


def _rebase(value: Any, src_dir: str, dst_dir: str) -> Any:
    if isinstance(value, (list, tuple)):
        return [_rebase(v, src_dir, dst_dir) for v in value]
    if not isinstance(value, str) or value == NOISE_SOURCE:  # the marker names no file
        return value
    path = value if os.path.isabs(value) else os.path.join(src_dir, value)
    return os.path.relpath(os.path.normpath(path), dst_dir)


def merge_datalists(
    datalists: Sequence[str | os.PathLike],
    output_file: str | os.PathLike,
    section: str = "training",
    repeats: Sequence[int] | None = None,
) -> str:
    """Writes ``section`` of every datalist, in order (datalist ``i`` repeated ``repeats[i]`` times), to one file.

    Args:
        datalists: the datalist JSON files.
        output_file: the merged datalist (written atomically); its ``section`` holds the entries and ``"merged_from"``
            lists the sources with their entry counts and repeats.
        section: the section read from each datalist and written.
        repeats: how many times each datalist's entries are written (default 1 each).

    Returns:
        ``output_file`` as a string.

    Raises:
        FileNotFoundError: when a datalist does not exist.
        ValueError: for no datalist, a bad ``repeats``, or a datalist without entries in ``section``.
    """
    if not datalists:
        raise ValueError("merge_datalists needs at least one datalist.")
    repeats = [1] * len(datalists) if repeats is None else [int(r) for r in repeats]
    if len(repeats) != len(datalists) or any(r < 1 for r in repeats):
        raise ValueError(f"repeats must hold one positive integer per datalist, got {repeats} for {len(datalists)}.")
    out_dir = os.path.dirname(os.path.abspath(os.fspath(output_file)))
    entries: list[dict] = []
    sources = []
    for path, times in zip(datalists, repeats):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"datalist to merge not found: {path!r}.")
        with open(path) as f:
            items = json.load(f).get(section) or []
        if not items:
            raise ValueError(f"{path}: no entries in section {section!r} to merge.")
        src_dir = os.path.dirname(os.path.abspath(path))
        rebased = [{k: _rebase(v, src_dir, out_dir) if k in PATH_KEYS else v for k, v in e.items()} for e in items]
        entries += rebased * times
        sources.append({"datalist": os.path.abspath(path), "entries": len(items), "repeats": times})
    atomic_write_json({section: entries, "merged_from": sources}, output_file)
    return os.fspath(output_file)
