"""Pieces shared by the phantom families: argument checks, patient splits, geometry, and atomic set writing.

Geometry helpers work in normalised coordinates (the shortest axis spans about [-1, 1]) on arrays in the axis order
of the NIfTI files as nibabel loads them (``x``, ``y``, ``z``). A set is written into a hidden sibling folder of
its ``output_dir`` (:py:func:`_atomic_directory`) and renamed into place at the end; every file is itself written
atomically through :py:mod:`common.utils`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.data.splits import SPLIT_NAMES
from common.utils import atomic_write_text, save_nifti
from scipy import ndimage

__all__ = ["DATALIST_NAME", "DEFAULT_SPLIT_FRACTIONS", "SPLIT_NAMES"]

DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
DATALIST_NAME = "datalist.json"
_MARKER_NAME = ".phantom"  # marks a directory written by this package, which may be replaced on regeneration
_PUBLIC_MODULE = "common.data.phantoms"  # where the generators are imported from, as recorded in each datalist


# ----------------------------------------------------------------------------------------------------------------
# argument checks and patient splits
# ----------------------------------------------------------------------------------------------------------------


def _as_size(image_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """Return ``image_size`` as a tuple of ``spatial_dims`` positive ints (an int is repeated)."""
    size = (int(image_size),) * spatial_dims if np.isscalar(image_size) else tuple(int(s) for s in image_size)
    if len(size) != spatial_dims or min(size) < 8:
        raise ValueError(f"image_size must be an int or {spatial_dims} ints >= 8, got {image_size!r}.")
    return size


def _as_spacing(spacing: float | Sequence[float], spatial_dims: int) -> tuple[float, ...]:
    """Return ``spacing`` as a tuple of ``spatial_dims`` positive floats (a float is repeated)."""
    values = (float(spacing),) * spatial_dims if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(values) != spatial_dims or min(values) <= 0:
        raise ValueError(f"spacing must be a positive float or {spatial_dims} positive floats, got {spacing!r}.")
    return values


def _check_fractions(split_fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate training/validation/test fractions: three non-negative numbers summing to 1."""
    fractions = tuple(float(f) for f in split_fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] <= 0:
        raise ValueError(
            "split_fractions must be three non-negative fractions (training, validation, test) summing to 1 "
            f"with a positive training fraction, got {split_fractions!r}."
        )
    return fractions  # type: ignore[return-value]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    return int(seed)


def _patient_rngs(seed: int, num: int) -> tuple[np.random.Generator, list[np.random.Generator]]:
    """A generator for the set-level draws and one independent generator per patient, all derived from ``seed``."""
    root = np.random.default_rng(seed)
    children = root.bit_generator.seed_seq.spawn(num)  # type: ignore[attr-defined]
    return root, [np.random.default_rng(child) for child in children]


def _assign_positives(num_patients: int, positive_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Patient classes (1 positive, 0 negative) with ``round(positive_fraction * num_patients)`` positives."""
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}.")
    classes = np.zeros(num_patients, dtype=int)
    classes[rng.permutation(num_patients)[: int(round(positive_fraction * num_patients))]] = 1
    return classes


# ----------------------------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------------------------


def _coordinates(shape: Sequence[int], z: float | None = None) -> list[np.ndarray]:
    """Normalised, broadcastable voxel-centre coordinates.

    Axis ``i`` maps to ``(index - (n - 1) / 2) / (min(shape) / 2)``, so the shortest axis spans about [-1, 1] and
    shapes keep their physical proportions.

    Args:
        shape: spatial shape, 2 or 3 dims.
        z: for a 2D shape, the normalised position of the slice along the third axis.

    Returns:
        three coordinate arrays ``x, y, z`` broadcastable to ``shape`` (for 2D, ``z`` is a 0-d array).
    """
    half = min(shape) / 2.0
    coords = []
    for axis, n in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = n
        coords.append(((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) / half).reshape(view))
    if len(shape) == 2:
        coords.append(np.asarray(0.0 if z is None else z, dtype=np.float32))
    return coords


def _ellipsoid_distance(
    coords: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float], angle: float = 0.0
) -> np.ndarray:
    """Normalised ellipsoidal distance ``sqrt(sum(((p - c) / r) ** 2))``, rotated by ``angle`` in the x-y plane.

    Args:
        coords: ``x, y, z`` coordinate arrays (broadcastable).
        centre: ellipsoid centre ``(cx, cy, cz)``.
        radii: semi-axes ``(rx, ry, rz)``.
        angle: in-plane rotation in radians.

    Returns:
        distance array broadcast over the coordinates, < 1 inside the ellipsoid.
    """
    x, y, z = (c - float(v) for c, v in zip(coords, centre))
    if angle:
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        x, y = x * cos + y * sin, y * cos - x * sin
    return np.sqrt((x / np.float32(radii[0])) ** 2 + (y / np.float32(radii[1])) ** 2 + (z / np.float32(radii[2])) ** 2)


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise normalised to zero mean and unit standard deviation.

    Args:
        rng: random generator.
        shape: spatial shape of the field.
        sigma: smoothing standard deviation in voxels.

    Returns:
        float32 array of ``shape``.
    """
    field = ndimage.gaussian_filter(rng.standard_normal(tuple(shape), dtype=np.float32), sigma, truncate=3.0)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bounding_box(mask: np.ndarray, offset: Sequence[int] | None = None) -> list[int]:
    """Corner box ``[x1, y1, (z1,) x2, y2, (z2)]`` of the non-zero voxels, start inclusive, end exclusive."""
    offset = [0] * mask.ndim if offset is None else list(offset)
    indices = np.nonzero(mask)
    starts = [int(i.min()) + o for i, o in zip(indices, offset)]
    ends = [int(i.max()) + 1 + o for i, o in zip(indices, offset)]
    return starts + ends


def _local_block(shape: Sequence[int], centre: Sequence[float], radius: float) -> tuple[tuple[slice, ...], list[int]]:
    """Slices of the block of ``shape`` within ``radius`` (voxels) of ``centre``, and the block's start index."""
    starts = [max(int(np.floor(c - radius)) - 1, 0) for c in centre]
    ends = [min(int(np.ceil(c + radius)) + 2, n) for c, n in zip(centre, shape)]
    return tuple(slice(s, e) for s, e in zip(starts, ends)), starts


# ----------------------------------------------------------------------------------------------------------------
# writing a set
# ----------------------------------------------------------------------------------------------------------------


def _save_nifti(array: np.ndarray, path: Path, spacing: Sequence[float]) -> None:
    """Write ``array`` to ``path`` as NIfTI (its own dtype) with a diagonal affine of the voxel ``spacing`` (mm).

    Args:
        array: image or mask of shape (X, Y) or (X, Y, Z).
        path: destination ``.nii.gz`` file.
        spacing: voxel spacing in mm, one value per axis of ``array``.
    """
    affine = np.diag([*spacing, *([1.0] * (4 - len(spacing)))]).astype(np.float64)
    save_nifti(array, path, affine)


def _is_replaceable(path: Path) -> bool:
    """A directory may be (re)generated if it does not exist, is empty, or holds a set written by this package."""
    if not path.exists():
        return True
    return path.is_dir() and (not any(path.iterdir()) or (path / _MARKER_NAME).is_file())


@contextlib.contextmanager
def _atomic_directory(output_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory of ``output_dir`` (with its ``images/`` and ``labels/`` folders), renamed
    onto ``output_dir`` on success.

    An existing ``output_dir`` is replaced only if it is empty or holds a set written by this package; on error the
    temporary directory is removed and ``output_dir`` is left untouched.
    """
    if not _is_replaceable(output_dir):
        raise FileExistsError(
            f"{output_dir} exists and is not an empty directory or a phantom data set; refusing to overwrite it."
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        yield tmp
        atomic_write_text("written by common.data.phantoms\n", tmp / _MARKER_NAME)
        if output_dir.exists() and any(output_dir.iterdir()):
            old = output_dir.parent / f".{output_dir.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(output_dir, old)
            os.replace(tmp, output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if output_dir.exists():
                output_dir.rmdir()
            os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_datalist(path: Path, header: dict[str, Any], entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Write the datalist JSON: ``header`` keys, split sizes, then the ``training``/``validation``/``test`` lists.

    Args:
        path: JSON file to write.
        header: top-level metadata.
        entries: ``(split name, entry)`` pairs in the order they should appear.
    """
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for split, entry in entries:
        splits[split].append(entry)
    datalist = dict(header)
    datalist.update({f"num{name.capitalize()}": len(items) for name, items in splits.items()})
    datalist.update(splits)
    atomic_write_text(json.dumps(datalist, indent=2) + "\n", path)


def _header(
    name: str,
    description: str,
    modality: dict[str, str],
    labels: dict[str, str],
    seed: int,
    size: Sequence[int],
    spacing: Sequence[float],
    generator: Callable,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Top-level metadata of a set's datalist JSON.

    Args:
        name: name of the set, e.g. ``"phantom_chest_ct"``.
        description: one-sentence description.
        modality: channel index (as a string) -> channel name.
        labels: label value (as a string) -> label name.
        seed: seed of the set.
        size: spatial shape of the images.
        spacing: voxel spacing in mm.
        generator: the public function that generated the set, recorded under its public import path.
        parameters: the generator's other arguments.

    Returns:
        the header dictionary, in the key order of the written JSON.
    """
    return {
        "name": name,
        "description": description,
        "reference": "synthetic phantom, common.data.phantoms",
        "modality": modality,
        "labels": labels,
        "seed": seed,
        "spatial_dims": len(size),
        "image_size": list(size),
        "spacing": list(spacing),
        "generator": f"{_PUBLIC_MODULE}.{generator.__name__}",
        "parameters": parameters,
    }
