"""Difficulty knobs of the brain MR phantom and their named presets (issue 20, item 1: calibrated phantom tasks).

The default phantom (``difficulty=None``) is easy on purpose: the tumour is bright in FLAIR and T2 and its enhancing
rim bright in T1c, so a few training steps separate the classes and outline the tumour. For benchmarks that must
leave room for augmentation to help, :py:func:`common.data.phantoms.make_brain_mr` takes a ``difficulty``: a preset
name of :py:data:`BRAIN_MR_PRESETS` or a mapping of :py:class:`BrainMRDifficulty` fields (unnamed fields keep their
default values, which reproduce the default phantom bit for bit).

Knobs:

- ``lesion_contrast``: scale of each tumour tissue's intensity difference from white matter, one float for all
  channels or one per channel (``t1, t1c, t2, flair``); 1 is the default contrast, 0 an invisible tumour.
- ``lesion_radius``: range of the main lobe's radius in normalised head units (the head's half-width is about
  0.8); the other lobes scale with it.
- ``texture``: standard deviation of the multiplicative tissue texture.
- ``noise``: standard deviation of the additive Gaussian noise (intensities are in [0, 1]).
- ``anatomy_spread``: scale of the ranges the head shape, position and tilt and the ventricles' size, position and
  angle are drawn from (about the ranges' centres); 1 is the default spread.

Calibration: ``scripts/calibrate_phantom.py`` (:py:mod:`common.experiments.calibration`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BRAIN_MR_PRESETS", "BrainMRDifficulty", "resolve_difficulty"]


@dataclasses.dataclass(frozen=True)
class BrainMRDifficulty:
    """Difficulty knobs of :py:func:`common.data.phantoms.make_brain_mr`; the defaults give the default phantom.

    Attributes:
        lesion_contrast: scale of the tumour tissues' intensity difference from white matter, a float or one per
            channel (``t1, t1c, t2, flair``).
        lesion_radius: ``(low, high)`` range of the main tumour lobe's radius, normalised head units.
        texture: standard deviation of the multiplicative texture field.
        noise: standard deviation of the additive Gaussian noise.
        anatomy_spread: scale of the ranges of the head and ventricle geometry draws.
    """

    lesion_contrast: float | tuple[float, ...] = 1.0
    lesion_radius: tuple[float, float] = (0.13, 0.2)
    texture: float = 0.04
    noise: float = 0.015
    anatomy_spread: float = 1.0

    def __post_init__(self) -> None:
        contrast = self.lesion_contrast
        if isinstance(contrast, Sequence) and not isinstance(contrast, str):
            contrast = tuple(float(c) for c in contrast)
            if len(contrast) != 4:
                raise ValueError(f"lesion_contrast must be a float or 4 floats (one per channel), got {contrast!r}.")
        else:
            contrast = float(contrast)  # type: ignore[arg-type]
        if min(contrast if isinstance(contrast, tuple) else (contrast,)) < 0:
            raise ValueError(f"lesion_contrast must be non-negative, got {contrast!r}.")
        radius = tuple(float(r) for r in self.lesion_radius)
        if len(radius) != 2 or not 0 < radius[0] <= radius[1] <= 0.5:
            raise ValueError(f"lesion_radius must be (low, high) with 0 < low <= high <= 0.5, got {radius!r}.")
        for name in ("texture", "noise", "anatomy_spread"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}.")
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "lesion_contrast", contrast)
        object.__setattr__(self, "lesion_radius", radius)

    def channel_contrast(self, num_channels: int = 4) -> tuple[float, ...]:
        """The lesion contrast scale of each channel."""
        if isinstance(self.lesion_contrast, tuple):
            return self.lesion_contrast
        return (float(self.lesion_contrast),) * num_channels

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready knob values (tuples as lists), as recorded in the datalist header."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


BRAIN_MR_PRESETS: dict[str, BrainMRDifficulty] = {
    "default": BrainMRDifficulty(),
    "calibrated": BrainMRDifficulty(
        lesion_contrast=0.25, lesion_radius=(0.08, 0.14), texture=0.08, noise=0.05, anatomy_spread=2.0
    ),
}
"""Named difficulty presets of the brain MR phantom."""


def resolve_difficulty(difficulty: str | Mapping[str, Any] | BrainMRDifficulty | None) -> BrainMRDifficulty:
    """Return the knobs of a preset name, a mapping of knob values or a :py:class:`BrainMRDifficulty`.

    Args:
        difficulty: ``None`` (the default phantom), a key of :py:data:`BRAIN_MR_PRESETS`, a mapping of
            :py:class:`BrainMRDifficulty` fields (others keep their defaults; a ``"preset"`` key starts from that
            preset instead), or knobs.

    Returns:
        the knobs.

    Raises:
        ValueError: for an unknown preset name or knob.
    """
    if difficulty is None:
        return BRAIN_MR_PRESETS["default"]
    if isinstance(difficulty, BrainMRDifficulty):
        return difficulty
    if isinstance(difficulty, str):
        if difficulty not in BRAIN_MR_PRESETS:
            raise ValueError(f"Unknown difficulty preset {difficulty!r}; expected one of {sorted(BRAIN_MR_PRESETS)}.")
        return BRAIN_MR_PRESETS[difficulty]
    if isinstance(difficulty, Mapping):
        values = dict(difficulty)
        base = resolve_difficulty(values.pop("preset", None))
        fields = {f.name for f in dataclasses.fields(BrainMRDifficulty)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"Unknown difficulty knobs {unknown}; expected some of {sorted(fields)}.")
        return dataclasses.replace(base, **values)
    raise ValueError(f"difficulty must be None, a preset name or a mapping of knobs, got {difficulty!r}.")
