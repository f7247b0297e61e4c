"""Bundle entry point of the phantoms: generate a set of a named kind once, then reuse its datalist."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.data.phantoms.base import DATALIST_NAME
from common.data.phantoms.brain_metastases import make_brain_metastases
from common.data.phantoms.brain_mr import make_brain_mr
from common.data.phantoms.chest_ct import make_chest_ct
from common.data.phantoms.detection_difficulty import resolve_brain_metastases_difficulty, resolve_chest_ct_difficulty
from common.data.phantoms.difficulty import resolve_difficulty

__all__ = ["NO_PHANTOM", "PHANTOM_KINDS", "prepare_phantom"]

logger = logging.getLogger("common.data")  # one logger for the whole data package

PHANTOM_KINDS: dict[str, tuple[Callable[..., Path], dict[str, Any]]] = {
    "brain_mr_2d": (make_brain_mr, {"spatial_dims": 2}),
    "brain_mr_3d": (make_brain_mr, {"spatial_dims": 3}),
    "chest_ct": (make_chest_ct, {}),
    "brain_metastases": (make_brain_metastases, {}),
}
"""Phantom kinds accepted by :py:func:`prepare_phantom`: generator function and fixed keyword arguments."""

_DIFFICULTY_RESOLVERS: dict[str, Callable[[Any], Any]] = {
    "brain_mr_2d": resolve_difficulty,
    "brain_mr_3d": resolve_difficulty,
    "chest_ct": resolve_chest_ct_difficulty,
    "brain_metastases": resolve_brain_metastases_difficulty,
}
"""Each kind's resolver of a ``difficulty`` argument to its knobs (whose ``as_dict`` a set records)."""


NO_PHANTOM = ("", "none", "null", "false")


def prepare_phantom(
    dataset_dir: str | os.PathLike, kind: str | None, *, datalist: str | os.PathLike | None = None, **kwargs: Any
) -> str | None:
    """Return the datalist of a phantom set in ``dataset_dir``, generating the set first if it is missing.

    Cheap when ``<dataset_dir>/datalist.json`` exists (nothing is read or regenerated), so it can be called from a
    bundle config's ``initialize`` section. A bundle passes its ``datalist`` too: when that is another file than the
    phantom's own ``<dataset_dir>/datalist.json`` (compared as resolved paths), the user brought their own data and
    nothing is generated, whatever ``kind`` says.

    Args:
        dataset_dir: directory of the set.
        kind: one of ``"brain_mr_2d"``, ``"brain_mr_3d"``, ``"chest_ct"``, ``"brain_metastases"``; ``None`` or
            ``"none"`` (also ``"null"``, ``"false"``, ``""``) when the bundle uses the user's own datalist: nothing is
            generated (``python -m monai.bundle run`` drops ``None`` overrides, hence the strings).
        datalist: the datalist the bundle will read (its config's ``datalist``); ``None`` when unknown.
        kwargs: keyword arguments of the generator (:py:func:`make_brain_mr`, :py:func:`make_chest_ct` or
            :py:func:`make_brain_metastases`), used only when the set is generated.

    Returns:
        path of ``<dataset_dir>/datalist.json`` as a string, or ``None`` when ``kind`` says no phantom or
        ``datalist`` is another file.

    Raises:
        ValueError: for an unknown ``kind`` or keyword arguments that contradict it.
    """
    if kind is None or str(kind).strip().lower() in NO_PHANTOM:
        return None
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"Unknown phantom kind {kind!r}; expected one of {sorted(PHANTOM_KINDS)}.")
    generator, fixed = PHANTOM_KINDS[kind]
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"Phantom kind {kind!r} requires {key}={value!r}, got {kwargs[key]!r}.")
    if "datalist_name" in kwargs:
        raise ValueError(f"prepare_phantom always writes {DATALIST_NAME!r}; datalist_name cannot be given.")
    own = Path(dataset_dir).expanduser() / DATALIST_NAME
    if datalist is not None and Path(datalist).expanduser().resolve() != own.resolve():
        logger.info("Datalist %s is not the phantom's %s: no phantom data set is generated.", datalist, own)
        return None
    if own.is_file():
        _warn_if_generated_otherwise(own, kwargs, _DIFFICULTY_RESOLVERS.get(kind))
        return str(own)
    logger.info("Generating phantom data set %r in %s.", kind, own.parent)
    return str(generator(own.parent, **{**kwargs, **fixed}, datalist_name=DATALIST_NAME))


def _warn_if_generated_otherwise(
    datalist: Path, kwargs: dict[str, Any], resolve: Callable[[Any], Any] | None = None
) -> None:
    """Warn when the existing set records generator parameters other than the requested ones (it is kept as is).

    With ``resolve`` (the kind's difficulty resolver) the knob values the set records (``difficulty_knobs``) are
    compared as well, so that a set made with an earlier version of a named preset is reported, not only one made
    with another preset name.
    """
    try:
        recorded = json.loads(datalist.read_text(encoding="utf-8")).get("parameters", {})
    except (OSError, ValueError, AttributeError):
        return
    differ = {}
    # sets written before the difficulty setting existed are the default difficulty
    recorded = {"difficulty": None, **recorded} if "difficulty" in kwargs else recorded
    for key, value in kwargs.items():
        if key not in recorded:
            continue
        old = recorded[key]
        if isinstance(old, list) and not isinstance(value, (list, tuple)):
            value = [value] * len(old)  # e.g. image_size 128 -> [128, 128]
        if (list(value) if isinstance(value, tuple) else value) != old:
            differ[key] = (old, kwargs[key])
    if resolve is not None and "difficulty" not in differ and isinstance(recorded.get("difficulty_knobs"), dict):
        try:
            knobs = resolve(kwargs.get("difficulty", recorded.get("difficulty"))).as_dict()
        except (TypeError, ValueError):
            knobs = None  # an invalid request fails in the generator, not here
        old_knobs = recorded["difficulty_knobs"]
        # knobs added after the set was made are not recorded; their defaults reproduce the earlier sets
        if knobs is not None and any(k in old_knobs and old_knobs[k] != v for k, v in knobs.items()):
            differ["difficulty_knobs"] = (old_knobs, knobs)
    if differ:
        changes = ", ".join(f"{k}={old!r} (asked: {new!r})" for k, (old, new) in differ.items())
        logger.warning(
            "The phantom in %s was generated with %s and is used as it is; delete that folder to generate it with "
            "the requested parameters.",
            datalist.parent,
            changes,
        )
