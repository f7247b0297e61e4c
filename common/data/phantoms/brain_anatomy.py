"""Head anatomy shared by the brain phantoms: tissue maps of a head and their MR rendering in four contrasts.

A patient is an elliptical head (scalp, skull, CSF, cortex with sulci, white matter, two lateral ventricles) drawn
once (:py:func:`_sample_brain_patient`); each case is a slice (2D) or volume (3D) of that anatomy as a map of
tissue codes (:py:func:`_brain_tissues`), into which a family paints its lesions before rendering
(:py:func:`_render_mr`) in the ``t1``, ``t1c``, ``t2`` and ``flair`` contrasts of :py:data:`BRAIN_MR_CHANNELS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from common.data.phantoms.base import _coordinates, _ellipsoid_distance, _sigmoid, _smooth_field
from common.data.phantoms.difficulty import BRAIN_MR_PRESETS, BrainMRDifficulty
from scipy import ndimage

__all__ = ["BRAIN_MR_CHANNELS"]

BRAIN_MR_CHANNELS: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
"""Channel names of the brain MR phantom, in the order of the files of an entry's ``image`` list."""

# brain tissue codes and their intensities in the T1, T1c, T2 and FLAIR channels
_BG, _SCALP, _SKULL, _CSF, _GM, _WM, _NECROSIS, _OEDEMA, _ENHANCING = range(9)
_BRAIN_CONTRAST = np.array(
    [
        [0.00, 0.00, 0.00, 0.00],  # background
        [0.82, 0.82, 0.60, 0.65],  # scalp (fat)
        [0.08, 0.08, 0.06, 0.06],  # skull
        [0.12, 0.12, 0.95, 0.07],  # cerebrospinal fluid
        [0.48, 0.48, 0.58, 0.56],  # grey matter
        [0.68, 0.68, 0.38, 0.42],  # white matter
        [0.22, 0.22, 0.85, 0.35],  # necrotic core
        [0.45, 0.45, 0.78, 0.93],  # oedema
        [0.55, 1.00, 0.65, 0.70],  # enhancing rim
    ],
    dtype=np.float32,
)
_CHANNEL_INDEX = {name: i for i, name in enumerate(BRAIN_MR_CHANNELS)}


def _spread_uniform(rng: np.random.Generator, low: float, high: float, spread: float) -> float:
    """``rng.uniform(low, high)`` with the range scaled by ``spread`` about its centre (unchanged when it is 1)."""
    if spread != 1.0:
        centre, half = (low + high) / 2.0, spread * (high - low) / 2.0
        low, high = centre - half, centre + half
    return rng.uniform(low, high)


def _sample_brain_patient(
    rng: np.random.Generator, spatial_dims: int, glioma: bool, difficulty: BrainMRDifficulty | None = None
) -> dict[str, Any]:
    """Draw the patient-level anatomy (head, ventricles, optional glioma) in normalised head coordinates.

    Args:
        rng: random generator of the patient.
        spatial_dims: 2 or 3 (the range of the glioma's height differs).
        glioma: whether the patient has a glioma (its lobes are drawn).
        difficulty: knobs ``anatomy_spread`` and ``lesion_radius``; ``None``: the default phantom's.

    Returns:
        the patient's anatomy.
    """
    knobs = BRAIN_MR_PRESETS["default"] if difficulty is None else difficulty
    s = knobs.anatomy_spread
    scale = _spread_uniform(rng, 0.92, 1.0, s)
    patient: dict[str, Any] = {
        "head_radii": (0.78 * scale * _spread_uniform(rng, 0.96, 1.04, s), 0.93 * scale, 0.88 * scale),
        "head_centre": (_spread_uniform(rng, -0.02, 0.02, s), _spread_uniform(rng, -0.02, 0.02, s), 0.0),
        "head_angle": _spread_uniform(rng, -0.1, 0.1, s),
        "ventricle_offset": _spread_uniform(rng, 0.07, 0.1, s),
        "ventricle_radii": (
            _spread_uniform(rng, 0.045, 0.075, s),
            _spread_uniform(rng, 0.2, 0.28, s),
            _spread_uniform(rng, 0.14, 0.2, s),
        ),
        "ventricle_angle": _spread_uniform(rng, 0.12, 0.3, s),
        "ventricle_centre": (_spread_uniform(rng, -0.06, 0.02, s), _spread_uniform(rng, 0.05, 0.15, s)),
        "gain": rng.uniform(0.95, 1.05, size=len(BRAIN_MR_CHANNELS)).astype(np.float32),
        "lobes": None,
    }
    if glioma:
        angle = rng.uniform(0, 2 * np.pi)
        rho = rng.uniform(0.25, 0.5)
        a, b, _ = patient["head_radii"]
        z_range = (-0.12, 0.25) if spatial_dims == 2 else (-0.2, 0.3)
        centre = np.array([rho * 0.86 * a * np.cos(angle), rho * 0.86 * b * np.sin(angle), rng.uniform(*z_range)])
        r0 = rng.uniform(*knobs.lesion_radius)
        lobes = [(centre, r0 * rng.uniform(0.85, 1.15, size=3))]
        for _ in range(rng.integers(2, 5)):
            lobes.append((centre + r0 * rng.uniform(-0.6, 0.6, size=3), r0 * rng.uniform(0.45, 0.85, size=3)))
        patient["lobes"] = lobes
    return patient


def _brain_tissues(
    shape: Sequence[int], patient: dict[str, Any], rng: np.random.Generator, z: float | None = None
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Tissue code map of a head (scalp, skull, CSF, grey/white matter, ventricles).

    Args:
        shape: spatial shape (2D slice or 3D volume).
        patient: patient anatomy from ``_sample_brain_patient``.
        rng: random generator of the case (textures).
        z: normalised slice position for 2D shapes.

    Returns:
        int8 tissue codes of ``shape``, float32 grey-matter weight in [0, 1] of ``shape`` (used within white
        matter codes), and the head-frame coordinates ``x, y, z``.
    """
    coords = _coordinates(shape, z)
    cx, cy, cz = patient["head_centre"]
    angle = patient["head_angle"]
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    x, y = coords[0] - cx, coords[1] - cy
    head_coords = [x * cos + y * sin, y * cos - x * sin, coords[2] - cz]
    rho = np.broadcast_to(_ellipsoid_distance(head_coords, (0, 0, 0), patient["head_radii"]), tuple(shape))

    unit = min(shape) / 2.0  # voxels per normalised unit
    surface = _smooth_field(rng, shape, max(0.03 * unit, 0.8))
    folds = _smooth_field(rng, shape, max(0.05 * unit, 0.8))
    deep = _smooth_field(rng, shape, max(0.06 * unit, 1.0))

    tissue = np.zeros(shape, dtype=np.int8)
    tissue[rho < 1.0] = _SCALP
    tissue[rho < 0.95] = _SKULL
    tissue[rho < 0.885] = _CSF
    brain = rho + 0.012 * surface < 0.86
    tissue[brain] = _WM
    cortex_depth = 0.74 + 0.05 * folds
    sulci = brain & (rho > cortex_depth + 0.02) & (np.abs(surface) < 0.18)
    tissue[sulci] = _CSF
    for side in (-1.0, 1.0):
        centre = (side * patient["ventricle_offset"], *patient["ventricle_centre"])
        ventricle = _ellipsoid_distance(
            head_coords, centre, patient["ventricle_radii"], side * patient["ventricle_angle"]
        )
        tissue[np.broadcast_to(ventricle < 1.0, tuple(shape)) & brain] = _CSF
    grey = np.clip(_sigmoid((rho - cortex_depth) / 0.012) + _sigmoid((deep - 1.9) / 0.15), 0.0, 1.0)
    return tissue, grey.astype(np.float32), head_coords


def _lesion_contrast_table(difficulty: BrainMRDifficulty) -> np.ndarray:
    """Tissue intensities (9, 4) with the tumour tissues' difference from white matter scaled per channel.

    The table of the default phantom is returned as it is when every channel's scale is 1.
    """
    scales = np.asarray(difficulty.channel_contrast(len(BRAIN_MR_CHANNELS)), dtype=np.float32)
    if np.all(scales == 1.0):
        return _BRAIN_CONTRAST
    table = _BRAIN_CONTRAST.copy()
    lesions = [_NECROSIS, _OEDEMA, _ENHANCING]
    table[lesions] = _BRAIN_CONTRAST[_WM] + scales * (_BRAIN_CONTRAST[lesions] - _BRAIN_CONTRAST[_WM])
    return table


def _render_mr(
    tissue: np.ndarray,
    grey: np.ndarray,
    patient: dict[str, Any],
    rng: np.random.Generator,
    channels: Sequence[str] = BRAIN_MR_CHANNELS,
    difficulty: BrainMRDifficulty | None = None,
) -> np.ndarray:
    """Render MR intensities of a tissue map.

    Args:
        tissue: int8 tissue codes of the spatial shape.
        grey: grey-matter weight in [0, 1], blended into white matter voxels.
        patient: patient anatomy (channel gains).
        rng: random generator of the case (texture, bias field, noise).
        channels: channel names to render, a subset of ``BRAIN_MR_CHANNELS``.
        difficulty: knobs ``lesion_contrast``, ``texture`` and ``noise``; ``None``: the default phantom's.

    Returns:
        float32 array of shape (C, *spatial) in [0, 1], exactly 0 outside the head.
    """
    shape = tissue.shape
    unit = min(shape) / 2.0
    head = tissue != _BG
    white = tissue == _WM
    knobs = BRAIN_MR_PRESETS["default"] if difficulty is None else difficulty
    table = _lesion_contrast_table(knobs)
    texture = 1.0 + knobs.texture * _smooth_field(rng, shape, max(0.015 * unit, 0.6))
    coords = _coordinates(shape, rng.uniform(-0.3, 0.3) if len(shape) == 2 else None)
    coefficients = rng.uniform(-0.08, 0.08, size=3)
    bias = 1.0 + sum(np.float32(c) * x for c, x in zip(coefficients, coords))
    images = []
    for name in channels:
        c = _CHANNEL_INDEX[name]
        contrast = table[:, c]
        image = contrast[tissue]
        image[white] = contrast[_WM] + (contrast[_GM] - contrast[_WM]) * grey[white]
        image *= texture
        image = ndimage.gaussian_filter(image, 0.5, truncate=3.0)
        image *= bias * patient["gain"][c]
        image += knobs.noise * rng.standard_normal(shape, dtype=np.float32)
        image[~head] = 0.0
        images.append(np.clip(image, 0.0, 1.0))
    return np.stack(images).astype(np.float32)
