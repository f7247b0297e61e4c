"""A random shift by a fraction of each image's own size, for volumes of any size (real scans differ in size).

Han's thesis (sec. 6.2.2) augments the 3D detector's training scans by "width/height/depth shift up to 15 %".
MONAI's ``RandAffined`` takes its ``translate_range`` in voxels, fixed when the transform is built; with real scans of
different sizes the shift must follow each scan. :class:`RandShiftFractiond` sets the range from the size of the
image it is given, then draws and applies the shift as ``RandAffined`` does (same random state, same modes).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import RandAffined
from monai.utils import ensure_tuple_rep

__all__ = ["RandShiftFractiond"]


class RandShiftFractiond(RandAffined):
    """Shift every key by one random translation of up to ``fraction`` of the first key's size along each axis.

    Args:
        keys: the images (and masks) shifted together, channel-first ``(C, *spatial)``.
        fraction: the largest shift per spatial axis as a fraction of that axis' size (one number or one per axis),
            drawn uniformly in ``[-fraction * size, fraction * size]`` voxels.
        prob: probability of shifting a sample.
        mode: interpolation per key (e.g. ``["bilinear", "nearest"]`` for an image and its mask).
        padding_mode: how the uncovered border is filled.
        allow_missing_keys: skip missing keys.
        kwargs: further arguments of ``RandAffined`` (no ``translate_range``: it comes from ``fraction``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        fraction: float | Sequence[float],
        prob: float = 0.1,
        mode: Any = "bilinear",
        padding_mode: Any = "zeros",
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        if "translate_range" in kwargs:
            raise ValueError("RandShiftFractiond sets translate_range from `fraction`; do not pass it.")
        fractions = [float(f) for f in (fraction if isinstance(fraction, Sequence) else [fraction])]
        if any(f < 0 for f in fractions):
            raise ValueError(f"fraction must be >= 0, got {fraction!r}.")
        super().__init__(
            keys, prob=prob, mode=mode, padding_mode=padding_mode, allow_missing_keys=allow_missing_keys, **kwargs
        )
        self.fraction = fraction

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        d = dict(data)
        key = self.first_key(d)
        if key != ():
            shape = d[key].shape[1:]
            fractions = ensure_tuple_rep(self.fraction, len(shape))
            self.rand_affine.rand_affine_grid.translate_range = tuple(float(f) * s for f, s in zip(fractions, shape))
        return super().__call__(d, lazy=lazy)
