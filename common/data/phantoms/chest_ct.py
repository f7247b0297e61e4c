"""Chest CT phantom in Hounsfield units with lung nodules of three sizes and three attenuations, and their boxes.

Each case is one patient: a body with a fat layer, ribs, a spine, two lungs with texture and vessel-like tubes
around the heart, and a trachea, with non-overlapping nodules placed inside the lungs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.data.phantoms.base import (
    DATALIST_NAME,
    DEFAULT_SPLIT_FRACTIONS,
    _as_size,
    _as_spacing,
    _atomic_directory,
    _bounding_box,
    _check_fractions,
    _check_seed,
    _coordinates,
    _ellipsoid_distance,
    _header,
    _local_block,
    _patient_rngs,
    _save_nifti,
    _smooth_field,
    _write_datalist,
)
from common.data.phantoms.brain_anatomy import _spread_uniform
from common.data.phantoms.detection_difficulty import CHEST_CT_PRESETS, ChestCTDifficulty, resolve_chest_ct_difficulty
from common.data.splits import split_patients
from scipy import ndimage

__all__ = ["NODULE_ATTENUATIONS", "NODULE_SIZES", "make_chest_ct"]

NODULE_SIZES: tuple[str, ...] = ("small", "medium", "large")
"""Nodule size classes of the chest CT phantom (about 3, 5 and 8 voxels in diameter at 64^3)."""

NODULE_ATTENUATIONS: tuple[str, ...] = ("solid", "part-solid", "ground-glass")
"""Nodule attenuation classes of the chest CT phantom."""

# chest CT Hounsfield units
_HU_AIR, _HU_LUNG, _HU_FAT, _HU_SOFT, _HU_BONE, _HU_CORTEX = -1000.0, -850.0, -100.0, 40.0, 300.0, 650.0
_HU_NODULE = {"solid": 40.0, "ground-glass": -600.0}
_NODULE_DIAMETER_64 = {"small": 3.0, "medium": 5.0, "large": 8.0}  # voxels at a 64^3 volume
_NODULE_MIN_RADIUS = {"small": 1.0, "medium": 2.0, "large": 3.0}  # voxels, keeps the size classes apart


def _chest_anatomy(
    shape: Sequence[int], rng: np.random.Generator, difficulty: ChestCTDifficulty | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Chest CT anatomy in Hounsfield units (before nodules, blur and noise).

    Args:
        shape: volume shape (X, Y, Z); axis 1 runs anterior (low) to posterior (high), axis 2 inferior to superior.
        rng: random generator of the case.
        difficulty: knobs ``anatomy_spread`` and ``lung_texture``; ``None``: the default phantom's.

    Returns:
        float32 HU volume of ``shape`` and the boolean lung mask of ``shape``.
    """
    x, y, _ = (c[..., None] for c in _coordinates(shape[:2]))  # (X, 1, 1), (1, Y, 1)
    z = ((np.arange(shape[2], dtype=np.float32) - (shape[2] - 1) / 2.0) / (shape[2] / 2.0)).reshape(1, 1, -1)
    unit = min(shape[:2]) / 2.0
    knobs = CHEST_CT_PRESETS["default"] if difficulty is None else difficulty
    spread = knobs.anatomy_spread
    s = _spread_uniform(rng, 0.93, 1.02, spread)
    full = tuple(shape)

    body = np.sqrt((x / (0.92 * s)) ** 2 + (y / (0.70 * s)) ** 2)  # (X, Y, 1), a cylinder along z
    hu = np.full(full, _HU_AIR, dtype=np.float32)
    hu[np.broadcast_to(body < 1.0, full)] = _HU_SOFT
    hu[np.broadcast_to((body > 0.88) & (body < 0.97), full)] = _HU_FAT

    # ribs: oblique bands on a ring inside the body wall, absent at the anterior midline
    phase = rng.uniform(0, 2 * np.pi)
    ribs = (body > 0.78) & (body < 0.84) & ~((np.abs(x) < 0.15) & (y < 0))
    ribs = ribs & (np.cos(2 * np.pi * (1.8 * z + 0.25 * y) + phase) > 0.55)
    hu[ribs] = _HU_CORTEX

    # spine: vertebral body with cortical rim and discs, spinal canal with a posterior arch
    vertebra = np.sqrt(x**2 + (y - 0.36 * s) ** 2) / (0.1 * s)
    discs = np.cos(2 * np.pi * 2.2 * z + phase) > 0.8
    hu[np.broadcast_to(vertebra < 1.0, full)] = _HU_BONE
    hu[np.broadcast_to((vertebra > 0.8) & (vertebra < 1.0), full)] = _HU_CORTEX
    hu[np.broadcast_to(vertebra < 0.95, full) & np.broadcast_to(discs, full)] = 80.0
    canal = np.sqrt(x**2 + (y - 0.53 * s) ** 2) / (0.04 * s)
    hu[np.broadcast_to((canal >= 1.0) & (canal < 1.7), full)] = _HU_CORTEX
    hu[np.broadcast_to(canal < 1.0, full)] = 15.0

    # lungs, minus the heart; trachea above the carina
    coords = [x, y, z]
    lungs = np.zeros(full, dtype=bool)
    for side in (-1.0, 1.0):
        centre = (side * 0.37 * s, -0.02 * s, _spread_uniform(rng, 0.15, 0.25, spread))
        radii = (0.29 * s * _spread_uniform(rng, 0.95, 1.05, spread), 0.5 * s, _spread_uniform(rng, 1.0, 1.1, spread))
        lungs |= _ellipsoid_distance(coords, centre, radii) < 1.0
    heart = _ellipsoid_distance(coords, (0.1 * s, -0.18 * s, -0.5), (0.3 * s, 0.28 * s, 0.5)) < 1.0
    lungs &= ~heart
    texture = _smooth_field(rng, full, max(0.02 * unit, 0.7))
    hu[lungs] = _HU_LUNG + knobs.lung_texture * texture[lungs]
    trachea = (np.sqrt(x**2 + (y - 0.1 * s) ** 2) < 0.05 * s) & (z > 0.35)
    hu[np.broadcast_to(trachea, full)] = _HU_AIR

    # vessels: intersections of the zero sets of two smooth fields (tubes), thicker towards the hila
    hilum = np.exp(-((np.abs(x) - 0.2 * s) ** 2 + (y + 0.02) ** 2) / 0.08)
    thickness = 0.16 + 0.24 * np.broadcast_to(hilum, full)
    sigma = max(0.06 * unit, 1.0)
    first, second = _smooth_field(rng, full, sigma), _smooth_field(rng, full, sigma)
    vessels = (np.abs(first) < thickness) & (np.abs(second) < thickness)
    hu[vessels & lungs] = _HU_SOFT
    return hu, lungs


def _nodule_radii(size: str, unit: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Per-axis nodule radii in voxels for a size class, scaled with ``unit = min(shape) / 64`` and ``scale``."""
    radius = 0.5 * _NODULE_DIAMETER_64[size] * scale * unit * rng.uniform(0.92, 1.08)
    return np.maximum(radius * rng.uniform(0.92, 1.08, size=3), _NODULE_MIN_RADIUS[size])


def _add_nodules(
    hu: np.ndarray,
    lungs: np.ndarray,
    rng: np.random.Generator,
    num_nodules: int,
    difficulty: ChestCTDifficulty | None = None,
) -> tuple[np.ndarray, list[list[int]], list[str], list[str]]:
    """Place non-overlapping nodules inside the lungs, in place.

    Args:
        hu: HU volume of shape (X, Y, Z), modified in place.
        lungs: boolean lung mask of the same shape.
        rng: random generator of the case.
        num_nodules: number of nodules (fewer if the lungs have no room left).
        difficulty: knobs ``nodule_contrast``, ``nodule_scale``, ``nodule_texture`` and ``size_weights``;
            ``None``: the default phantom's.

    Returns:
        uint8 nodule mask (1 inside nodules), the boxes ``[x1, y1, z1, x2, y2, z2]`` (start inclusive, end
        exclusive), and the size and attenuation class of each nodule.
    """
    shape = hu.shape
    unit = min(shape) / 64.0
    knobs = CHEST_CT_PRESETS["default"] if difficulty is None else difficulty
    # attenuations: the lung's HU plus the scaled difference (exactly the default's values at contrast 1)
    solid = _HU_LUNG + knobs.nodule_contrast * (_HU_NODULE["solid"] - _HU_LUNG)
    ground_glass = _HU_LUNG + knobs.nodule_contrast * (_HU_NODULE["ground-glass"] - _HU_LUNG)
    mask = np.zeros(shape, dtype=np.uint8)
    room = ndimage.distance_transform_edt(lungs)
    boxes: list[list[int]] = []
    sizes: list[str] = []
    attenuations: list[str] = []
    taken: list[tuple[np.ndarray, float]] = []
    for _ in range(num_nodules):
        if knobs.size_weights is None:
            size = NODULE_SIZES[rng.integers(len(NODULE_SIZES))]
        else:
            size = NODULE_SIZES[rng.choice(len(NODULE_SIZES), p=knobs.size_weights)]
        attenuation = NODULE_ATTENUATIONS[rng.integers(len(NODULE_ATTENUATIONS))]
        radii = _nodule_radii(size, unit, rng, knobs.nodule_scale)
        radius = float(radii.max())
        candidates = np.empty((0, 3), dtype=np.int64)
        for clearance in (radius + 1.5, 0.6 * radius + 1.0):
            candidates = np.argwhere(room > clearance)
            for centre, other in taken:
                candidates = candidates[np.linalg.norm(candidates - centre, axis=1) > radius + other + 3.0]
            if len(candidates):
                break
        if len(candidates) == 0:
            break
        centre = candidates[rng.integers(len(candidates))].astype(np.float32)
        block, start = _local_block(shape, centre, radius)
        local_grid = np.ogrid[tuple(slice(s.start, s.stop) for s in block)]
        distance = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(local_grid, centre, radii)))
        inside = distance <= 1.0
        region = hu[block]
        texture = knobs.nodule_texture * rng.standard_normal(region.shape).astype(np.float32)
        if attenuation == "solid":
            region[inside] = solid + texture[inside]
        else:
            region[inside] = ground_glass + 2.0 * texture[inside]
            if attenuation == "part-solid":
                core = distance <= 0.55
                region[core] = solid + texture[core]
        mask[block][inside] = 1
        boxes.append(_bounding_box(inside, start))
        sizes.append(size)
        attenuations.append(attenuation)
        taken.append((centre, radius))
    return mask, boxes, sizes, attenuations


def make_chest_ct(
    output_dir: str | os.PathLike,
    num_cases: int = 12,
    image_size: int | Sequence[int] = 64,
    nodules_per_case: int | Sequence[int] = (1, 3),
    seed: int = 0,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    spacing: float | Sequence[float] = 1.0,
    datalist_name: str = DATALIST_NAME,
    difficulty: str | Mapping[str, Any] | ChestCTDifficulty | None = None,
) -> Path:
    """Generate a chest CT phantom set with lung nodules and their bounding boxes.

    Volumes are in Hounsfield units, float32, clipped to [-1024, 3071]: air -1000, an elliptical body of soft
    tissue (about 40 HU) with a subcutaneous fat layer (-100 HU), ribs and a spine (+300 HU with a +650 HU
    cortex), two lungs (about -850 HU with a fine texture and vessel-like tubes) around the heart, and a trachea.
    Each case (one case per patient) has nodules placed inside the lungs without overlap, each of a random size
    class (``small``, ``medium``, ``large``: about 3, 5 and 8 voxels in diameter at 64^3, scaled with the smallest
    dimension) and attenuation class (``solid`` about +40 HU, ``part-solid``: a solid core in a ground-glass halo,
    ``ground-glass`` about -600 HU).

    Files: ``images/<case>.nii.gz`` (float32 HU) and ``labels/<case>_nodules.nii.gz`` (uint8; 1 inside nodules).
    Datalist entries are ``{"image": file, "label": mask, "box": [[x1, y1, z1, x2, y2, z2], ...], "box_label":
    [0, ...], "size": [...], "attenuation": [...], "patient": "chest_P0003"}`` with boxes in voxel index
    coordinates of the array as nibabel loads it, start inclusive and end exclusive (MONAI mode ``"xyzxyz"``).

    Args:
        output_dir: directory of the set; created atomically (it may exist if empty or a previous phantom set).
        num_cases: number of cases (one per patient).
        image_size: int or sequence of 3 ints, the volume shape (X, Y, Z).
        nodules_per_case: number of nodules per case, an int or an inclusive ``(min, max)`` range.
        seed: seed of ``numpy.random.default_rng``; the same seed gives identical arrays.
        split_fractions: training, validation and test fractions of patients.
        spacing: voxel spacing in mm (float or one per axis), written in the affine.
        datalist_name: file name of the datalist JSON inside ``output_dir``.
        difficulty: ``None`` for the default (easy) phantom, a preset name of
            :py:data:`common.data.phantoms.detection_difficulty.CHEST_CT_PRESETS` (``"calibrated_detection"``), a
            mapping of :py:class:`~common.data.phantoms.detection_difficulty.ChestCTDifficulty` knobs (nodule
            contrast, size and texture, lung texture, noise, anatomical spread, size-class weights) or knobs;
            recorded in the datalist's ``parameters`` as given (``difficulty``) and resolved (``difficulty_knobs``).

    Returns:
        path of the datalist JSON.
    """
    if num_cases < 1:
        raise ValueError(f"num_cases must be positive, got {num_cases!r}.")
    size = _as_size(image_size, 3)
    if min(size) < 32:
        raise ValueError(f"image_size must be at least 32 per axis for the chest CT phantom, got {image_size!r}.")
    spacing_ = _as_spacing(spacing, 3)
    low, high = (nodules_per_case,) * 2 if np.isscalar(nodules_per_case) else tuple(nodules_per_case)  # type: ignore
    if not 0 <= int(low) <= int(high):
        raise ValueError(f"nodules_per_case must be an int or a (min, max) range, got {nodules_per_case!r}.")
    fractions = _check_fractions(split_fractions)
    seed = _check_seed(seed)
    knobs = resolve_chest_ct_difficulty(difficulty)
    output_dir = Path(output_dir).expanduser().absolute()

    root, rngs = _patient_rngs(seed, num_cases)
    patients = [f"chest_P{i:04d}" for i in range(num_cases)]
    splits = split_patients(patients, None, fractions, root)
    parameters = {
        "num_cases": num_cases,
        "image_size": list(size),
        "nodules_per_case": [int(low), int(high)],
        "split_fractions": list(fractions),
        "difficulty": difficulty.as_dict() if isinstance(difficulty, ChestCTDifficulty) else difficulty,
        "difficulty_knobs": knobs.as_dict(),
    }
    header = _header(
        "phantom_chest_ct",
        "Synthetic chest CT in Hounsfield units with lung nodules of three sizes and three attenuations.",
        {"0": "CT"},
        {"0": "background", "1": "nodule"},
        seed,
        size,
        spacing_,
        make_chest_ct,
        parameters,
    )
    header.update({"box_mode": "xyzxyz", "box_coordinates": "voxel", "box_labels": {"0": "nodule"}})
    with _atomic_directory(output_dir) as tmp:
        entries = []
        for patient_id, rng in zip(patients, rngs):
            hu, lungs = _chest_anatomy(size, rng, knobs)
            num_nodules = int(rng.integers(low, high + 1))
            mask, boxes, sizes, attenuations = _add_nodules(hu, lungs, rng, num_nodules, knobs)
            hu = ndimage.gaussian_filter(hu, 0.5, truncate=3.0)
            hu += knobs.noise * rng.standard_normal(size, dtype=np.float32)
            np.clip(hu, -1024.0, 3071.0, out=hu)
            _save_nifti(hu, tmp / f"images/{patient_id}.nii.gz", spacing_)
            _save_nifti(mask, tmp / f"labels/{patient_id}_nodules.nii.gz", spacing_)
            entry = {
                "image": f"images/{patient_id}.nii.gz",
                "label": f"labels/{patient_id}_nodules.nii.gz",
                "box": boxes,
                "box_label": [0] * len(boxes),
                "size": sizes,
                "attenuation": attenuations,
                "patient": patient_id,
            }
            entries.append((splits[patient_id], entry))
        _write_datalist(tmp / datalist_name, header, entries)
    return output_dir / datalist_name
