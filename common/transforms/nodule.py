"""Nodule transforms of 3D MCGAN (Han thesis, sec. 6.2.1): VOI crop, noise box, condition tiling, paste-back.

Geometry. The thesis "crop[s]/resize[s] various nodules to ``32^3`` voxels and replace[s] them with noise boxes from a
uniform distribution between [-0.5, 0.5], while maintaining their ``64^3`` surroundings as VOIs". Here the nodule's
box (from the datalist, plus ``margin`` voxels on each side, made even per axis) is the *nodule region* of extent
``n``; the VOI is the region of extent ``2 n`` with the same centre (``voi_size / nodule_size = 2``), resampled to
``voi_size^3`` (trilinear, ``align_corners=False``), so that the nodule region becomes exactly the central
``nodule_size^3`` box of the VOI whatever the nodule's size. Parts of the VOI outside the volume are padded with
``pad_value`` (air, -1000 HU). The thesis does not say how much context a VOI holds for nodules of different sizes;
a fixed ratio keeps the nodule box at ``32^3`` as the thesis requires and is exactly invertible (paste-back resamples
the central box to the region's original extent, sec. 6.2.1: "we resample the resulting nodules to their original
resolution and map back onto the original CT scans").

Intensities. Hounsfield units are mapped linearly from the window ``hu_window = (-1000, 500)`` to ``[-1, 1]``
and clipped (:func:`hu_to_unit`, MONAI's ``ScaleIntensityRanged`` with the same numbers does the same in the
configs); the generator's ``tanh`` output is mapped back with :func:`unit_to_hu`. The window holds lung (-850 HU),
ground-glass (-600 HU) and solid (+40 HU) nodules and soft tissue; bone above 500 HU is clipped in the VOIs only,
never in the pasted volume outside the nodule region.

Paste-back (:func:`paste_nodule`). Only voxels inside the nodule region change: there the volume becomes
``w * generated + (1 - w) * original`` with a weight ``w`` that is 1 in the interior and ramps linearly to
``1 / (blend_width + 1)`` on the region's outermost ``blend_width`` voxel layers (the thesis does not describe any
blending; a short ramp avoids a visible seam where the generated box meets the original tissue). The result is clipped
to the volume's own HU range, and the affine is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common.data.preprocessing import lung_mask
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_tensor
from scipy import ndimage

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_HU_WINDOW",
    "NODULE_CONDITIONS",
    "ConditionAugmentd",
    "NoduleVOId",
    "NoiseBoxd",
    "PasteNoduled",
    "TileConditionsd",
    "augment_box",
    "central_box",
    "condition_vector",
    "crop_voi",
    "hu_to_unit",
    "lung_mask",
    "nodule_entries",
    "nodule_region",
    "paste_nodule",
    "sample_lung_box",
    "unit_to_hu",
]

NODULE_SIZES: tuple[str, ...] = ("small", "medium", "large")
NODULE_ATTENUATIONS: tuple[str, ...] = ("solid", "part-solid", "ground-glass")
NODULE_CONDITIONS: tuple[str, ...] = NODULE_SIZES + NODULE_ATTENUATIONS
"""The 6 one-hot condition channels in order: 3 sizes, then 3 attenuations (sec. 6.2.1)."""

DEFAULT_HU_WINDOW: tuple[float, float] = (-1000.0, 500.0)
"""HU mapped to ``[-1, 1]`` for the networks."""


# ---------------------------------------------------------------------------------------------------------------
# intensities and conditions
# ---------------------------------------------------------------------------------------------------------------
def hu_to_unit(x: Any, hu_window: Sequence[float] = DEFAULT_HU_WINDOW) -> Any:
    """Map Hounsfield units linearly from ``hu_window`` to ``[-1, 1]`` and clip (numpy arrays or tensors)."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    y = (x - lo) / (hi - lo) * 2.0 - 1.0
    return y.clip(-1.0, 1.0)


def unit_to_hu(y: Any, hu_window: Sequence[float] = DEFAULT_HU_WINDOW) -> Any:
    """Inverse of :func:`hu_to_unit` on ``[-1, 1]`` (values outside are clipped first)."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    return (y.clip(-1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo


def condition_vector(size: str, attenuation: str) -> np.ndarray:
    """One-hot ``(6,)`` float32 vector: size (small, medium, large) then attenuation (solid, part-solid, GGN)."""
    if size not in NODULE_SIZES:
        raise ValueError(f"unknown nodule size {size!r}; expected one of {NODULE_SIZES}.")
    if attenuation not in NODULE_ATTENUATIONS:
        raise ValueError(f"unknown nodule attenuation {attenuation!r}; expected one of {NODULE_ATTENUATIONS}.")
    vector = np.zeros(len(NODULE_CONDITIONS), dtype=np.float32)
    vector[NODULE_SIZES.index(size)] = 1.0
    vector[len(NODULE_SIZES) + NODULE_ATTENUATIONS.index(attenuation)] = 1.0
    return vector


def nodule_entries(
    entries: Sequence[Mapping[str, Any]], box_key: str = "box", known_only: bool = True
) -> list[dict[str, Any]]:
    """One entry per nodule from datalist entries with lists of boxes, sizes and attenuations.

    A nodule whose size or attenuation is not one of the generator's conditions (:data:`NODULE_SIZES`,
    :data:`NODULE_ATTENUATIONS`) cannot condition the 3D MCGAN: with ``known_only`` it is left out, with one warning
    that counts the values found (the LUNA16 converter writes ``"unknown"`` for a nodule that too few LIDC-IDRI
    readers rated, see :py:mod:`common.data.converters.luna16`).

    Args:
        entries: datalist entries ``{"image", "box": [[x1, y1, z1, x2, y2, z2], ...], "size": [...],
            "attenuation": [...], ...}``.
        box_key: key of the boxes.
        known_only: leave out the nodules with a size or attenuation outside the conditions (else keep them all).

    Returns:
        entries ``{"image", "box": [6 ints], "size": str, "attenuation": str, "nodule_index": i, "patient"?}``.

    Raises:
        ValueError: an entry's lists differ in length, or ``known_only`` leaves no nodule.
    """
    out = []
    left_out: dict[str, int] = {}
    for entry in entries:
        boxes = entry.get(box_key) or []
        sizes, attenuations = entry.get("size") or [], entry.get("attenuation") or []
        if len(sizes) != len(boxes) or len(attenuations) != len(boxes):
            raise ValueError(
                f"entry {entry.get('image')!r} has {len(boxes)} boxes but {len(sizes)} sizes and "
                f"{len(attenuations)} attenuations."
            )
        for i, (box, size, attenuation) in enumerate(zip(boxes, sizes, attenuations)):
            unknown = [
                f"{name} {value!r}"
                for name, value, known in (
                    ("size", size, NODULE_SIZES),
                    ("attenuation", attenuation, NODULE_ATTENUATIONS),
                )
                if value not in known
            ]
            if known_only and unknown:
                for reason in unknown:
                    left_out[reason] = left_out.get(reason, 0) + 1
                continue
            item = {"image": entry["image"], "box": [int(v) for v in box], "size": size, "attenuation": attenuation}
            item["nodule_index"] = i
            if "patient" in entry:
                item["patient"] = entry["patient"]
            out.append(item)
    if left_out:
        counts = ", ".join(f"{n} with {reason}" for reason, n in sorted(left_out.items()))
        message = (
            f"nodules left out: {counts} (the conditions are sizes {list(NODULE_SIZES)} and attenuations "
            f"{list(NODULE_ATTENUATIONS)})"
        )
        if not out:
            raise ValueError(f"no nodule has a known size and attenuation; {message}.")
        logger.warning("%d nodules kept; %s.", len(out), message)
    return out


# ---------------------------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------------------------
def nodule_region(box: Sequence[float], margin: int = 1, min_extent: int = 2) -> np.ndarray:
    """The nodule region of a box: the box plus ``margin`` voxels per side, extended to an even extent per axis.

    Args:
        box: ``[x1, y1, z1, x2, y2, z2]`` (or 2D ``[x1, y1, x2, y2]``), start inclusive, end exclusive.
        margin: voxels added on each side.
        min_extent: smallest extent per axis (rounded up to even).

    Returns:
        int64 array ``(2, d)``: start and end (exclusive) per axis; ``end - start`` is even and ``>= min_extent``.
    """
    box = np.asarray(box, dtype=np.float64)
    d = box.size // 2
    start = np.floor(box[:d]).astype(np.int64) - margin
    end = np.ceil(box[d:]).astype(np.int64) + margin
    extent = np.maximum(end - start, min_extent)
    extent += extent % 2
    centre2 = start + end  # twice the centre, kept integral
    start = (centre2 - extent) // 2
    return np.stack([start, start + extent])


def central_box(voi_size: int, nodule_size: int, spatial_dims: int) -> tuple[slice, ...]:
    """Slices of the central ``nodule_size`` box of a ``voi_size`` VOI."""
    lo = (voi_size - nodule_size) // 2
    return (slice(lo, lo + nodule_size),) * spatial_dims


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize ``(C, *spatial)`` with linear interpolation (``align_corners=False``: voxel boxes map to boxes)."""
    mode = "trilinear" if x.ndim == 4 else "bilinear"
    return F.interpolate(x[None].float(), size=tuple(int(s) for s in size), mode=mode, align_corners=False)[0]


def crop_voi(
    image: Any, region: np.ndarray, voi_size: int = 64, nodule_size: int = 32, pad_value: float = -1000.0
) -> torch.Tensor:
    """Crop the VOI around a nodule region and resample it so that the region is the central ``nodule_size`` box.

    Args:
        image: channel-first ``(C, *spatial)`` array or tensor.
        region: ``(2, d)`` from :func:`nodule_region`.
        voi_size: VOI size per axis (64).
        nodule_size: size of the central nodule box (32); ``voi_size / nodule_size`` is the context ratio.
        pad_value: value of VOI voxels outside the image.

    Returns:
        float32 tensor ``(C, voi_size, ...)``.
    """
    x = convert_to_tensor(image, track_meta=False).float()
    start, end = region
    extent = end - start
    half = extent * (voi_size - nodule_size) // (2 * nodule_size)  # context each side (extent/2 for ratio 2)
    v_start, v_end = start - half, end + half
    shape = np.array(x.shape[1:])
    src_lo, src_hi = np.maximum(v_start, 0), np.minimum(v_end, shape)
    out = torch.full((x.shape[0], *(v_end - v_start).tolist()), float(pad_value), dtype=x.dtype)
    if np.all(src_hi > src_lo):
        src = (slice(None),) + tuple(slice(int(a), int(b)) for a, b in zip(src_lo, src_hi))
        dst = (slice(None),) + tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(src_lo, src_hi, v_start))
        out[dst] = x[src]
    return _resize(out, [voi_size] * len(shape))


def augment_box(box: Sequence[float], rng: np.random.RandomState, shift: float = 0.1, zoom: float = 0.1) -> list[int]:
    """Test-time condition augmentation (sec. 6.2.1): random shift and zoom of a box, each up to a fraction.

    Per axis, the centre moves by ``U(-shift, shift) * extent`` and the extent is scaled by ``U(1 - zoom, 1 + zoom)``
    (independent per axis, like the width/height/depth shift and zoom of the thesis's augmentation); the result is
    rounded to voxels and keeps an extent of at least 1.

    Args:
        box: ``[x1, y1, z1, x2, y2, z2]`` (2D: ``[x1, y1, x2, y2]``).
        rng: random state.
        shift: largest shift as a fraction of the extent.
        zoom: largest relative change of the extent.

    Returns:
        the augmented box as ints.
    """
    b = np.asarray(box, dtype=np.float64)
    d = b.size // 2
    extent = b[d:] - b[:d]
    centre = (b[:d] + b[d:]) / 2 + rng.uniform(-shift, shift, d) * extent
    new_extent = np.maximum(np.round(extent * rng.uniform(1 - zoom, 1 + zoom, d)), 1)
    start = np.round(centre - new_extent / 2)
    return [int(v) for v in np.concatenate([start, start + new_extent])]


# ---------------------------------------------------------------------------------------------------------------
# dictionary transforms
# ---------------------------------------------------------------------------------------------------------------
class NoduleVOId(MapTransform):
    """Crop the VOI around an entry's nodule box (one box per entry, see :func:`nodule_entries`).

    The image under each key (channel-first HU volume) is replaced by its VOI ``(C, voi_size^d)`` in which the
    nodule region (box + ``margin``) is the central ``nodule_size^d`` box; the region ``(2, d)`` is stored under
    ``region_key`` for the paste-back.

    Args:
        keys: image keys.
        box_key: key of the box ``[x1, y1, z1, x2, y2, z2]`` (a list of one box is accepted).
        voi_size: VOI size (64 in the thesis).
        nodule_size: nodule box size (32 in the thesis).
        margin: voxels added around the box before resampling.
        pad_value: value outside the volume (air).
        region_key: key of the stored region.
    """

    def __init__(
        self,
        keys: KeysCollection,
        box_key: str = "box",
        voi_size: int = 64,
        nodule_size: int = 32,
        margin: int = 1,
        pad_value: float = -1000.0,
        region_key: str = "nodule_region",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0 < nodule_size < voi_size:
            raise ValueError(f"need 0 < nodule_size < voi_size, got {nodule_size} and {voi_size}.")
        self.box_key, self.voi_size, self.nodule_size = box_key, int(voi_size), int(nodule_size)
        self.margin, self.pad_value, self.region_key = int(margin), float(pad_value), region_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        box = np.asarray(d[self.box_key], dtype=np.float64)
        if box.ndim == 2:
            if box.shape[0] != 1:
                raise ValueError(f"NoduleVOId needs one box per entry, got {box.shape[0]}; use nodule_entries().")
            box = box[0]
        region = nodule_region(box, self.margin)
        for key in self.key_iterator(d):
            d[key] = crop_voi(d[key], region, self.voi_size, self.nodule_size, self.pad_value)
        d[self.region_key] = region
        return d


class NoiseBoxd(Randomizable, MapTransform):
    """Replace the central nodule box of a VOI by uniform noise in ``noise_range`` (the generator input).

    The VOI (in ``[-1, 1]``) is kept unchanged under ``target_key`` as the real sample; the noise-boxed copy
    replaces it under the key. Noise boxes "instead of boxes filled with the same voxel values improve the training
    robustness" (sec. 6.2.1).

    Args:
        keys: VOI keys (one).
        nodule_size: size of the central box.
        noise_range: bounds of the uniform noise (``[-0.5, 0.5]``).
        target_key: key of the untouched VOI.
    """

    def __init__(
        self,
        keys: KeysCollection,
        nodule_size: int = 32,
        noise_range: Sequence[float] = (-0.5, 0.5),
        target_key: str = "target",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.nodule_size, self.noise_range, self.target_key = int(nodule_size), tuple(noise_range), target_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            voi = convert_to_tensor(d[key], track_meta=False).float()
            d[self.target_key] = voi
            noisy = voi.clone()
            box = (slice(None),) + central_box(voi.shape[1], self.nodule_size, voi.ndim - 1)
            lo, hi = self.noise_range
            noise = self.R.uniform(lo, hi, size=noisy[box].shape).astype(np.float32)
            noisy[box] = torch.from_numpy(noise)
            d[key] = noisy
        return d


class TileConditionsd(MapTransform):
    """Concatenate the 6 size/attenuation one-hot conditions, tiled in space, to the image channels.

    ``(1, *spatial)`` becomes ``(7, *spatial)`` (sec. 6.2.1: "we concatenate the VOIs with 6 size/attenuation
    conditions tiled to ``64^3`` voxels"). The ``(6,)`` vector is also stored under ``condition_key`` (the nodule
    discriminator's condition).

    Args:
        keys: image keys.
        size_key: key of the size class.
        attenuation_key: key of the attenuation class.
        condition_key: key of the stored condition vector.
    """

    def __init__(
        self,
        keys: KeysCollection,
        size_key: str = "size",
        attenuation_key: str = "attenuation",
        condition_key: str = "condition",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.size_key, self.attenuation_key, self.condition_key = size_key, attenuation_key, condition_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        vector = torch.from_numpy(condition_vector(d[self.size_key], d[self.attenuation_key]))
        d[self.condition_key] = vector
        for key in self.key_iterator(d):
            x = convert_to_tensor(d[key], track_meta=False).float()
            tiled = vector.reshape(-1, *([1] * (x.ndim - 1))).expand(-1, *x.shape[1:])
            d[key] = torch.cat([x, tiled.to(x.dtype)], dim=0)
        return d


class ConditionAugmentd(Randomizable, MapTransform):
    """Random shift and zoom of the boxes under ``keys``, each up to 10 % (:func:`augment_box`, sec. 6.2.1).

    A key may hold one box or a list of boxes.

    Args:
        keys: box keys.
        shift: largest shift as a fraction of the box extent.
        zoom: largest relative change of the extent.
    """

    def __init__(
        self, keys: KeysCollection, shift: float = 0.1, zoom: float = 0.1, allow_missing_keys: bool = False
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.shift, self.zoom = float(shift), float(zoom)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            boxes = np.asarray(d[key], dtype=np.float64)
            if boxes.ndim == 1:
                d[key] = augment_box(boxes, self.R, self.shift, self.zoom)
            else:
                d[key] = [augment_box(b, self.R, self.shift, self.zoom) for b in boxes]
        return d


# ---------------------------------------------------------------------------------------------------------------
# paste-back and placement
# ---------------------------------------------------------------------------------------------------------------
def _blend_weights(extent: Sequence[int], blend_width: int) -> torch.Tensor:
    """Weights 1 inside, ramping to ``1 / (blend_width + 1)`` on the outermost ``blend_width`` layers."""
    weight = torch.ones(tuple(int(e) for e in extent))
    if blend_width <= 0:
        return weight
    for axis, n in enumerate(extent):
        idx = torch.arange(int(n), dtype=torch.float32)
        depth = torch.minimum(idx, n - 1 - idx)  # 0 on the outermost layer
        ramp = ((depth + 1) / (blend_width + 1)).clamp(max=1.0)
        shape = [1] * len(extent)
        shape[axis] = int(n)
        weight = torch.minimum(weight, ramp.reshape(shape))
    return weight


def paste_nodule(
    volume: Any,
    generated: Any,
    region: np.ndarray,
    nodule_size: int = 32,
    hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
    blend_width: int = 1,
) -> torch.Tensor:
    """Resample a generated nodule box to a region's extent and place it into the volume (HU).

    Args:
        volume: channel-first HU volume ``(C, *spatial)`` (array, tensor or MetaTensor; its affine is kept).
        generated: either the generator's VOI ``(C, voi^d)`` in ``[-1, 1]`` (its central ``nodule_size`` box is
            used) or the nodule box ``(C, nodule_size^d)`` itself.
        region: ``(2, d)`` nodule region (:func:`nodule_region`); parts outside the volume are dropped.
        nodule_size: size of the central box.
        hu_window: the window of :func:`hu_to_unit` used in training.
        blend_width: voxel layers at the region's border blended with the original (0: hard paste).

    Returns:
        the new volume, same type (MetaTensor metadata and affine kept), shape and dtype; voxels outside ``region``
        are identical to the input; values are clipped to the input volume's range.
    """
    out = volume.clone() if isinstance(volume, torch.Tensor) else torch.as_tensor(np.array(volume))
    g = convert_to_tensor(generated, track_meta=False).float()
    d = out.ndim - 1
    if g.shape[1] != nodule_size:
        g = g[(slice(None),) + central_box(g.shape[1], nodule_size, d)]
    start, end = np.asarray(region[0]), np.asarray(region[1])
    nodule = unit_to_hu(_resize(g, (end - start).tolist()), hu_window)
    weight = _blend_weights((end - start).tolist(), blend_width)
    shape = np.array(out.shape[1:])
    lo, hi = np.maximum(start, 0), np.minimum(end, shape)
    if np.any(hi <= lo):
        return out
    dst = (slice(None),) + tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    src = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
    original = out[dst].float()
    vmin, vmax = float(out.min()), float(out.max())
    blended = weight[src] * nodule[(slice(None),) + src] + (1 - weight[src]) * original
    out[dst] = blended.clamp(vmin, vmax).to(out.dtype)
    return out


class PasteNoduled(MapTransform):
    """Dictionary version of :func:`paste_nodule`: paste ``data[nodule_key]`` into each volume under ``keys``.

    Args:
        keys: volume keys.
        nodule_key: key of the generated VOI or nodule box in ``[-1, 1]``.
        region_key: key of the ``(2, d)`` nodule region in the volume's voxel coordinates.
        nodule_size, hu_window, blend_width: as in :func:`paste_nodule`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        nodule_key: str = "pred",
        region_key: str = "nodule_region",
        nodule_size: int = 32,
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        blend_width: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.nodule_key, self.region_key = nodule_key, region_key
        self.nodule_size, self.hu_window, self.blend_width = int(nodule_size), tuple(hu_window), int(blend_width)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = paste_nodule(
                d[key], d[self.nodule_key], d[self.region_key], self.nodule_size, self.hu_window, self.blend_width
            )
        return d


def sample_lung_box(
    lung: np.ndarray,
    extent: Sequence[int],
    rng: np.random.RandomState,
    occupied: Sequence[Sequence[float]] = (),
    gap: int = 2,
    min_fraction: float = 1.0,
) -> list[int] | None:
    """A random box of the given extent lying inside the lung mask and away from the ``occupied`` boxes.

    Args:
        lung: boolean mask ``(*spatial)``.
        extent: box extent per axis (voxels).
        rng: random state.
        occupied: boxes ``[x1, y1, z1, x2, y2, z2]`` to keep ``gap`` voxels away from.
        gap: free voxels between boxes.
        min_fraction: smallest fraction of the box's voxels that must lie in the lung (1: all of them).

    Returns:
        ``[x1, y1, z1, x2, y2, z2]`` or ``None`` when no position fits.
    """
    extent = np.asarray(extent, dtype=np.int64)
    d = lung.ndim
    # a box with start s fits when the lung holds enough of [s, s + extent): mean of the mask over the box window
    fraction = ndimage.uniform_filter(lung.astype(np.float32), size=tuple(extent), mode="constant", cval=0.0)
    inside = fraction >= min_fraction - 1e-4
    starts = np.argwhere(inside) - (extent // 2)  # the filter centres the window at extent // 2
    shape = np.array(lung.shape)
    starts = starts[np.all((starts >= 0) & (starts + extent <= shape), axis=1)]
    for box in occupied:
        b = np.asarray(box, dtype=np.float64)
        lo, hi = b[:d] - gap - extent, b[d:] + gap
        clash = np.all((starts > lo) & (starts < hi), axis=1)
        starts = starts[~clash]
    if len(starts) == 0:
        return None
    start = starts[rng.randint(len(starts))]
    return [int(v) for v in np.concatenate([start, start + extent])]
