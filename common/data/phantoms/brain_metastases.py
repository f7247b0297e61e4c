"""Single-channel 2D T1c-like brain phantom with small ring-enhancing metastasis-like lesions and their boxes.

The head anatomy is that of the brain MR phantom (:py:mod:`common.data.phantoms.brain_anatomy`) rendered in the
``t1c`` contrast only; positive slices carry several small lesions (necrotic centre, enhancing rim, oedema halo).
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
    _assign_positives,
    _atomic_directory,
    _bounding_box,
    _check_fractions,
    _check_seed,
    _header,
    _local_block,
    _patient_rngs,
    _save_nifti,
    _write_datalist,
)
from common.data.phantoms.brain_anatomy import (
    _ENHANCING,
    _GM,
    _NECROSIS,
    _OEDEMA,
    _WM,
    _brain_tissues,
    _render_mr,
    _sample_brain_patient,
)
from common.data.phantoms.detection_difficulty import (
    BRAIN_METASTASES_PRESETS,
    BrainMetastasesDifficulty,
    resolve_brain_metastases_difficulty,
)
from common.data.splits import split_patients
from scipy import ndimage

__all__ = ["make_brain_metastases"]


def _add_metastases(
    tissue: np.ndarray, rng: np.random.Generator, num_lesions: int, radius_range: tuple[float, float] = (0.05, 0.09)
) -> tuple[np.ndarray, list[list[int]]]:
    """Paint ``num_lesions`` small ring-enhancing lesions into a 2D ``tissue`` map in place.

    Each lesion is a slightly elliptical disc with a necrotic centre, an enhancing rim and a thin oedema halo;
    lesions are placed inside the brain parenchyma and do not overlap.

    Args:
        tissue: int8 tissue codes of shape (H, W), modified in place.
        rng: random generator of the case.
        num_lesions: number of lesions to place (fewer if the brain has no room left).
        radius_range: range of the lesion radius, a fraction of the image's half-width (at least 2.5 pixels).

    Returns:
        uint8 lesion mask of shape (H, W) (1 inside lesions: core and rim) and the lesion boxes
        ``[x1, y1, x2, y2]`` (start inclusive, end exclusive).
    """
    shape = tissue.shape
    unit = min(shape) / 2.0
    mask = np.zeros(shape, dtype=np.uint8)
    boxes: list[list[int]] = []
    room = ndimage.distance_transform_edt(tissue == _WM)
    taken: list[tuple[np.ndarray, float]] = []
    grid = np.indices(shape, dtype=np.float32)
    for _ in range(num_lesions):
        radius = max(rng.uniform(*radius_range) * unit, 2.5)
        candidates = np.argwhere(room > radius + 1.0)
        for centre, other in taken:
            candidates = candidates[np.linalg.norm(candidates - centre, axis=1) > 1.8 * (radius + other) + 2.0]
        if len(candidates) == 0:
            break
        centre = candidates[rng.integers(len(candidates))].astype(np.float32)
        block, start = _local_block(shape, centre, 1.8 * radius)
        radii = radius * rng.uniform(0.85, 1.15, size=2)
        local = np.sqrt(sum(((g[block] - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)))
        local *= 1.0 + 0.08 * rng.standard_normal(local.shape).astype(np.float32)
        region = tissue[block]
        region[(local < 1.7) & ((region == _WM) | (region == _GM))] = _OEDEMA
        region[local < 1.0] = _ENHANCING
        region[local < min(0.5, 1.0 - 1.2 / radius)] = _NECROSIS
        mask[block][local < 1.0] = 1
        boxes.append(_bounding_box(local < 1.0, start))
        taken.append((centre, radius))
    return mask, boxes


def make_brain_metastases(
    output_dir: str | os.PathLike,
    num_patients: int = 24,
    cases_per_patient: int = 4,
    image_size: int | Sequence[int] = 128,
    max_lesions: int = 4,
    positive_fraction: float = 0.5,
    seed: int = 0,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    spacing: float | Sequence[float] = 1.0,
    datalist_name: str = DATALIST_NAME,
    difficulty: str | Mapping[str, Any] | BrainMetastasesDifficulty | None = None,
) -> Path:
    """Generate a single-channel 2D T1c-like brain phantom set with ring-enhancing metastasis-like lesions.

    The anatomy is that of :py:func:`make_brain_mr` rendered in the ``t1c`` contrast. Patients are positive or
    negative as a whole (``round(positive_fraction * num_patients)`` positives); each slice of a positive patient
    carries between 1 and ``max_lesions`` small non-overlapping lesions (necrotic centre, bright enhancing rim, thin
    dark oedema halo), placed independently per slice; negatives carry none.

    Files: ``images/<case>_t1c.nii.gz`` (float32, shape (H, W)) and ``labels/<case>_seg.nii.gz`` (uint8; 1 inside
    a lesion's core and rim, 0 elsewhere). Datalist entries are ``{"image": file, "label": mask, "box": [[x1, y1,
    x2, y2], ...], "box_label": [0, ...], "class": 0 or 1, "patient": "mets_P0007"}``, with boxes in voxel index
    coordinates, start inclusive and end exclusive (empty lists for negatives).

    Args:
        output_dir: directory of the set; created atomically (it may exist if empty or a previous phantom set).
        num_patients: number of patients.
        cases_per_patient: slices per patient.
        image_size: int or sequence of 2 ints.
        max_lesions: maximum number of lesions per positive slice.
        positive_fraction: fraction of patients (hence of cases) with lesions.
        seed: seed of ``numpy.random.default_rng``; the same seed gives identical arrays.
        split_fractions: training, validation and test fractions of patients (stratified by class).
        spacing: voxel spacing in mm (float or one per axis), written in the affine.
        datalist_name: file name of the datalist JSON inside ``output_dir``.
        difficulty: ``None`` for the default (easy) phantom, a preset name of
            :py:data:`common.data.phantoms.detection_difficulty.BRAIN_METASTASES_PRESETS`
            (``"calibrated_detection"``), a mapping of
            :py:class:`~common.data.phantoms.detection_difficulty.BrainMetastasesDifficulty` knobs (lesion contrast
            and radius, texture, noise, anatomical spread) or knobs; recorded in the datalist's ``parameters`` as
            given (``difficulty``) and resolved (``difficulty_knobs``).

    Returns:
        path of the datalist JSON.
    """
    if num_patients < 1 or cases_per_patient < 1 or max_lesions < 1:
        raise ValueError("num_patients, cases_per_patient and max_lesions must be positive.")
    size = _as_size(image_size, 2)
    spacing_ = _as_spacing(spacing, 2)
    fractions = _check_fractions(split_fractions)
    seed = _check_seed(seed)
    knobs = resolve_brain_metastases_difficulty(difficulty)
    anatomy = None if knobs == BRAIN_METASTASES_PRESETS["default"] else knobs.brain_mr_knobs()
    output_dir = Path(output_dir).expanduser().absolute()

    root, rngs = _patient_rngs(seed, num_patients)
    classes = _assign_positives(num_patients, positive_fraction, root)
    patients = [f"mets_P{i:04d}" for i in range(num_patients)]
    splits = split_patients(patients, classes, fractions, root)
    parameters = {
        "num_patients": num_patients,
        "cases_per_patient": cases_per_patient,
        "image_size": list(size),
        "max_lesions": max_lesions,
        "positive_fraction": positive_fraction,
        "split_fractions": list(fractions),
        "difficulty": difficulty.as_dict() if isinstance(difficulty, BrainMetastasesDifficulty) else difficulty,
        "difficulty_knobs": knobs.as_dict(),
    }
    header = _header(
        "phantom_brain_metastases",
        "Synthetic 2D T1c-like brain slices with small ring-enhancing metastasis-like lesions on positive patients.",
        {"0": "t1c"},
        {"0": "background", "1": "metastasis"},
        seed,
        size,
        spacing_,
        make_brain_metastases,
        parameters,
    )
    header.update({"box_mode": "xyxy", "box_coordinates": "voxel", "box_labels": {"0": "metastasis"}})
    with _atomic_directory(output_dir) as tmp:
        entries = []
        for patient_id, label, rng in zip(patients, classes, rngs):
            patient = _sample_brain_patient(rng, 2, glioma=False, difficulty=anatomy)
            start = rng.uniform(-0.2, 0.15)
            for index in range(cases_per_patient):
                case = f"{patient_id}_C{index:02d}"
                tissue, grey, _ = _brain_tissues(size, patient, rng, start + 0.06 * index)
                num_lesions = int(rng.integers(1, max_lesions + 1)) if label else 0
                mask, boxes = _add_metastases(tissue, rng, num_lesions, knobs.lesion_radius)
                image = _render_mr(tissue, grey, patient, rng, channels=("t1c",), difficulty=anatomy)[0]
                _save_nifti(image, tmp / f"images/{case}_t1c.nii.gz", spacing_)
                _save_nifti(mask, tmp / f"labels/{case}_seg.nii.gz", spacing_)
                entry = {
                    "image": f"images/{case}_t1c.nii.gz",
                    "label": f"labels/{case}_seg.nii.gz",
                    "box": boxes,
                    "box_label": [0] * len(boxes),
                    "class": int(label),
                    "patient": patient_id,
                }
                entries.append((splits[patient_id], entry))
        _write_datalist(tmp / datalist_name, header, entries)
    return output_dir / datalist_name
