"""Command line front end of :py:mod:`common.data.phantoms`: generate deterministic phantom data sets.

Examples::

    python scripts/make_phantoms.py brain_mr --output_dir /tmp/brain_2d
    python scripts/make_phantoms.py brain_mr --output_dir /tmp/brain_3d --spatial_dims 3
    python scripts/make_phantoms.py chest_ct --output_dir /tmp/chest --num_cases 12
    python scripts/make_phantoms.py brain_metastases --output_dir /tmp/mets --max_lesions 4
    python scripts/make_phantoms.py prepare --dataset_dir /tmp/brain_2d --kind brain_mr_2d

Each command prints the path of the datalist JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import fire

from common.data.phantoms import (
    DEFAULT_SPLIT_FRACTIONS,
    make_brain_metastases,
    make_brain_mr,
    make_chest_ct,
    prepare_phantom,
)


def brain_mr(
    output_dir: str,
    spatial_dims: int = 2,
    num_patients: int = 24,
    cases_per_patient: int | None = None,
    image_size: int | Sequence[int] | None = None,
    positive_fraction: float = 0.5,
    seed: int = 0,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    spacing: float | Sequence[float] = 1.0,
) -> str:
    """Generate a four-channel brain MR phantom set with gliomas; see :py:func:`common.data.phantoms.make_brain_mr`.

    Args:
        output_dir: directory of the set.
        spatial_dims: 2 for slices, 3 for volumes.
        num_patients: number of patients.
        cases_per_patient: cases per patient (default 4 in 2D, 1 in 3D).
        image_size: int or sequence of ints (default 128 in 2D, 64 in 3D).
        positive_fraction: fraction of patients with a tumour.
        seed: random seed.
        split_fractions: training, validation and test fractions of patients.
        spacing: voxel spacing in mm.

    Returns:
        path of the datalist JSON.
    """
    return str(
        make_brain_mr(
            output_dir,
            spatial_dims=spatial_dims,
            num_patients=num_patients,
            cases_per_patient=cases_per_patient,
            image_size=image_size,
            positive_fraction=positive_fraction,
            seed=seed,
            split_fractions=split_fractions,
            spacing=spacing,
        )
    )


def chest_ct(
    output_dir: str,
    num_cases: int = 12,
    image_size: int | Sequence[int] = 64,
    nodules_per_case: int | Sequence[int] = (1, 3),
    seed: int = 0,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    spacing: float | Sequence[float] = 1.0,
) -> str:
    """Generate a chest CT phantom set with lung nodules; see :py:func:`common.data.phantoms.make_chest_ct`.

    Args:
        output_dir: directory of the set.
        num_cases: number of cases (one per patient).
        image_size: int or sequence of 3 ints.
        nodules_per_case: number of nodules per case, an int or an inclusive (min, max) range.
        seed: random seed.
        split_fractions: training, validation and test fractions of patients.
        spacing: voxel spacing in mm.

    Returns:
        path of the datalist JSON.
    """
    return str(
        make_chest_ct(
            output_dir,
            num_cases=num_cases,
            image_size=image_size,
            nodules_per_case=nodules_per_case,
            seed=seed,
            split_fractions=split_fractions,
            spacing=spacing,
        )
    )


def brain_metastases(
    output_dir: str,
    num_patients: int = 24,
    cases_per_patient: int = 4,
    image_size: int | Sequence[int] = 128,
    max_lesions: int = 4,
    positive_fraction: float = 0.5,
    seed: int = 0,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    spacing: float | Sequence[float] = 1.0,
) -> str:
    """Generate a 2D brain metastases phantom set; see :py:func:`common.data.phantoms.make_brain_metastases`.

    Args:
        output_dir: directory of the set.
        num_patients: number of patients.
        cases_per_patient: slices per patient.
        image_size: int or sequence of 2 ints.
        max_lesions: maximum number of lesions per positive slice.
        positive_fraction: fraction of patients with lesions.
        seed: random seed.
        split_fractions: training, validation and test fractions of patients.
        spacing: voxel spacing in mm.

    Returns:
        path of the datalist JSON.
    """
    return str(
        make_brain_metastases(
            output_dir,
            num_patients=num_patients,
            cases_per_patient=cases_per_patient,
            image_size=image_size,
            max_lesions=max_lesions,
            positive_fraction=positive_fraction,
            seed=seed,
            split_fractions=split_fractions,
            spacing=spacing,
        )
    )


def prepare(dataset_dir: str, kind: str, **kwargs) -> str:
    """Generate a phantom set of ``kind`` into ``dataset_dir`` unless its ``datalist.json`` exists.

    Args:
        dataset_dir: directory of the set.
        kind: ``brain_mr_2d``, ``brain_mr_3d``, ``chest_ct`` or ``brain_metastases``.
        kwargs: generator keyword arguments.

    Returns:
        path of the datalist JSON.
    """
    return prepare_phantom(dataset_dir, kind, **kwargs)


if __name__ == "__main__":
    fire.Fire({"brain_mr": brain_mr, "chest_ct": chest_ct, "brain_metastases": brain_metastases, "prepare": prepare})
