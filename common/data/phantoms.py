"""Deterministic synthetic phantom data sets for tests, tutorials and smoke runs of the bundles.

Every set is generated from a single integer seed, written as NIfTI files (``.nii.gz``) with a diagonal affine
giving the voxel spacing, and described by a Decathlon-style datalist JSON whose paths are relative to the JSON
file (readable by :py:func:`monai.data.load_decathlon_datalist`). Sets are split by patient into ``training``,
``validation`` and ``test``; splits are stratified by the patient class where there is one.

Generation is atomic: a set is written into a hidden sibling directory of ``output_dir`` and renamed into place
at the end, so an interrupted generation never leaves a half-written data set behind.

Array axes follow the NIfTI files as nibabel loads them (``nib.load(f).get_fdata()``): axis 0 is ``x``
(left-right), axis 1 is ``y`` (anterior-posterior) and axis 2 is ``z`` (inferior-superior). Boxes are given in
voxel index coordinates of these axes, in corner format (``"xyxy"`` / ``"xyzxyz"``), start inclusive and end
exclusive, so ``0 <= x1 < x2 <= shape[0]``.

Kinds of sets:

- ``make_brain_mr``: four-channel (T1, T1c, T2, FLAIR) brain MR slices (2D) or volumes (3D) with glioma-like
  tumours (necrotic core, enhancing rim, oedema) on positive patients.
- ``make_chest_ct``: chest CT volumes in Hounsfield units with lung nodules of three sizes and three attenuations,
  with bounding boxes.
- ``make_brain_metastases``: single-channel T1c-like 2D brain slices with several small ring-enhancing lesions on
  positive patients, with bounding boxes.
- ``prepare_phantom``: generate a set once into a directory and return its ``datalist.json`` path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = [
    "BRAIN_MR_CHANNELS",
    "BRAIN_TUMOUR_LABELS",
    "NODULE_ATTENUATIONS",
    "NODULE_SIZES",
    "PHANTOM_KINDS",
    "make_brain_metastases",
    "make_brain_mr",
    "make_chest_ct",
    "prepare_phantom",
]

logger = logging.getLogger("common.data")

BRAIN_MR_CHANNELS: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
"""Channel names of the brain MR phantom, in the order of the files of an entry's ``image`` list."""

BRAIN_TUMOUR_LABELS: dict[str, str] = {"0": "background", "1": "necrotic core", "2": "oedema", "3": "enhancing rim"}
"""Label values of the brain MR tumour masks."""

NODULE_SIZES: tuple[str, ...] = ("small", "medium", "large")
"""Nodule size classes of the chest CT phantom (about 3, 5 and 8 voxels in diameter at 64^3)."""

NODULE_ATTENUATIONS: tuple[str, ...] = ("solid", "part-solid", "ground-glass")
"""Nodule attenuation classes of the chest CT phantom."""

DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
SPLIT_NAMES: tuple[str, ...] = ("training", "validation", "test")
DATALIST_NAME = "datalist.json"
_MARKER_NAME = ".phantom"  # marks a directory written by this module, which may be replaced on regeneration

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

# chest CT Hounsfield units
_HU_AIR, _HU_LUNG, _HU_FAT, _HU_SOFT, _HU_BONE, _HU_CORTEX = -1000.0, -850.0, -100.0, 40.0, 300.0, 650.0
_HU_NODULE = {"solid": 40.0, "ground-glass": -600.0}
_NODULE_DIAMETER_64 = {"small": 3.0, "medium": 5.0, "large": 8.0}  # voxels at a 64^3 volume
_NODULE_MIN_RADIUS = {"small": 1.0, "medium": 2.0, "large": 3.0}  # voxels, keeps the size classes apart


# ----------------------------------------------------------------------------------------------------------------
# shared helpers
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


def _split_counts(num: int, fractions: Sequence[float]) -> list[int]:
    """Number of patients per split: every split with a positive fraction gets one first, if there are enough.

    Args:
        num: number of patients to distribute.
        fractions: fraction per split.

    Returns:
        one count per split, summing to ``num``.
    """
    active = [i for i, f in enumerate(fractions) if f > 0]
    counts = [0] * len(fractions)
    if num < len(active):  # too few to fill every split: training first, then by decreasing fraction
        order = [0] + sorted((i for i in active if i != 0), key=lambda i: -fractions[i])
        for i in order[:num]:
            counts[i] = 1
        return counts
    for i in active:
        counts[i] = 1
    targets = [max(f * num - c, 0.0) for f, c in zip(fractions, counts)]
    remaining = num - sum(counts)
    total = sum(targets)
    targets = [t * remaining / total for t in targets] if total > 0 else targets
    floors = [int(np.floor(t)) for t in targets]
    left = remaining - sum(floors)
    by_remainder = sorted(range(len(fractions)), key=lambda i: (-(targets[i] - floors[i]), i))
    for i in by_remainder[:left]:
        floors[i] += 1
    return [c + f for c, f in zip(counts, floors)]


def _split_patients(
    patients: Sequence[str], classes: Sequence[int] | None, fractions: Sequence[float], rng: np.random.Generator
) -> dict[str, str]:
    """Assign each patient to a split, stratified by patient class.

    Args:
        patients: patient identifiers.
        classes: class of each patient, or None for no stratification.
        fractions: training, validation and test fractions.
        rng: random generator used to shuffle the patients of each class.

    Returns:
        mapping patient identifier -> split name.
    """
    classes = [0] * len(patients) if classes is None else list(classes)
    assignment: dict[str, str] = {}
    for value in sorted(set(classes)):
        group = [p for p, c in zip(patients, classes) if c == value]
        group = [group[i] for i in rng.permutation(len(group))]
        start = 0
        for name, count in zip(SPLIT_NAMES, _split_counts(len(group), fractions)):
            assignment.update({p: name for p in group[start : start + count]})
            start += count
    # small sets: stratification may leave a split empty although there are enough patients; fill it from the
    # largest split, taking a patient of the class most represented there
    active = [name for name, f in zip(SPLIT_NAMES, fractions) if f > 0]
    if len(patients) >= len(active):
        for name in active:
            members = {s: [p for p in patients if assignment[p] == s] for s in active}
            if members[name]:
                continue
            donor = max(active, key=lambda s: len(members[s]))
            donor_classes = [c for p, c in zip(patients, classes) if assignment[p] == donor]
            common = max(set(donor_classes), key=lambda c: (donor_classes.count(c), c))
            moved = [p for p, c in zip(patients, classes) if assignment[p] == donor and c == common][-1]
            assignment[moved] = name
    return assignment


def _patient_rngs(seed: int, num: int) -> tuple[np.random.Generator, list[np.random.Generator]]:
    """A generator for the set-level draws and one independent generator per patient, all derived from ``seed``."""
    root = np.random.default_rng(seed)
    children = root.bit_generator.seed_seq.spawn(num)  # type: ignore[attr-defined]
    return root, [np.random.default_rng(child) for child in children]


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


def _save_nifti(array: np.ndarray, path: Path, spacing: Sequence[float]) -> None:
    """Write ``array`` to ``path`` as NIfTI with a diagonal affine of the voxel ``spacing`` (mm)."""
    affine = np.diag([*spacing, *([1.0] * (4 - len(spacing)))]).astype(np.float64)
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def _is_replaceable(path: Path) -> bool:
    """A directory may be (re)generated if it does not exist, is empty, or holds a set written by this module."""
    if not path.exists():
        return True
    return path.is_dir() and (not any(path.iterdir()) or (path / _MARKER_NAME).is_file())


@contextlib.contextmanager
def _atomic_directory(output_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory of ``output_dir`` (with its ``images/`` and ``labels/`` folders), renamed
    onto ``output_dir`` on success.

    An existing ``output_dir`` is replaced only if it is empty or holds a set written by this module; on error the
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
        (tmp / _MARKER_NAME).write_text("written by common.data.phantoms\n")
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
    path.write_text(json.dumps(datalist, indent=2) + "\n")


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
        "generator": f"{generator.__module__}.{generator.__name__}",
        "parameters": parameters,
    }


def _assign_positives(num_patients: int, positive_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Patient classes (1 positive, 0 negative) with ``round(positive_fraction * num_patients)`` positives."""
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}.")
    classes = np.zeros(num_patients, dtype=int)
    classes[rng.permutation(num_patients)[: int(round(positive_fraction * num_patients))]] = 1
    return classes


# ----------------------------------------------------------------------------------------------------------------
# brain anatomy
# ----------------------------------------------------------------------------------------------------------------


def _sample_brain_patient(rng: np.random.Generator, spatial_dims: int, glioma: bool) -> dict[str, Any]:
    """Draw the patient-level anatomy (head, ventricles, optional glioma) in normalised head coordinates."""
    scale = rng.uniform(0.92, 1.0)
    patient: dict[str, Any] = {
        "head_radii": (0.78 * scale * rng.uniform(0.96, 1.04), 0.93 * scale, 0.88 * scale),
        "head_centre": (rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), 0.0),
        "head_angle": rng.uniform(-0.1, 0.1),
        "ventricle_offset": rng.uniform(0.07, 0.1),
        "ventricle_radii": (rng.uniform(0.045, 0.075), rng.uniform(0.2, 0.28), rng.uniform(0.14, 0.2)),
        "ventricle_angle": rng.uniform(0.12, 0.3),
        "ventricle_centre": (rng.uniform(-0.06, 0.02), rng.uniform(0.05, 0.15)),
        "gain": rng.uniform(0.95, 1.05, size=len(BRAIN_MR_CHANNELS)).astype(np.float32),
        "lobes": None,
    }
    if glioma:
        angle = rng.uniform(0, 2 * np.pi)
        rho = rng.uniform(0.25, 0.5)
        a, b, _ = patient["head_radii"]
        z_range = (-0.12, 0.25) if spatial_dims == 2 else (-0.2, 0.3)
        centre = np.array([rho * 0.86 * a * np.cos(angle), rho * 0.86 * b * np.sin(angle), rng.uniform(*z_range)])
        r0 = rng.uniform(0.13, 0.2)
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


def _add_metastases(
    tissue: np.ndarray, rng: np.random.Generator, num_lesions: int
) -> tuple[np.ndarray, list[list[int]]]:
    """Paint ``num_lesions`` small ring-enhancing lesions into a 2D ``tissue`` map in place.

    Each lesion is a slightly elliptical disc with a necrotic centre, an enhancing rim and a thin oedema halo;
    lesions are placed inside the brain parenchyma and do not overlap.

    Args:
        tissue: int8 tissue codes of shape (H, W), modified in place.
        rng: random generator of the case.
        num_lesions: number of lesions to place (fewer if the brain has no room left).

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
        radius = max(rng.uniform(0.05, 0.09) * unit, 2.5)
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


def _render_mr(
    tissue: np.ndarray,
    grey: np.ndarray,
    patient: dict[str, Any],
    rng: np.random.Generator,
    channels: Sequence[str] = BRAIN_MR_CHANNELS,
) -> np.ndarray:
    """Render MR intensities of a tissue map.

    Args:
        tissue: int8 tissue codes of the spatial shape.
        grey: grey-matter weight in [0, 1], blended into white matter voxels.
        patient: patient anatomy (channel gains).
        rng: random generator of the case (texture, bias field, noise).
        channels: channel names to render, a subset of ``BRAIN_MR_CHANNELS``.

    Returns:
        float32 array of shape (C, *spatial) in [0, 1], exactly 0 outside the head.
    """
    shape = tissue.shape
    unit = min(shape) / 2.0
    head = tissue != _BG
    white = tissue == _WM
    texture = 1.0 + 0.04 * _smooth_field(rng, shape, max(0.015 * unit, 0.6))
    coords = _coordinates(shape, rng.uniform(-0.3, 0.3) if len(shape) == 2 else None)
    coefficients = rng.uniform(-0.08, 0.08, size=3)
    bias = 1.0 + sum(np.float32(c) * x for c, x in zip(coefficients, coords))
    images = []
    for name in channels:
        c = _CHANNEL_INDEX[name]
        contrast = _BRAIN_CONTRAST[:, c]
        image = contrast[tissue]
        image[white] = contrast[_WM] + (contrast[_GM] - contrast[_WM]) * grey[white]
        image *= texture
        image = ndimage.gaussian_filter(image, 0.5, truncate=3.0)
        image *= bias * patient["gain"][c]
        image += 0.015 * rng.standard_normal(shape, dtype=np.float32)
        image[~head] = 0.0
        images.append(np.clip(image, 0.0, 1.0))
    return np.stack(images).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# brain MR with gliomas
# ----------------------------------------------------------------------------------------------------------------


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
    output_dir = Path(output_dir).expanduser().absolute()

    root, rngs = _patient_rngs(seed, num_patients)
    classes = _assign_positives(num_patients, positive_fraction, root)
    patients = [f"brain_P{i:04d}" for i in range(num_patients)]
    splits = _split_patients(patients, classes, fractions, root)
    parameters = {
        "spatial_dims": spatial_dims,
        "num_patients": num_patients,
        "cases_per_patient": cases_per_patient,
        "image_size": list(size),
        "positive_fraction": positive_fraction,
        "split_fractions": list(fractions),
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
            patient = _sample_brain_patient(rng, spatial_dims, glioma=bool(label))
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
                image = _render_mr(tissue, grey, patient, rng)
                files = [f"images/{case}_{name}.nii.gz" for name in BRAIN_MR_CHANNELS]
                for channel, file in zip(image, files):
                    _save_nifti(channel, tmp / file, spacing_)
                _save_nifti(mask, tmp / f"labels/{case}_seg.nii.gz", spacing_)
                entry = {"image": files, "label": f"labels/{case}_seg.nii.gz", "class": int(label)}
                entries.append((splits[patient_id], {**entry, "patient": patient_id}))
        _write_datalist(tmp / datalist_name, header, entries)
    return output_dir / datalist_name


# ----------------------------------------------------------------------------------------------------------------
# brain metastases
# ----------------------------------------------------------------------------------------------------------------


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

    Returns:
        path of the datalist JSON.
    """
    if num_patients < 1 or cases_per_patient < 1 or max_lesions < 1:
        raise ValueError("num_patients, cases_per_patient and max_lesions must be positive.")
    size = _as_size(image_size, 2)
    spacing_ = _as_spacing(spacing, 2)
    fractions = _check_fractions(split_fractions)
    seed = _check_seed(seed)
    output_dir = Path(output_dir).expanduser().absolute()

    root, rngs = _patient_rngs(seed, num_patients)
    classes = _assign_positives(num_patients, positive_fraction, root)
    patients = [f"mets_P{i:04d}" for i in range(num_patients)]
    splits = _split_patients(patients, classes, fractions, root)
    parameters = {
        "num_patients": num_patients,
        "cases_per_patient": cases_per_patient,
        "image_size": list(size),
        "max_lesions": max_lesions,
        "positive_fraction": positive_fraction,
        "split_fractions": list(fractions),
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
            patient = _sample_brain_patient(rng, 2, glioma=False)
            start = rng.uniform(-0.2, 0.15)
            for index in range(cases_per_patient):
                case = f"{patient_id}_C{index:02d}"
                tissue, grey, _ = _brain_tissues(size, patient, rng, start + 0.06 * index)
                num_lesions = int(rng.integers(1, max_lesions + 1)) if label else 0
                mask, boxes = _add_metastases(tissue, rng, num_lesions)
                image = _render_mr(tissue, grey, patient, rng, channels=("t1c",))[0]
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


# ----------------------------------------------------------------------------------------------------------------
# chest CT with lung nodules
# ----------------------------------------------------------------------------------------------------------------


def _chest_anatomy(shape: Sequence[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Chest CT anatomy in Hounsfield units (before nodules, blur and noise).

    Args:
        shape: volume shape (X, Y, Z); axis 1 runs anterior (low) to posterior (high), axis 2 inferior to superior.
        rng: random generator of the case.

    Returns:
        float32 HU volume of ``shape`` and the boolean lung mask of ``shape``.
    """
    x, y, _ = (c[..., None] for c in _coordinates(shape[:2]))  # (X, 1, 1), (1, Y, 1)
    z = ((np.arange(shape[2], dtype=np.float32) - (shape[2] - 1) / 2.0) / (shape[2] / 2.0)).reshape(1, 1, -1)
    unit = min(shape[:2]) / 2.0
    s = rng.uniform(0.93, 1.02)
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
        centre = (side * 0.37 * s, -0.02 * s, rng.uniform(0.15, 0.25))
        radii = (0.29 * s * rng.uniform(0.95, 1.05), 0.5 * s, rng.uniform(1.0, 1.1))
        lungs |= _ellipsoid_distance(coords, centre, radii) < 1.0
    heart = _ellipsoid_distance(coords, (0.1 * s, -0.18 * s, -0.5), (0.3 * s, 0.28 * s, 0.5)) < 1.0
    lungs &= ~heart
    texture = _smooth_field(rng, full, max(0.02 * unit, 0.7))
    hu[lungs] = _HU_LUNG + 25.0 * texture[lungs]
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


def _nodule_radii(size: str, unit: float, rng: np.random.Generator) -> np.ndarray:
    """Per-axis nodule radii in voxels for a size class, scaled with ``unit = min(shape) / 64``."""
    radius = 0.5 * _NODULE_DIAMETER_64[size] * unit * rng.uniform(0.92, 1.08)
    return np.maximum(radius * rng.uniform(0.92, 1.08, size=3), _NODULE_MIN_RADIUS[size])


def _add_nodules(
    hu: np.ndarray, lungs: np.ndarray, rng: np.random.Generator, num_nodules: int
) -> tuple[np.ndarray, list[list[int]], list[str], list[str]]:
    """Place non-overlapping nodules inside the lungs, in place.

    Args:
        hu: HU volume of shape (X, Y, Z), modified in place.
        lungs: boolean lung mask of the same shape.
        rng: random generator of the case.
        num_nodules: number of nodules (fewer if the lungs have no room left).

    Returns:
        uint8 nodule mask (1 inside nodules), the boxes ``[x1, y1, z1, x2, y2, z2]`` (start inclusive, end
        exclusive), and the size and attenuation class of each nodule.
    """
    shape = hu.shape
    unit = min(shape) / 64.0
    mask = np.zeros(shape, dtype=np.uint8)
    room = ndimage.distance_transform_edt(lungs)
    boxes: list[list[int]] = []
    sizes: list[str] = []
    attenuations: list[str] = []
    taken: list[tuple[np.ndarray, float]] = []
    for _ in range(num_nodules):
        size = NODULE_SIZES[rng.integers(len(NODULE_SIZES))]
        attenuation = NODULE_ATTENUATIONS[rng.integers(len(NODULE_ATTENUATIONS))]
        radii = _nodule_radii(size, unit, rng)
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
        texture = 12.0 * rng.standard_normal(region.shape).astype(np.float32)
        if attenuation == "solid":
            region[inside] = _HU_NODULE["solid"] + texture[inside]
        else:
            region[inside] = _HU_NODULE["ground-glass"] + 2.0 * texture[inside]
            if attenuation == "part-solid":
                core = distance <= 0.55
                region[core] = _HU_NODULE["solid"] + texture[core]
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
    output_dir = Path(output_dir).expanduser().absolute()

    root, rngs = _patient_rngs(seed, num_cases)
    patients = [f"chest_P{i:04d}" for i in range(num_cases)]
    splits = _split_patients(patients, None, fractions, root)
    parameters = {
        "num_cases": num_cases,
        "image_size": list(size),
        "nodules_per_case": [int(low), int(high)],
        "split_fractions": list(fractions),
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
            hu, lungs = _chest_anatomy(size, rng)
            mask, boxes, sizes, attenuations = _add_nodules(hu, lungs, rng, int(rng.integers(low, high + 1)))
            hu = ndimage.gaussian_filter(hu, 0.5, truncate=3.0)
            hu += 10.0 * rng.standard_normal(size, dtype=np.float32)
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


# ----------------------------------------------------------------------------------------------------------------
# bundle entry point
# ----------------------------------------------------------------------------------------------------------------

PHANTOM_KINDS: dict[str, tuple[Callable[..., Path], dict[str, Any]]] = {
    "brain_mr_2d": (make_brain_mr, {"spatial_dims": 2}),
    "brain_mr_3d": (make_brain_mr, {"spatial_dims": 3}),
    "chest_ct": (make_chest_ct, {}),
    "brain_metastases": (make_brain_metastases, {}),
}
"""Phantom kinds accepted by :py:func:`prepare_phantom`: generator function and fixed keyword arguments."""


NO_PHANTOM = ("", "none", "null", "false")


def prepare_phantom(dataset_dir: str | os.PathLike, kind: str | None, **kwargs: Any) -> str | None:
    """Return the datalist of a phantom set in ``dataset_dir``, generating the set first if it is missing.

    Cheap when ``<dataset_dir>/datalist.json`` exists (nothing is read or regenerated), so it can be called from a
    bundle config's ``initialize`` section.

    Args:
        dataset_dir: directory of the set.
        kind: one of ``"brain_mr_2d"``, ``"brain_mr_3d"``, ``"chest_ct"``, ``"brain_metastases"``; ``None`` or
            ``"none"`` (also ``"null"``, ``"false"``, ``""``) when the bundle uses the user's own datalist: nothing is
            generated (``python -m monai.bundle run`` drops ``None`` overrides, hence the strings).
        kwargs: keyword arguments of the generator (:py:func:`make_brain_mr`, :py:func:`make_chest_ct` or
            :py:func:`make_brain_metastases`), used only when the set is generated.

    Returns:
        path of ``<dataset_dir>/datalist.json`` as a string, or ``None`` when ``kind`` says no phantom.

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
    datalist = Path(dataset_dir).expanduser() / DATALIST_NAME
    if datalist.is_file():
        return str(datalist)
    logger.info("Generating phantom data set %r in %s.", kind, datalist.parent)
    return str(generator(datalist.parent, **{**kwargs, **fixed}, datalist_name=DATALIST_NAME))
