"""The shared conversion engine: a source's case list in, converted files and a Decathlon-style datalist out.

A source family (:py:mod:`.brats`, :py:mod:`.msd`, :py:mod:`.kits`) supplies a :class:`VolumeConverter`: a reader
that knows the public release's folder and file names (:py:meth:`VolumeConverter.find_cases`, one
:class:`Case` per case folder) and a loader of one case's channel volumes and label
(:py:meth:`VolumeConverter.load_case`); a source with other outputs (class labels without masks, boxes) overrides
:py:meth:`VolumeConverter.write_case` and :py:meth:`VolumeConverter.validation_args`, a release with its own split
(MedMNIST) :py:meth:`VolumeConverter.assign_splits`, and one released as a single file sets
:py:attr:`VolumeConverter.input_is_file`. Everything else is shared and lives here:

- **output**: 3D volumes (one NIfTI file per channel plus the label) or 2D slices along one axis in a slice range,
  each slice with the class "label present" (at least ``min_area`` voxels of the positive labels);
- **streaming**: one case at a time, in-process (``num_workers=0``) or in ``num_workers`` worker processes, with a
  progress bar (tqdm when installed, else a logged counter); memory stays that of one case per worker;
- **atomicity and resume**: a case is written into a hidden temporary folder ``cases/.<case>.partial-<hex>`` and
  renamed to ``cases/<case>`` when complete, with its record ``case.json`` inside; a re-run reuses every case whose
  record exists (resume) and removes the temporary folders a killed run left behind; the datalist JSON is written
  last, to a temporary name, validated with :py:func:`common.data.validate_datalist` and renamed;
- **splits**: training / validation / test by patient with a fixed seed, stratified by the patient's class (any
  positive entry), with the phantoms' assignment rule (:py:func:`common.data.splits.split_patients`) and checked with
  :py:func:`common.data.check_patient_disjoint`;
- **bad input**: an unknown layout raises :class:`LayoutError` before anything is written; a bad case (missing
  channel, unreadable file, image/label geometry mismatch) raises :class:`CaseError` and is listed as skipped with
  its reason; any other error stops the conversion (finished cases stay, unfinished ones leave nothing);
- **summary**: cases found, converted, reused, skipped (with reasons) and excluded, entries and class counts per
  section, logged and written to ``OUTPUT_DIR/conversion_summary.json``.

Output layout (paths in the datalist are relative to ``OUTPUT_DIR``)::

    OUTPUT_DIR/datalist.json                    training / validation / test entries
    OUTPUT_DIR/conversion_summary.json
    OUTPUT_DIR/conversion_options.json          what the case files depend on (a re-run must agree)
    OUTPUT_DIR/cases/<case>/case.json           the case's record (its entries, counts)
    OUTPUT_DIR/cases/<case>/<channel>.nii.gz    3D; 2D: s<slice>_<channel>.nii.gz
    OUTPUT_DIR/cases/<case>/seg.nii.gz          3D; 2D: s<slice>_seg.nii.gz

Entries mirror the phantoms (:py:func:`common.data.make_brain_mr`): ``{"image": [one file per channel],
"label": mask, "class": 0 or 1, "patient": id}``, plus ``"case"`` and, in 2D, ``"slice"`` (index along the
slice axis), and the attributes the reader attaches (e.g. a BraTS ``"grade"``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from common.data.preprocessing import VolumePreprocessing, axial_axis
from common.data.splits import SPLIT_NAMES, check_patient_disjoint, split_patients
from common.data.validation import validate_datalist
from common.utils import atomic_path, atomic_write_json, save_nifti

__all__ = [
    "CASES_DIR",
    "DATALIST_NAME",
    "SUMMARY_NAME",
    "Case",
    "CaseError",
    "ConversionError",
    "LayoutError",
    "LoadedCase",
    "OutputOptions",
    "VolumeConverter",
    "load_aligned",
    "load_volume",
    "read_itk",
    "parse_numbers",
    "parse_slices",
    "parse_split",
    "run_conversion",
]

logger = logging.getLogger("common.data")

DATALIST_NAME = "datalist.json"
SUMMARY_NAME = "conversion_summary.json"
OPTIONS_NAME = "conversion_options.json"
CASES_DIR = "cases"
RECORD_NAME = "case.json"
LABEL_NAME = "seg"
_PARTIAL = re.compile(r"^\..+\.partial-[0-9a-f]{12}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class LayoutError(ValueError):
    """The input folder is not laid out as the source's public release; raised before any case is converted."""


class CaseError(Exception):
    """One case cannot be converted (bad input); the case is skipped and listed with this message as reason."""


class ConversionError(RuntimeError):
    """The conversion produced nothing usable (e.g. every case was skipped)."""


@dataclass(frozen=True)
class Case:
    """One case of a source: the files of one scan of one patient, as found by a reader.

    Attributes:
        case_id: unique, file-name safe identifier; the name of the case's output folder.
        patient: patient identifier (cases of one patient always land in one split).
        files: role -> absolute path; the roles are the converter's channel names and ``"label"``.
        attributes: extra keys copied into every entry of the case (e.g. ``{"grade": "HGG"}``).
        problem: set by the reader for a case it knows is bad (e.g. a missing modality): the case is listed as
            skipped with this reason and never loaded.
        excluded: set by the reader for a case left out on purpose (e.g. another tumour grade than asked): listed
            as excluded with this reason, never converted.
    """

    case_id: str
    patient: str
    files: Mapping[str, str]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None
    excluded: str | None = None


@dataclass
class LoadedCase:
    """The arrays of one case, as a converter's loader returns them.

    Attributes:
        channels: one spatial array ``(X, Y, Z)`` per channel, in the converter's channel order.
        label: integer label array ``(X, Y, Z)``.
        affine: 4x4 voxel-to-world affine shared by the channels and the label.
        masks: extra boolean masks on the same grid by name (e.g. ``"lung"``, from the preprocessing), written
            beside the label as ``<name>.nii.gz`` and named in each entry under that key.
    """

    channels: list[np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputOptions:
    """What is written for each case; the case files depend only on these and the converter's own options.

    Attributes:
        spatial_dims: 3 for volumes, 2 for slices.
        slices: 2D only: half-open range ``(start, stop)`` of slice indices along the slice axis (``(30, 126)``
            keeps slices 30-125); ``None`` keeps all. Indices past the volume's end are ignored.
        slice_axis: 2D only: the voxel axis sliced; ``None`` for the axial axis, found from the affine (the axis
            closest to the world's inferior-superior direction).
        min_area: voxels (2D: pixels of the slice; 3D: voxels of the volume) of the positive labels for class 1;
            an entry with some but fewer positive voxels is ambiguous and left out (counted in the summary).
        positive_labels: label values that count as positive for the class; ``None`` for every value > 0.
        preprocessing: what is done to each case's volume before it is written (N4, orientation, spacing,
            in-plane size, lung mask, intensity; :class:`common.data.preprocessing.VolumePreprocessing`); nothing
            by default. The 2D slices are cut from the preprocessed volume, so ``slices`` index its grid.
    """

    spatial_dims: int = 3
    slices: tuple[int, int] | None = None
    slice_axis: int | None = None
    min_area: int = 1
    positive_labels: tuple[int, ...] | None = None
    preprocessing: VolumePreprocessing = field(default_factory=VolumePreprocessing)

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}.")
        if self.spatial_dims == 3 and (self.slices is not None or self.slice_axis is not None):
            raise ValueError("slices and slice_axis apply to 2D output (spatial_dims=2) only.")
        if self.slices is not None and not (0 <= self.slices[0] < self.slices[1]):
            raise ValueError(f"slices must be a range start:stop with 0 <= start < stop, got {self.slices!r}.")
        if self.slice_axis is not None and self.slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1, 2 or None (axial), got {self.slice_axis!r}.")
        if int(self.min_area) < 1:
            raise ValueError(f"min_area must be >= 1, got {self.min_area!r}.")

    def as_dict(self) -> dict[str, Any]:
        return {
            "spatial_dims": self.spatial_dims,
            "slices": list(self.slices) if self.slices is not None else None,
            "slice_axis": self.slice_axis,
            "min_area": int(self.min_area),
            "positive_labels": list(self.positive_labels) if self.positive_labels is not None else None,
            # only when some step is on, so that conversions made before the preprocessing existed still resume
            **({} if self.preprocessing.is_identity else {"preprocessing": self.preprocessing.as_dict()}),
        }


class VolumeConverter:
    """Base of the source converters: sources of 3D volumes (several channels) with an integer label volume.

    Subclasses set the class attributes and implement :py:meth:`find_cases` and :py:meth:`load_case`; they must be
    picklable (worker processes receive a copy).

    Attributes:
        name: short source name (``"brats"``), used in the datalist's ``name``.
        description: one sentence on the source.
        reference: citation or URL of the public release.
    """

    name: str = "volumes"
    description: str = ""
    reference: str = ""
    input_is_file: bool = False
    """True for a source released as one file (MedMNIST's ``.npz``): the input is that file, not a folder."""
    supports_preprocessing: bool = True
    """False for a source whose cases are not volumes on one grid (MedMNIST's image blocks): preprocessing options
    are refused before anything is written."""

    @property
    def channel_names(self) -> list[str]:
        """Output channel names, in order (also the channel file names)."""
        raise NotImplementedError

    @property
    def labels(self) -> dict[str, str]:
        """Label value (as a string) -> name, of the written labels."""
        return {}

    def options(self) -> dict[str, Any]:
        """The converter's own options that the case files depend on (recorded; a re-run must agree)."""
        return {}

    def find_cases(self, input_dir: Path) -> list[Case]:
        """Read the release's layout and list its cases, without loading any image.

        Raises:
            LayoutError: naming the folder and the layout expected, when the folder is not such a release.
        """
        raise NotImplementedError

    def load_case(self, case: Case) -> LoadedCase:
        """Load one case's channels and label (checked: same shape and affine).

        Raises:
            CaseError: for a bad case (missing or unreadable file, geometry mismatch...).
        """
        raise NotImplementedError

    def write_case(
        self, loaded: LoadedCase, case: Case, folder: Path, prefix: str, options: OutputOptions
    ) -> dict[str, Any]:
        """Write one loaded case into its temporary folder and return its record (see :func:`write_case`).

        Sources with other outputs (class labels without masks, boxes) override this and
        :py:meth:`validation_args`; the engine's streaming, atomic case folders, resume, splits and summary stay.
        """
        return write_case(loaded, case, self.channel_names, folder, prefix, options)

    def assign_splits(self, records: Sequence[dict[str, Any]], fractions: Sequence[float], seed: int) -> dict[str, str]:
        """Patient -> ``"training"``/``"validation"``/``"test"``; a release with its own split overrides this."""
        return _assign_splits(records, fractions, seed)

    def check_options(self, options: OutputOptions) -> None:
        """Refuse output options this source cannot honour; called after :py:meth:`find_cases`, before any write.

        Raises:
            ValueError: naming the option and why.
        """
        if not (self.supports_preprocessing or options.preprocessing.is_identity):
            raise ValueError(
                f"the {self.name} converter takes no preprocessing (asked: {options.preprocessing.as_dict()}); its "
                "cases are not volumes on one grid. Preprocess in the bundle's transforms instead."
            )

    def validation_args(self, options: OutputOptions) -> dict[str, Any]:
        """Keyword arguments of :py:func:`common.data.validate_datalist` for the written datalist."""
        return {
            "label_key": "label",
            "class_key": "class",
            "required_keys": ("patient",),
            "spatial_dims": options.spatial_dims,
            "num_channels": len(self.channel_names),
        }


# ----------------------------------------------------------------------------------------------------------------
# argument parsing
# ----------------------------------------------------------------------------------------------------------------


def find_case_folders(candidates: Sequence[Path], pattern: re.Pattern[str]) -> tuple[Path, list[str]]:
    """The first of ``candidates`` that holds sub-folders named like ``pattern``, and those names, sorted.

    A release is often unpacked one folder up or down (``kits19/`` or ``kits19/data/``); the readers try each.

    Args:
        candidates: folders to try, in order.
        pattern: the case folder names of the release.

    Returns:
        ``(folder, names)``; ``names`` is empty (and ``folder`` the first candidate) when no candidate has a case.
    """
    for folder in candidates:
        if folder.is_dir():
            names = sorted(n for n in os.listdir(folder) if pattern.match(n) and (folder / n).is_dir())
            if names:
                return folder, names
    return candidates[0], []


def parse_numbers(value: str | Sequence[Any], what: str) -> list[float]:
    """Numbers from ``"7:1:2"``, ``"1,1,1.5"``, ``"(256, 256)"`` or a sequence; ``what`` names the option in errors."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[:,/\s]+", value.strip().strip("()[]")) if p]
    else:
        parts = list(value)
    try:
        return [float(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected numbers such as 7:1:2 or 1,1,1.5, got {value!r}.") from None


def parse_split(split: str | Sequence[float]) -> tuple[float, float, float]:
    """Training / validation / test fractions from ratios such as ``"7:1:2"``, ``"60:20:20"`` or ``(0.6, 0.2, 0.2)``.

    7:1:2 by patient is GA-UNet's split (Chen et al., sec. III.A) and CDA-GAN's (Xu et al. 2023, sec. 4.1: 20 % test,
    10 % validation); 60:20:20 is Vu et al.'s (sec. 3.3). Two values give no test set (``"8:2"``). Ratios are
    normalised to sum to 1.

    Raises:
        ValueError: for anything else, a negative ratio, or no training share.
    """
    values = parse_numbers(split, "split")
    if len(values) == 2:
        values.append(0.0)
    if len(values) != 3 or min(values) < 0 or values[0] <= 0:
        raise ValueError(
            f"split: expected 2 or 3 non-negative ratios training:validation[:test] with a positive training share, "
            f"e.g. 7:1:2 or 60:20:20, got {split!r}."
        )
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def parse_slices(slices: str | Sequence[int] | None) -> tuple[int, int] | None:
    """A half-open slice range from ``"30:126"`` or ``(30, 126)``; ``None``, ``""`` or ``"all"`` for all slices."""
    if slices is None or (isinstance(slices, str) and slices.strip().lower() in ("", "all", "none")):
        return None
    values = parse_numbers(slices, "slices")
    if len(values) != 2 or any(v != int(v) for v in values) or not 0 <= values[0] < values[1]:
        raise ValueError(f"slices: expected start:stop with 0 <= start < stop (e.g. 30:126), got {slices!r}.")
    return int(values[0]), int(values[1])


# ----------------------------------------------------------------------------------------------------------------
# loading and writing one case
# ----------------------------------------------------------------------------------------------------------------


_NIBABEL_EXTS = (".nii", ".nii.gz", ".img", ".hdr", ".mgz", ".mgh")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_itk(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an image through ITK (MetaImage ``.mha``/``.mhd``, NRRD...) in nibabel's conventions.

    ITK arrays are ``(z, y, x)`` and its physical space is LPS; the result is the ``(x, y, z)`` array and the
    voxel-to-RAS affine ``diag(-1, -1, 1, 1) @ [direction * spacing | origin]``, so that a written NIfTI file keeps
    the world position of every voxel. ITK is imported on first use (it is slow to import).

    Returns:
        ``(array, affine)``.
    """
    import itk  # heavy: only for the sources that need it

    image = itk.imread(os.fspath(path))
    array = np.asarray(itk.array_from_image(image))
    dims = int(image.GetImageDimension())
    if dims != 3 or array.ndim != 3:
        raise ValueError(f"expected a 3D scalar image, got {dims}D with array shape {array.shape}")
    direction = np.asarray(itk.array_from_matrix(image.GetDirection()), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]
    lps[:3, 3] = np.asarray(image.GetOrigin(), dtype=np.float64)
    return np.ascontiguousarray(array.transpose(2, 1, 0)), _LPS_TO_RAS @ lps


def load_volume(path: str | os.PathLike, case_id: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an image file fully, turning every read failure into a :class:`CaseError`.

    NIfTI (and the other nibabel formats) load through nibabel, anything else (``.mha``, ``.mhd``, ``.nrrd``)
    through ITK (:func:`read_itk`).

    Args:
        path: the file.
        case_id: the case, named in the error.
        role: what the file is (``"t1"``, ``"label"``...), named in the error.

    Returns:
        ``(array, affine)``; the array keeps the stored data type (scaled values when the header has a slope).

    Raises:
        CaseError: when the file is missing, truncated or not an image.
    """
    if not os.path.isfile(path):
        raise CaseError(f"{role} file missing: {path}")
    try:
        if os.fspath(path).lower().endswith(_NIBABEL_EXTS):
            image = nib.load(os.fspath(path))
            array = np.asanyarray(image.dataobj)
            affine = np.asarray(image.affine, dtype=np.float64)
        else:
            array, affine = read_itk(path)
    except Exception as e:  # nibabel raises many types for a corrupt file (EOFError, zlib.error, ImageFileError...)
        raise CaseError(f"{role} file unreadable or corrupt: {path} ({type(e).__name__}: {e})") from None
    if not np.all(np.isfinite(affine)):
        raise CaseError(f"{role} file has a non-finite affine: {path}")
    return array, affine


def check_geometry(case_id: str, arrays: Mapping[str, tuple[np.ndarray, np.ndarray]], atol: float = 1e-3) -> None:
    """Check that every volume of a case has the same spatial shape and affine.

    Args:
        case_id: the case, named in the error.
        arrays: role -> ``(array, affine)`` of 3D volumes.
        atol: absolute tolerance on the affine entries (mm).

    Raises:
        CaseError: naming the first role that differs from the first one, with both shapes or affines.
    """
    items = list(arrays.items())
    ref_role, (ref, ref_affine) = items[0]
    for role, (array, affine) in items:
        if array.ndim != 3:
            raise CaseError(f"{role} is not a 3D volume (shape {tuple(array.shape)})")
        if array.shape != ref.shape:
            raise CaseError(
                f"geometry mismatch: {role} has shape {tuple(array.shape)}, {ref_role} has {tuple(ref.shape)}"
            )
        if not np.allclose(affine, ref_affine, atol=atol):
            raise CaseError(
                f"geometry mismatch: {role} and {ref_role} have different affines "
                f"({np.round(affine, 3).tolist()} vs {np.round(ref_affine, 3).tolist()})"
            )


def load_aligned(case: Case, roles: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load the files of ``roles`` of a case (one 3D volume each) and check that they share shape and affine.

    Returns:
        role -> ``(array, affine)``, in the order of ``roles``.

    Raises:
        CaseError: for a missing or unreadable file or a geometry mismatch.
    """
    arrays = {role: load_volume(case.files[role], case.case_id, role) for role in roles}
    check_geometry(case.case_id, arrays)
    return arrays


def integer_labels(label: np.ndarray, case_id: str) -> np.ndarray:
    """The label volume as uint8 (or int16 when its values do not fit), rejecting non-integer values."""
    values = np.asarray(label)
    if not np.issubdtype(values.dtype, np.integer):
        rounded = np.rint(values)
        if not np.all(np.isfinite(values)) or not np.allclose(values, rounded, atol=1e-3):
            raise CaseError("label has non-integer or non-finite values")
        values = rounded
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > 255:
        if low < -32768 or high > 32767:
            raise CaseError(f"label values {low}..{high} out of range")
        return values.astype(np.int16)
    return values.astype(np.uint8)


def _plane(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` as a view: ``np.take`` first copies a Fortran-order volume (as nibabel loads
    it) whole into C order, for every slice and channel, which was 95 % of a BraTS 2D conversion."""
    return array[(slice(None),) * axis + (index,)]


def _slice_affine(affine: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Affine of slice ``index`` along ``axis``: the two remaining axes first, the sliced axis third, origin moved."""
    others = [a for a in range(3) if a != axis]
    result = np.eye(4)
    result[:3, 0] = affine[:3, others[0]]
    result[:3, 1] = affine[:3, others[1]]
    result[:3, 2] = affine[:3, axis]
    result[:3, 3] = affine[:3, 3] + affine[:3, axis] * index
    return result


def _positive_count(label: np.ndarray, positive_labels: tuple[int, ...] | None) -> int:
    if positive_labels is None:
        return int(np.count_nonzero(label > 0))
    return int(np.count_nonzero(np.isin(label, positive_labels)))


def _class_of(count: int, min_area: int) -> int | None:
    """1 with at least ``min_area`` positive voxels, 0 with none, ``None`` (ambiguous) in between."""
    if count >= min_area:
        return 1
    return 0 if count == 0 else None


def write_case(
    loaded: LoadedCase, case: Case, channel_names: Sequence[str], folder: Path, prefix: str, options: OutputOptions
) -> dict[str, Any]:
    """Write one loaded case into ``folder`` and return its record (entries with paths starting with ``prefix``).

    Args:
        loaded: the case's arrays.
        case: the case (identifier, patient, attributes).
        channel_names: one name per channel (file names).
        folder: the case's (temporary) output folder.
        prefix: the case's folder relative to the output folder, as it appears in the entries.
        options: what to write.

    Returns:
        the record: ``{"case", "patient", "entries", "num_ambiguous"}``.

    Raises:
        CaseError: when no entry is left (e.g. the slice range lies past the volume).
    """
    if len(loaded.channels) != len(channel_names):
        raise CaseError(f"{len(loaded.channels)} channels loaded, expected {len(channel_names)}")
    base = {"patient": case.patient, "case": case.case_id, **dict(case.attributes)}
    entries: list[dict[str, Any]] = []
    ambiguous = 0
    if options.spatial_dims == 3:
        label_class = _class_of(_positive_count(loaded.label, options.positive_labels), options.min_area)
        if label_class is None:
            raise CaseError(f"tumour/foreground of fewer than min_area={options.min_area} voxels (ambiguous class)")
        files = []
        for name, channel in zip(channel_names, loaded.channels):
            save_nifti(channel, folder / f"{name}.nii.gz", loaded.affine)
            files.append(f"{prefix}/{name}.nii.gz")
        save_nifti(loaded.label, folder / f"{LABEL_NAME}.nii.gz", loaded.affine)
        masks = write_masks(loaded, folder, prefix)
        entries.append(
            {"image": files, "label": f"{prefix}/{LABEL_NAME}.nii.gz", "class": label_class, **masks, **base}
        )
    else:
        axis = axial_axis(loaded.affine) if options.slice_axis is None else options.slice_axis
        size = loaded.label.shape[axis]
        start, stop = options.slices if options.slices is not None else (0, size)
        indices = range(start, min(stop, size))
        if not indices:
            raise CaseError(f"no slice in the range {start}:{stop} (the volume has {size} slices along axis {axis})")
        for index in indices:
            mask = _plane(loaded.label, axis, index)
            slice_class = _class_of(_positive_count(mask, options.positive_labels), options.min_area)
            if slice_class is None:
                ambiguous += 1
                continue
            affine = _slice_affine(loaded.affine, axis, index)
            stem = f"s{index:03d}"
            files = []
            for name, channel in zip(channel_names, loaded.channels):
                save_nifti(_plane(channel, axis, index), folder / f"{stem}_{name}.nii.gz", affine)
                files.append(f"{prefix}/{stem}_{name}.nii.gz")
            save_nifti(mask, folder / f"{stem}_{LABEL_NAME}.nii.gz", affine)
            entry = {"image": files, "label": f"{prefix}/{stem}_{LABEL_NAME}.nii.gz", "class": slice_class}
            entry.update(write_masks(loaded, folder, prefix, f"{stem}_", axis, index))
            entries.append({**entry, **base, "slice": index})
        if not entries:
            raise CaseError(
                f"every slice of the range {start}:{stop} has fewer than min_area={options.min_area} tumour pixels"
            )
    return {"case": case.case_id, "patient": case.patient, "entries": entries, "num_ambiguous": ambiguous}


def preprocess_case(loaded: LoadedCase, options: OutputOptions) -> LoadedCase:
    """``loaded`` after ``options.preprocessing`` (itself when no step is on).

    Raises:
        CaseError: a step cannot run on this case (named, with the reason).
    """
    preprocessing = options.preprocessing
    if preprocessing.is_identity:
        return loaded
    try:
        out = preprocessing(loaded.channels, loaded.label, loaded.affine, slice_axis=options.slice_axis)
    except ValueError as e:
        raise CaseError(f"preprocessing {preprocessing.as_dict()} failed: {e}") from None
    return LoadedCase(out.channels, out.label, out.affine, {**loaded.masks, **out.masks})


def write_masks(
    loaded: LoadedCase, folder: Path, prefix: str, stem: str = "", axis: int | None = None, index: int | None = None
) -> dict[str, str]:
    """Write the case's extra masks (uint8) as ``<stem><name>.nii.gz``; their entry keys -> relative paths.

    Args:
        loaded: the case (its ``masks``, ``affine``).
        folder: the case's (temporary) output folder.
        prefix: the case's folder as it appears in the entries.
        stem: file name prefix (2D: ``"s030_"``).
        axis, index: 2D: write the slice ``index`` along ``axis`` (with the slice's affine); 3D: ``None``.
    """
    paths: dict[str, str] = {}
    for name, mask in loaded.masks.items():
        if axis is None or index is None:
            array, affine = mask, loaded.affine
        else:
            array, affine = _plane(mask, axis, index), _slice_affine(loaded.affine, axis, index)
        save_nifti(np.asarray(array, dtype=np.uint8), folder / f"{stem}{name}.nii.gz", affine)
        paths[name] = f"{prefix}/{stem}{name}.nii.gz"
    return paths


def convert_case(converter: VolumeConverter, case: Case, output_dir: Path, options: OutputOptions) -> dict[str, Any]:
    """Load, convert and atomically publish one case: written in a hidden temporary folder, renamed when complete.

    Returns:
        the case's record (also written as ``cases/<case>/case.json``).

    Raises:
        CaseError: for a bad case (nothing is left behind).
    """
    cases_dir = output_dir / CASES_DIR
    final = cases_dir / case.case_id
    tmp = cases_dir / f".{case.case_id}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    try:
        if case.problem is not None:
            raise CaseError(case.problem)
        loaded = preprocess_case(converter.load_case(case), options)
        record = converter.write_case(loaded, case, tmp, f"{CASES_DIR}/{case.case_id}", options)
        atomic_write_json(record, tmp / RECORD_NAME)
        if final.exists():  # an incomplete folder of another writer (no record): replaced
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _convert_one(
    converter: VolumeConverter, case: Case, output_dir: Path, options: OutputOptions
) -> tuple[str, dict[str, Any] | str]:
    """Worker entry point: ``("done", record)`` or ``("skipped", reason)``; other errors propagate."""
    try:
        return "done", convert_case(converter, case, output_dir, options)
    except CaseError as e:
        return "skipped", str(e)


def _read_record(output_dir: Path, case_id: str) -> dict[str, Any] | None:
    path = output_dir / CASES_DIR / case_id / RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("case") == case_id else None


# ----------------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------------


class _Progress:
    """tqdm when it is installed, else a counter logged about every 5 % (and at the end) with the rate."""

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.total, self.count, self.start = total, 0, time.perf_counter()
        self.description, self.enabled = description, enabled
        self.bar = None
        self.step = max(1, total // 20)
        if enabled and total:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=description, unit="case")
            except ImportError:
                self.bar = None

    def update(self) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and (self.count % self.step == 0 or self.count == self.total):
            elapsed = time.perf_counter() - self.start
            logger.info(
                "%s: %d/%d cases (%.2f cases/s)", self.description, self.count, self.total, self.count / elapsed
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _prepare_output(output_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Create the output folder or check that it holds a conversion with the same case options; clean leftovers."""
    options_file = output_dir / OPTIONS_NAME
    if options_file.is_file():
        previous = json.loads(options_file.read_text(encoding="utf-8"))
        if previous != fingerprint:
            raise ValueError(
                f"{output_dir} holds a conversion made with other options ({previous}); the options now are "
                f"{fingerprint}. Use another output folder (or delete this one)."
            )
    elif output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(
            f"{output_dir} exists, is not empty and holds no conversion ({OPTIONS_NAME} missing); refusing to write "
            "into it. Use a new or empty output folder."
        )
    else:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(fingerprint, options_file)
    cases_dir = output_dir / CASES_DIR
    cases_dir.mkdir(exist_ok=True)
    for name in os.listdir(cases_dir):  # folders of cases a killed run was writing
        if _PARTIAL.match(name):
            shutil.rmtree(cases_dir / name, ignore_errors=True)
            logger.info("Removed the unfinished case folder %s of an earlier run.", cases_dir / name)


def _assign_splits(records: Sequence[dict[str, Any]], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Patient -> split, stratified by patient class (1 when any entry of the patient has class 1)."""
    patient_class: dict[str, int] = {}
    for record in records:
        for entry in record["entries"]:
            patient = str(entry["patient"])
            patient_class[patient] = max(patient_class.get(patient, 0), int(entry.get("class", 0)))
    patients = sorted(patient_class)
    classes = [patient_class[p] for p in patients]
    return split_patients(patients, classes, fractions, np.random.default_rng(int(seed)))


def run_conversion(
    converter: VolumeConverter,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    options: OutputOptions | None = None,
    split: str | Sequence[float] = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    check_values: bool = False,
) -> dict[str, Any]:
    """Convert a public release folder into converted files and a validated, patient-split datalist.

    Args:
        converter: the source's converter.
        input_dir: the release folder as downloaded (and unpacked).
        output_dir: where the files, ``datalist.json`` and ``conversion_summary.json`` go; new, empty, or an earlier
            conversion with the same case options (finished cases are reused).
        options: what to write per case (3D volumes by default).
        split: training:validation:test ratios of patients (see :func:`parse_split`); only the datalist depends on
            it, so a re-run with another split reuses every case.
        seed: seed of the patient split.
        num_workers: worker processes; 0 converts in this process.
        progress: show a progress bar (or the logged counter).
        check_values: let the final validation read every voxel (NaN/Inf) instead of the headers only.

    Returns:
        the summary (also written to ``OUTPUT_DIR/conversion_summary.json``): ``datalist``, ``cases_found``,
        ``cases_converted``, ``cases_reused``, ``skipped`` (``[{"case", "reason"}]``), ``excluded``,
        ``num_entries`` and ``class_counts`` per section, ``num_patients`` per section, ``ambiguous_entries``,
        ``seconds`` and ``cases_per_second``.

    Raises:
        LayoutError: the input folder is not the source's layout (nothing written).
        ValueError / FileExistsError: bad arguments or an output folder that cannot be used (nothing written).
        ConversionError: no case could be converted (the summary is written, the datalist is not).
    """
    start_time = time.perf_counter()
    options = OutputOptions() if options is None else options
    fractions = parse_split(split)
    if int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers!r}.")
    input_path = Path(input_dir).expanduser().absolute()
    if converter.input_is_file:
        if not input_path.is_file():
            raise LayoutError(f"input file {input_path} does not exist or is not a file.")
    elif not input_path.is_dir():
        raise LayoutError(f"input folder {input_path} does not exist or is not a folder.")
    output_path = Path(output_dir).expanduser().absolute()
    if output_path == input_path or input_path in output_path.parents:
        raise ValueError(f"the output folder {output_path} must lie outside the input folder {input_path}.")

    all_cases = converter.find_cases(input_path)
    excluded = [{"case": c.case_id, "reason": c.excluded} for c in all_cases if c.excluded is not None]
    cases = [c for c in all_cases if c.excluded is None]
    if not cases:
        raise LayoutError(f"no {converter.name} case to convert under {input_path}.")
    ids = Counter(c.case_id for c in cases)
    duplicates = sorted(i for i, n in ids.items() if n > 1)
    if duplicates:
        raise LayoutError(f"case identifiers found more than once under {input_path}: {duplicates}")
    for c in cases:
        if not _SAFE_ID.match(c.case_id):
            raise LayoutError(f"case identifier {c.case_id!r} is not a safe folder name.")

    converter.check_options(options)
    fingerprint = {"converter": converter.name, **converter.options(), **options.as_dict()}
    _prepare_output(output_path, fingerprint)

    records: dict[str, dict[str, Any]] = {}
    todo: list[Case] = []
    for case in cases:
        record = _read_record(output_path, case.case_id)
        if record is not None:
            records[case.case_id] = record
        else:
            todo.append(case)
    reused = len(records)
    if reused:
        logger.info("%d of %d cases already converted in %s: reused.", reused, len(cases), output_path)
    skipped: list[dict[str, str]] = []

    def handle(case: Case, status: str, result: Any) -> None:
        if status == "done":
            records[case.case_id] = result
        else:
            skipped.append({"case": case.case_id, "reason": result})
            logger.warning("Skipped case %s: %s", case.case_id, result)

    bar = _Progress(len(todo), f"{converter.name}: converting", enabled=progress)
    try:
        if int(num_workers) == 0 or len(todo) <= 1:
            for case in todo:
                handle(case, *_convert_one(converter, case, output_path, options))
                bar.update()
        else:
            # fork where there is one: a spawned worker would import torch and MONAI again (seconds each); the
            # workers run numpy and nibabel only
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ProcessPoolExecutor(max_workers=int(num_workers), mp_context=context) as pool:
                futures = {pool.submit(_convert_one, converter, c, output_path, options): c for c in todo}
                try:
                    for future in as_completed(futures):
                        handle(futures[future], *future.result())
                        bar.update()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()

    done = [records[c.case_id] for c in cases if c.case_id in records]
    skipped.sort(key=lambda s: s["case"])
    summary: dict[str, Any] = {
        "source": converter.name,
        "input_dir": str(input_path),
        "output_dir": str(output_path),
        "datalist": None,
        "cases_found": len(all_cases),
        "cases_converted": len(done) - reused,
        "cases_reused": reused,
        "skipped": skipped,
        "excluded": excluded,
        "options": options.as_dict(),
        "converter_options": converter.options(),
        "split": list(fractions),
        "seed": int(seed),
    }
    if not done:
        _finish_summary(summary, output_path, start_time)
        raise ConversionError(
            f"no case of {input_path} could be converted ({len(skipped)} skipped; see {output_path / SUMMARY_NAME})."
        )

    assignment = converter.assign_splits(done, fractions, seed)
    sections: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for record in done:
        for entry in record["entries"]:
            sections[assignment[str(entry["patient"])]].append(entry)
    datalist = {
        "name": f"{converter.name}_{options.spatial_dims}d",
        "description": converter.description,
        "reference": converter.reference,
        "modality": {str(i): name for i, name in enumerate(converter.channel_names)},
        "labels": converter.labels,
        "spatial_dims": options.spatial_dims,
        "converter": f"common.data.converters.{type(converter).__name__}",
        "parameters": {**fingerprint, "split": list(fractions), "seed": int(seed)},
    }
    datalist.update({f"num{name.capitalize()}": len(items) for name, items in sections.items()})
    datalist.update(sections)
    check_patient_disjoint(datalist)
    datalist_path = output_path / DATALIST_NAME
    with atomic_path(datalist_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(datalist, indent=2) + "\n")
        validate_datalist(
            tmp,
            sections=[name for name in SPLIT_NAMES if sections[name]],
            check_values=check_values,
            **converter.validation_args(options),
        )
    summary["datalist"] = str(datalist_path)
    summary["num_entries"] = {name: len(items) for name, items in sections.items()}
    summary["num_patients"] = {name: len({e["patient"] for e in items}) for name, items in sections.items()}
    summary["class_counts"] = {
        name: dict(sorted(Counter(int(e["class"]) for e in items if "class" in e).items()))
        for name, items in sections.items()
    }
    summary["ambiguous_entries"] = sum(int(r.get("num_ambiguous", 0)) for r in done)
    _finish_summary(summary, output_path, start_time)
    return summary


def _finish_summary(summary: dict[str, Any], output_dir: Path, start_time: float) -> None:
    """Add the timing, write the summary JSON atomically and log it."""
    seconds = time.perf_counter() - start_time
    summary["seconds"] = round(seconds, 3)
    summary["cases_per_second"] = round(summary["cases_converted"] / seconds, 3) if seconds > 0 else None
    atomic_write_json(summary, output_dir / SUMMARY_NAME)
    logger.info(format_summary(summary))


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few readable lines."""
    lines = [
        f"{summary['source']}: {summary['cases_found']} cases found, {summary['cases_converted']} converted, "
        f"{summary['cases_reused']} reused, {len(summary['skipped'])} skipped, {len(summary['excluded'])} excluded "
        f"in {summary.get('seconds', 0):.1f} s"
    ]
    for name in SPLIT_NAMES:
        if "num_entries" in summary:
            lines.append(
                f"  {name}: {summary['num_patients'][name]} patients, {summary['num_entries'][name]} entries, "
                f"classes {summary['class_counts'][name]}"
            )
    if summary.get("ambiguous_entries"):
        lines.append(f"  left out as ambiguous (0 < positive voxels < min_area): {summary['ambiguous_entries']}")
    for item in summary["skipped"]:
        lines.append(f"  skipped {item['case']}: {item['reason']}")
    for item in summary["excluded"]:
        lines.append(f"  excluded {item['case']}: {item['reason']}")
    if summary.get("datalist"):
        lines.append(f"  datalist: {summary['datalist']}")
    return "\n".join(lines)
