"""Four-channel brain MR phantom (T1, T1c, T2, FLAIR) with glioma-like tumours on positive patients, in 2D or 3D.

A tumour is a union of a few random ellipsoids with a perturbed surface, made of a necrotic core, an enhancing rim
and surrounding oedema; the head anatomy is that of :py:mod:`common.data.phantoms.brain_anatomy`.
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
    _check_fractions,
    _check_seed,
    _ellipsoid_distance,
    _header,
    _patient_rngs,
    _save_nifti,
    _smooth_field,
    _write_datalist,
)
from common.data.phantoms.brain_anatomy import (
    _CSF,
    _ENHANCING,
    _NECROSIS,
    _OEDEMA,
    _WM,
    BRAIN_MR_CHANNELS,
    _brain_tissues,
    _render_mr,
    _sample_brain_patient,
)
from common.data.phantoms.difficulty import BrainMRDifficulty, resolve_difficulty
from common.data.splits import split_patients
from scipy import ndimage

__all__ = ["BRAIN_TUMOUR_LABELS", "make_brain_mr"]

BRAIN_TUMOUR_LABELS: dict[str, str] = {"0": "background", "1": "necrotic core", "2": "oedema", "3": "enhancing rim"}
"""Label values of the brain MR tumour masks."""


def _add_glioma(
    tissue: np.ndarray, head_coords: Sequence[np.ndarray], patient: dict[str, Any], rng: np.random.Generator
) -> np.ndarray:
    """Paint the patient's glioma (necrotic core, enhancing rim, oedema) into ``tissue`` in place.

    Args:
        tissue: int8 tissue codes, modified in place.
        head_coords: head-frame coordinates from ``_brain_tissues``.
        patient: patient anatomy with ``lobes`` (a list of ``(centre, radii)`` ellipsoids).
        rng: random generator of the case (shape perturbation).

    Returns:
        uint8 mask of ``tissue.shape``: 0 background, 1 necrotic core, 2 oedema, 3 enhancing rim.
    """
    shape = tissue.shape
    mask = np.zeros(shape, dtype=np.uint8)
    if patient["lobes"] is None:
        return mask
    distance = np.full(shape, np.inf, dtype=np.float32)
    for centre, radii in patient["lobes"]:
        np.minimum(distance, _ellipsoid_distance(head_coords, centre, radii), out=distance)
    unit = min(shape) / 2.0
    r0 = float(patient["lobes"][0][1].mean()) * unit
    distance *= 1.0 + 0.12 * _smooth_field(rng, shape, max(r0 / 3.0, 0.8))
    oedema_distance = distance * (1.0 + 0.25 * _smooth_field(rng, shape, max(r0 / 2.0, 0.8)))
    # the rim is at least 1.5 voxels thick so that it survives partial-volume effects at small image sizes
    rim_edge = min(max(0.8, 0.45 + 1.5 / r0), 1.1)
    inside_skull = tissue >= _CSF
    rim = (distance < rim_edge) & inside_skull
    core = (distance < 0.45) & inside_skull
    oedema = (oedema_distance < rim_edge + 0.8) & (tissue == _WM)
    components, _ = ndimage.label(oedema | rim)
    oedema &= np.isin(components, np.unique(components[rim]))  # drop islands detached from the tumour
    tissue[oedema], mask[oedema] = _OEDEMA, 2
    tissue[rim], mask[rim] = _ENHANCING, 3
    tissue[core], mask[core] = _NECROSIS, 1
    return mask


def make_brain_mr(
    output_dir: str | os.PathLike,
    spatial_dims: int = 2,
    num_patients: int = 24,
    cases_per_patient: int | None = None,
    image_size: int | Sequence[int] | None = None,
    positive_fraction: float = 0.5,
    seed: int = 0,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    spacing: float | Sequence[float] = 1.0,
    datalist_name: str = DATALIST_NAME,
    difficulty: str | Mapping[str, Any] | BrainMRDifficulty | None = None,
) -> Path:
    """Generate a four-channel brain MR phantom set with glioma-like tumours.

    Each case is an elliptical head with a scalp and skull ring, grey/white matter with a smooth random texture,
    sulci and lateral ventricles, rendered in four channels with sequence-like contrasts: ``t1`` (white matter
    bright, CSF dark), ``t1c`` (as T1, with a bright enhancing tumour rim), ``t2`` (CSF bright) and ``flair``
    (CSF dark, oedema bright). Intensities are float32 in [0, 1], 0 outside the head, with mild noise, texture and
    a smooth bias field.

    Patients are positive or negative as a whole: ``round(positive_fraction * num_patients)`` patients carry a
    lumpy tumour (a union of a few random ellipsoids with a perturbed surface) made of a necrotic core, an enhancing
    rim and surrounding oedema, and all their cases show it; the other patients have no tumour. In 2D the cases of
    a patient are axial slices at different heights (through the tumour for positives); in 3D they are volumes of
    the same anatomy with independent texture and noise.

    Files: ``images/<case>_<channel>.nii.gz`` (float32) and ``labels/<case>_seg.nii.gz`` (uint8; 0 background,
    1 necrotic core, 2 oedema, 3 enhancing rim; all zeros for negatives). Datalist entries are
    ``{"image": [t1, t1c, t2, flair], "label": mask, "class": 0 or 1, "patient": "brain_P0007"}``.

    Args:
        output_dir: directory of the set; created atomically (it may exist if empty or a previous phantom set).
        spatial_dims: 2 for slices of shape (H, W), 3 for volumes of shape (H, W, D).
        num_patients: number of patients.
        cases_per_patient: cases per patient; default 4 slices in 2D, 1 volume in 3D.
        image_size: int or sequence of ``spatial_dims`` ints; default 128 in 2D and 64 in 3D.
        positive_fraction: fraction of patients (hence of cases) with a tumour.
        seed: seed of ``numpy.random.default_rng``; the same seed gives identical arrays.
        split_fractions: training, validation and test fractions of patients (stratified by class).
        spacing: voxel spacing in mm (float or one per axis), written in the affine.
        datalist_name: file name of the datalist JSON inside ``output_dir``.
        difficulty: ``None`` for the default (easy) phantom, a preset name of
            :py:data:`common.data.phantoms.difficulty.BRAIN_MR_PRESETS` (``"calibrated_classification"``,
            ``"calibrated_segmentation"``: the calibrated 2D benchmark tasks) or a mapping of
            :py:class:`~common.data.phantoms.difficulty.BrainMRDifficulty` knobs (lesion contrast, lesion radius,
            texture, noise, anatomy spread). Recorded in the datalist's
            ``parameters`` as given (``difficulty``) and resolved (``difficulty_knobs``).

    Returns:
        path of the datalist JSON.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    if num_patients < 1:
        raise ValueError(f"num_patients must be positive, got {num_patients!r}.")
    cases_per_patient = (4 if spatial_dims == 2 else 1) if cases_per_patient is None else int(cases_per_patient)
    if cases_per_patient < 1:
        raise ValueError(f"cases_per_patient must be positive, got {cases_per_patient!r}.")
    size = _as_size((128 if spatial_dims == 2 else 64) if image_size is None else image_size, spatial_dims)
    spacing_ = _as_spacing(spacing, spatial_dims)
    fractions = _check_fractions(split_fractions)
    seed = _check_seed(seed)
    knobs = resolve_difficulty(difficulty)
    output_dir = Path(output_dir).expanduser().absolute()

    root, rngs = _patient_rngs(seed, num_patients)
    classes = _assign_positives(num_patients, positive_fraction, root)
    patients = [f"brain_P{i:04d}" for i in range(num_patients)]
    splits = split_patients(patients, classes, fractions, root)
    parameters = {
        "spatial_dims": spatial_dims,
        "num_patients": num_patients,
        "cases_per_patient": cases_per_patient,
        "image_size": list(size),
        "positive_fraction": positive_fraction,
        "split_fractions": list(fractions),
        "difficulty": difficulty.as_dict() if isinstance(difficulty, BrainMRDifficulty) else difficulty,
        "difficulty_knobs": knobs.as_dict(),
    }
    header = _header(
        f"phantom_brain_mr_{spatial_dims}d",
        f"Synthetic {spatial_dims}D four-channel brain MR with glioma-like tumours (necrotic core, enhancing rim, "
        "oedema) on positive patients.",
        {str(i): name for i, name in enumerate(BRAIN_MR_CHANNELS)},
        BRAIN_TUMOUR_LABELS,
        seed,
        size,
        spacing_,
        make_brain_mr,
        parameters,
    )
    with _atomic_directory(output_dir) as tmp:
        entries = []
        for patient_id, label, rng in zip(patients, classes, rngs):
            patient = _sample_brain_patient(rng, spatial_dims, glioma=bool(label), difficulty=knobs)
            if spatial_dims == 2:
                if label:
                    centre_z, extent = patient["lobes"][0][0][2], patient["lobes"][0][1][2]
                    slices = np.sort(centre_z + rng.uniform(-0.3, 0.3, size=cases_per_patient) * extent)
                else:
                    slices = rng.uniform(-0.2, 0.15) + 0.06 * np.arange(cases_per_patient)
            else:
                slices = [None] * cases_per_patient
            for index, z in enumerate(slices):
                case = f"{patient_id}_C{index:02d}"
                tissue, grey, head_coords = _brain_tissues(size, patient, rng, z)
                mask = _add_glioma(tissue, head_coords, patient, rng)
                image = _render_mr(tissue, grey, patient, rng, difficulty=knobs)
                files = [f"images/{case}_{name}.nii.gz" for name in BRAIN_MR_CHANNELS]
                for channel, file in zip(image, files):
                    _save_nifti(channel, tmp / file, spacing_)
                _save_nifti(mask, tmp / f"labels/{case}_seg.nii.gz", spacing_)
                entry = {"image": files, "label": f"labels/{case}_seg.nii.gz", "class": int(label)}
                entries.append((splits[patient_id], {**entry, "patient": patient_id}))
        _write_datalist(tmp / datalist_name, header, entries)
    return output_dir / datalist_name
