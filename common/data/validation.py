"""Validation of Decathlon-style datalists before any training step runs.

:func:`validate_datalist` checks a datalist JSON file (the format read by ``monai.data.load_decathlon_datalist``)
and every image, label, box and class it references. It collects *all* problems and raises a single
:class:`DatalistError` listing each offending entry with its file and the problem, one per line, e.g.::

    training[3] image '/abs/path/case_3_t1.nii.gz': contains 12 NaN/Inf voxels

Files are read with the reader ``LoadImaged`` picks for them, so that validation and the training chain agree:
nibabel for ``.nii``/``.nii.gz`` (only the header unless ``check_values`` or a label check needs the voxels), and
MONAI's ``ITKReader`` for everything else: single DICOM files, DICOM series folders (a directory path), NRRD,
MHA/MHD. ITK files are read whole; their affines are converted from ITK's LPS to RAS as ``LoadImaged`` does, so
that they compare with NIfTI affines. A NIfTI of up to 3 axes has no channel axis (MONAI reads it as one channel),
so a 2D slice may be stored as ``(H, W, 1)`` (the bundles drop the singleton axis with
``common.transforms.SqueezeToSpatialDimsd``), and a channels-last 2D image as ``(H, W, 1, C)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import nibabel as nib
import numpy as np
from common.utils.errors import UserInputError
from common.utils.hashing import sha256_file
from monai.data import ITKReader, NibabelReader
from monai.data.utils import to_affine_nd

__all__ = ["DatalistError", "DatalistProblem", "load_datalist_file", "require_entries", "validate_datalist"]

logger = logging.getLogger("common.data")

AFFINE_RTOL = 1e-3
"""Relative tolerance used when comparing affines of files that must share a voxel grid."""
AFFINE_ATOL = 1e-3
"""Absolute tolerance (in world units, usually mm) used when comparing affines."""
MAX_LISTED_VALUES = 5
"""Most offending label values named in one problem."""


@dataclass(frozen=True)
class DatalistProblem:
    """One problem found in a datalist.

    Attributes:
        section: datalist section (e.g. ``"training"``), ``None`` for problems of the datalist file itself.
        index: index of the entry in the section, ``None`` for file- or section-level problems.
        key: entry key concerned (e.g. ``"image"``), ``None`` when the whole entry or section is concerned.
        file: absolute path of the file concerned, ``None`` when no single file is concerned.
        problem: human-readable description of the problem.
    """

    section: str | None
    index: int | None
    key: str | None
    file: str | None
    problem: str

    def __str__(self) -> str:
        where = "datalist" if self.section is None else self.section
        if self.index is not None:
            where += f"[{self.index}]"
        if self.key is not None:
            where += f" {self.key}"
        if self.file is not None:
            where += f" '{self.file}'"
        return f"{where}: {self.problem}"


class DatalistError(UserInputError, ValueError):
    """Raised by :func:`validate_datalist` when a datalist has one or more problems.

    Args:
        problems: every problem found, in the order found.
        datalist_file: path of the datalist JSON file, used in the message.

    Attributes:
        problems: list of :class:`DatalistProblem` records ``(section, index, key, file, problem)``.
        datalist_file: path of the datalist JSON file.
    """

    # B042: __reduce__ below gives pickle and copy the arguments, the message is built from them
    def __init__(  # noqa: B042
        self, problems: Sequence[DatalistProblem], datalist_file: str | os.PathLike | None = None
    ) -> None:
        self.problems = list(problems)
        self.datalist_file = None if datalist_file is None else os.fspath(datalist_file)
        n = len(self.problems)
        name = "" if self.datalist_file is None else f" '{self.datalist_file}'"
        header = f"Datalist{name} failed validation with {n} problem{'s' if n != 1 else ''}:"
        super().__init__("\n".join([header, *(str(p) for p in self.problems)]))

    def __reduce__(self) -> tuple:
        return self.__class__, (self.problems, self.datalist_file)


@dataclass
class _FileInfo:
    """Header (and optionally value) information of one image file, cached per path."""

    shape: tuple[int, ...] = ()
    affine: np.ndarray | None = None
    error: str | None = None
    nonfinite: int = 0
    channels_last: bool = False
    """Whether the reader gives the last axis as channels (NIfTI of more than 3 axes, ITK multi-component)."""
    values: np.ndarray | None = None
    """Sorted distinct voxel values, when asked for."""


def _value_info(info: _FileInfo, data: np.ndarray, check_values: bool, unique: bool) -> _FileInfo:
    """Fill the NaN/Inf count (``check_values``) and distinct finite values (``unique``) of ``info`` from ``data``."""
    if data.dtype.kind in "fc":
        finite = np.isfinite(data)
        if check_values:
            info.nonfinite = int(data.size - np.count_nonzero(finite))
        if unique:
            info.values = np.unique(data[finite])
    elif unique:
        info.values = np.unique(data)
    return info


def _read_nifti(path: str, check_values: bool, unique: bool) -> _FileInfo:
    """Read a NIfTI header with nibabel, and its data when ``check_values`` or ``unique``."""
    try:
        img = nib.load(path)
        shape = tuple(int(s) for s in img.shape)
        affine = None if getattr(img, "affine", None) is None else np.asarray(img.affine, dtype=np.float64)
    except Exception as e:  # nibabel raises many exception types for corrupt or unsupported files
        return _FileInfo(error=f"unreadable by nibabel ({type(e).__name__}: {e})")
    info = _FileInfo(shape=shape, affine=affine, channels_last=len(shape) > 3)
    if check_values or unique:
        try:
            data = np.asanyarray(img.dataobj)
            if data.shape != shape:
                raise ValueError(f"data shape {data.shape} differs from header shape {shape}")
        except Exception as e:  # truncated or corrupt data blocks surface as EOFError, OSError, zlib errors...
            info.error = f"unreadable voxel data ({type(e).__name__}: {e})"
            return info
        _value_info(info, data, check_values, unique)
    return info


def _read_itk(path: str, check_values: bool, unique: bool) -> _FileInfo:
    """Read a file or DICOM series folder with MONAI's ``ITKReader``, as ``LoadImaged`` does (RAS affine)."""
    reader = ITKReader()
    try:
        data, meta = reader.get_data(reader.read(path))
    except Exception as e:  # ITK raises RuntimeError for unknown formats, empty folders, corrupt files...
        what = "a DICOM series folder" if os.path.isdir(path) else "a file"
        return _FileInfo(error=f"unreadable by ITK as {what} ({type(e).__name__}: {str(e).strip()[:300]})")
    data = np.asarray(data)
    channel_dim = meta.get("original_channel_dim")
    info = _FileInfo(
        shape=tuple(int(s) for s in data.shape),
        affine=np.asarray(meta["affine"], dtype=np.float64),
        channels_last=isinstance(channel_dim, Integral),
    )
    return _value_info(info, data, check_values, unique)


def _read_file(path: str, check_values: bool, unique: bool = False) -> _FileInfo:
    """Read ``path`` with the reader ``LoadImaged`` uses for it: nibabel for NIfTI, else MONAI's ``ITKReader``.

    Args:
        path: absolute path of a file, or of a DICOM series folder.
        check_values: whether to load the voxel data and count NaN/Inf voxels.
        unique: whether to load the voxel data and keep its distinct finite values (label checks).

    Returns:
        the file information; ``error`` is set when the file is missing or cannot be read.
    """
    if not os.path.exists(path):
        return _FileInfo(error="file not found")
    if os.path.isfile(path) and NibabelReader().verify_suffix(path):
        return _read_nifti(path, check_values, unique)
    return _read_itk(path, check_values, unique)


def _grid_affine(affine: np.ndarray, dims: int) -> np.ndarray:
    """The world position of voxel ``0`` and the world steps of the first ``dims`` voxel axes, ``(3, dims + 1)``.

    A 2D ITK file has a 3x3 affine and a 2D NIfTI a 4x4 one; both are embedded in 3D (``to_affine_nd``) and the
    steps along singleton axes beyond ``dims`` (a slice's thickness) are left out, as they place no voxel.
    """
    full = to_affine_nd(3, affine)
    return full[:3, [*range(min(dims, 3)), 3]]


def _squeezed_extra(shape: tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    """Non-spatial dims of ``shape`` (those after the first ``spatial_dims``) with singleton dims removed."""
    return tuple(d for d in shape[spatial_dims:] if d != 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


class _Validator:
    """Collects the problems of one datalist; see :func:`validate_datalist` for the arguments."""

    def __init__(
        self,
        base_dir: str,
        image_key: str,
        label_key: str | None,
        box_key: str | None,
        box_label_key: str | None,
        class_key: str | None,
        required_keys: Sequence[str],
        spatial_dims: int | None,
        num_channels: int | None,
        check_values: bool,
        label_values: Sequence[int] | None = None,
        nonnegative_labels: bool = False,
        box_attribute_keys: Sequence[str] = (),
    ) -> None:
        self.base_dir = base_dir
        self.image_key = image_key
        self.label_key = label_key
        self.box_key = box_key
        self.box_label_key = box_label_key
        self.class_key = class_key
        self.spatial_dims = spatial_dims
        self.num_channels = num_channels
        self.check_values = check_values
        self.label_values = None if label_values is None else sorted({int(v) for v in label_values})
        self.nonnegative_labels = nonnegative_labels
        self.box_attribute_keys = list(box_attribute_keys)
        keys = [image_key, label_key, box_key, class_key, *required_keys]
        self.keys = list(dict.fromkeys(k for k in keys if k is not None))
        self.problems: list[DatalistProblem] = []
        self.cache: dict[str, _FileInfo] = {}
        self.dims_found: set[int] = set()
        self.channels_found: set[int] = set()

    @property
    def checks_labels(self) -> bool:
        """Whether the label voxel values are checked (which needs the label data)."""
        return self.label_values is not None or self.nonnegative_labels

    def add(self, section: str | None, index: int | None, key: str | None, file: str | None, problem: str) -> None:
        self.problems.append(DatalistProblem(section, index, key, file, problem))

    def resolve(self, path: str | os.PathLike) -> str:
        return os.path.normpath(os.path.join(self.base_dir, os.fspath(path)))

    def info(self, path: str, unique: bool = False) -> _FileInfo:
        cached = self.cache.get(path)
        if cached is None or (unique and cached.values is None and cached.error is None):
            self.cache[path] = _read_file(path, self.check_values, unique)
        return self.cache[path]

    def paths_of(self, section: str, index: int, key: str, value: Any, allow_list: bool) -> list[str] | None:
        """Resolve the file path(s) of ``entry[key]``; report and return ``None`` when malformed."""
        if isinstance(value, (str, os.PathLike)):
            return [self.resolve(value)]
        if allow_list and isinstance(value, (list, tuple)):
            if not value:
                self.add(section, index, key, None, "empty list of files")
                return None
            if all(isinstance(v, (str, os.PathLike)) for v in value):
                return [self.resolve(v) for v in value]
        expected = "a file path or a list of file paths" if allow_list else "a file path"
        self.add(section, index, key, None, f"expected {expected}, got {value!r}")
        return None

    def check_file(self, section: str, index: int, key: str, path: str, unique: bool = False) -> _FileInfo | None:
        """Report a missing, unreadable or non-finite file; return its info when its header is usable."""
        info = self.info(path, unique)
        if info.error is not None and not info.shape:
            self.add(section, index, key, path, info.error)
            return None
        if info.error is not None:
            self.add(section, index, key, path, info.error)
        if info.nonfinite:
            self.add(section, index, key, path, f"contains {info.nonfinite} NaN/Inf voxels")
        return info

    def check_same_grid(
        self, section: str, index: int, key: str, path: str, info: _FileInfo, ref_path: str, ref: _FileInfo, dims: int
    ) -> None:
        """Report spatial shape or affine differences between ``path`` and the reference file ``ref_path``."""
        shape, ref_shape = info.shape[:dims], ref.shape[:dims]
        if shape != ref_shape:
            self.add(
                section,
                index,
                key,
                path,
                f"spatial shape {shape} differs from spatial shape {ref_shape} of '{ref_path}'",
            )
        if info.affine is not None and ref.affine is not None:
            affine, ref_affine = _grid_affine(info.affine, dims), _grid_affine(ref.affine, dims)
            if not np.allclose(affine, ref_affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL):
                diff = float(np.max(np.abs(affine - ref_affine)))
                self.add(section, index, key, path, f"affine differs from affine of '{ref_path}' (max abs diff {diff})")

    def entry_dims(self, image_infos: list[_FileInfo], is_list: bool, label_info: _FileInfo | None) -> int | None:
        """Spatial dims of an entry: the argument when given, else inferred (MONAI convention, label tie-break)."""
        if self.spatial_dims is not None:
            return self.spatial_dims
        if is_list and image_infos:
            return min(len(image_infos[0].shape), 3)
        if label_info is not None:
            return min(len(label_info.shape), 3)
        if image_infos:
            return min(len(image_infos[0].shape), 3)
        return None

    def check_entry(self, section: str, index: int, entry: Any, class_counts: Counter, box_counts: list[int]) -> None:
        if isinstance(entry, (str, os.PathLike)):  # Decathlon "test" sections may list bare image paths
            entry = {self.image_key: entry}
        if not isinstance(entry, dict):
            self.add(section, index, None, None, f"entry must be a dict, got {type(entry).__name__}")
            return
        for key in self.keys:
            if entry.get(key) is None:
                self.add(section, index, key, None, "key is missing")

        # image: one file (maybe channels-last) or a list of single-channel files, one per channel
        image_value = entry.get(self.image_key)
        is_list = isinstance(image_value, (list, tuple))
        image_paths = None
        if image_value is not None:
            image_paths = self.paths_of(section, index, self.image_key, image_value, allow_list=True)
        image_files: list[tuple[str, _FileInfo]] = []
        for path in image_paths or []:
            info = self.check_file(section, index, self.image_key, path)
            if info is not None:
                image_files.append((path, info))

        label_file: tuple[str, _FileInfo] | None = None
        if self.label_key is not None and entry.get(self.label_key) is not None:
            label_paths = self.paths_of(section, index, self.label_key, entry[self.label_key], allow_list=False)
            if label_paths:
                info = self.check_file(section, index, self.label_key, label_paths[0], unique=self.checks_labels)
                if info is not None:
                    label_file = (label_paths[0], info)

        dims = self.entry_dims([i for _, i in image_files], is_list, None if label_file is None else label_file[1])
        ref = self.check_image(section, index, image_files, is_list, len(image_paths or []), dims)
        if label_file is not None and dims is not None:
            self.check_label(section, index, label_file, ref, dims)
        if self.box_key is not None and entry.get(self.box_key) is not None:
            ref_shape = None if ref is None or dims is None else ref[1].shape[:dims]
            box_counts.append(self.check_boxes(section, index, entry, ref_shape, dims))
        if self.class_key is not None and entry.get(self.class_key) is not None:
            value = entry[self.class_key]
            if _is_int(value):
                class_counts[int(value)] += 1
            else:
                self.add(section, index, self.class_key, None, f"class value {value!r} is not an integer")

    def check_image(
        self,
        section: str,
        index: int,
        files: list[tuple[str, _FileInfo]],
        is_list: bool,
        num_files: int,
        dims: int | None,
    ) -> tuple[str, _FileInfo] | None:
        """Check dimensionality, channels and (for list images) grid agreement; return the reference file."""
        key = self.image_key
        if dims is None or not files:
            return None
        ref: tuple[str, _FileInfo] | None = None
        channels: int | None = num_files if is_list else None
        for path, info in files:
            shape = info.shape
            extra = _squeezed_extra(shape, dims)
            if len(shape) < dims:
                self.add(
                    section, index, key, path, f"has {len(shape)} dims (shape {shape}), expected {dims} spatial dims"
                )
                continue
            if is_list and extra:
                self.add(
                    section,
                    index,
                    key,
                    path,
                    f"has shape {shape}, expected a single-channel {dims}D array (one file per channel)",
                )
                continue
            if not is_list:
                if extra and not info.channels_last:
                    self.add(
                        section,
                        index,
                        key,
                        path,
                        f"has shape {shape}, which is read as a single-channel {len(shape)}D image (no channel axis), "
                        f"expected {dims} spatial dims (only singleton axes may follow them, e.g. (H, W, 1); store a "
                        f"channels-last 2D NIfTI with its channels on the 4th axis, (H, W, 1, C))",
                    )
                    continue
                if len(extra) > 1:
                    self.add(
                        section,
                        index,
                        key,
                        path,
                        f"has shape {shape}, expected {dims} spatial dims plus at most one trailing channel dim",
                    )
                    continue
                channels = extra[0] if extra else 1
            if ref is None:
                ref = (path, info)
            else:
                self.check_same_grid(section, index, key, path, info, ref[0], ref[1], dims)
        if ref is None:
            return None
        self.dims_found.add(dims)
        if channels is not None:
            self.channels_found.add(channels)
            if self.num_channels is not None and channels != self.num_channels:
                where = None if is_list else ref[0]
                what = f"{channels} channel files" if is_list else f"{channels} channels (shape {ref[1].shape})"
                self.add(section, index, key, where, f"has {what}, expected num_channels={self.num_channels}")
        return ref

    def check_label(
        self, section: str, index: int, label: tuple[str, _FileInfo], ref: tuple[str, _FileInfo] | None, dims: int
    ) -> None:
        """Check that the label is a single-channel mask on the voxel grid of the image."""
        path, info = label
        shape = info.shape
        if len(shape) < dims or _squeezed_extra(shape, dims):
            self.add(section, index, self.label_key, path, f"has shape {shape}, expected a single-channel {dims}D mask")
            return
        if ref is not None:
            self.check_same_grid(section, index, self.label_key, path, info, ref[0], ref[1], dims)
        if info.values is not None:
            self.check_label_values(section, index, path, info.values)

    def check_label_values(self, section: str, index: int, path: str, values: np.ndarray) -> None:
        """Report label values that are negative (``nonnegative_labels``) or not in ``label_values``."""

        def listed(bad: np.ndarray) -> str:
            shown = ", ".join(f"{v:g}" for v in bad[:MAX_LISTED_VALUES].tolist())
            return f"[{shown}{', ...' if len(bad) > MAX_LISTED_VALUES else ''}] ({len(bad)} distinct)"

        if self.nonnegative_labels and values.size and values[0] < 0:
            self.add(section, index, self.label_key, path, f"has negative label values {listed(values[values < 0])}")
        if self.label_values is not None:
            bad = values[~np.isin(values, self.label_values)]
            if self.nonnegative_labels:
                bad = bad[bad >= 0]  # already reported
            if bad.size:
                self.add(
                    section,
                    index,
                    self.label_key,
                    path,
                    f"has label values {listed(bad)} outside the allowed values {self.label_values}",
                )

    def check_boxes(
        self, section: str, index: int, entry: dict, shape: tuple[int, ...] | None, dims: int | None
    ) -> int:
        """Check the boxes (corner format, voxel coordinates) and box labels of an entry; return the box count."""
        key = self.box_key
        boxes = entry[key]
        if not isinstance(boxes, (list, tuple)):
            self.add(section, index, key, None, f"expected a list of boxes, got {boxes!r}")
            return 0
        if boxes and all(_is_number(b) for b in boxes):
            self.add(section, index, key, None, f"expected a list of boxes, got a flat list {list(boxes)} (wrap it)")
            return 0
        lengths = (2 * dims,) if dims is not None else (4, 6)
        for b, box in enumerate(boxes):
            if not isinstance(box, (list, tuple)) or len(box) not in lengths:
                n = len(box) if isinstance(box, (list, tuple)) else "no"
                expected = " or ".join(str(n_) for n_ in lengths)
                what = f"{dims}D" if dims is not None else "2D/3D"
                self.add(section, index, key, None, f"box {b} {box!r} has {n} numbers, expected {expected} for {what}")
                continue
            if not all(_is_number(v) for v in box):
                self.add(section, index, key, None, f"box {b} {box!r} has non-numeric or non-finite coordinates")
                continue
            nd = len(box) // 2
            issues = [f"x2 <= x1 on axis {a}" for a in range(nd) if box[a + nd] <= box[a]]
            if shape is not None and not issues:
                outside = [a for a in range(nd) if box[a] < 0 or box[a + nd] > shape[a]]
                if outside:
                    axes = ", ".join(str(a) for a in outside)
                    issues.append(f"outside the image of spatial shape {shape} on axis {axes}")
            if issues:
                self.add(section, index, key, None, f"box {b} {list(box)}: " + ", ".join(issues))
        per_box = [self.box_label_key] if self.box_label_key is not None else []
        per_box += [k for k in self.box_attribute_keys if k not in per_box]
        for attribute_key in per_box:
            if entry.get(attribute_key) is None:
                continue
            values = entry[attribute_key]
            if not isinstance(values, (list, tuple)):
                self.add(section, index, attribute_key, None, f"expected a list with one item per box, got {values!r}")
            elif len(values) != len(boxes):
                self.add(
                    section, index, attribute_key, None, f"has {len(values)} items but there are {len(boxes)} boxes"
                )
        return len(boxes)


def load_datalist_file(datalist_file: str | os.PathLike) -> dict:
    """Read a datalist JSON file whose top level is an object.

    Args:
        datalist_file: path of the datalist JSON file.

    Returns:
        the loaded datalist.

    Raises:
        DatalistError: naming the file when it is missing, unreadable, not JSON or not a JSON object.
    """
    path = os.path.abspath(os.fspath(datalist_file))
    try:
        with open(path, encoding="utf-8") as f:
            datalist = json.load(f)
    except FileNotFoundError:
        problem = "datalist file not found"
    except (OSError, UnicodeDecodeError) as e:
        problem = f"datalist file unreadable ({type(e).__name__}: {e})"
    except json.JSONDecodeError as e:
        problem = f"not valid JSON ({e})"
    else:
        if isinstance(datalist, dict):
            return datalist
        problem = f"top level must be a JSON object, got {type(datalist).__name__}"
    raise DatalistError([DatalistProblem(None, None, None, path, problem)], path)


def require_entries(
    entries: Sequence[dict], datalist_file: str | os.PathLike, section: str, description: str
) -> list[dict]:
    """Refuse an empty selection of a datalist's entries, naming the file, before any training starts.

    A bundle that trains on a filtered part of a datalist (e.g. its lesion-free slices) calls this on the filtered
    entries, so that a datalist holding none of them stops the run with a clear message instead of training on
    nothing or on the wrong data.

    Args:
        entries: the selected entries.
        datalist_file: path of the datalist JSON file they come from, used in the message.
        section: datalist section they come from.
        description: what was selected, e.g. ``"slices without boxes"``.

    Returns:
        ``entries`` as a list.

    Raises:
        DatalistError: when ``entries`` is empty.
    """
    entries = list(entries)
    if not entries:
        path = os.path.abspath(os.fspath(datalist_file))
        raise DatalistError([DatalistProblem(section, None, None, None, f"has no {description}")], path)
    return entries


def _split_source(datalist: dict) -> tuple[str, dict, dict[str, list[int]]] | None:
    """The user's datalist behind a datalist written by :func:`common.data.make_split_datalist`.

    A split datalist records in its ``"split"`` header the source file, the source's SHA-256 and, per section, the
    indices of the source entries it kept (``"origin"``). Its file paths were rewritten to resolve from its own
    folder, which works for existing files only; a missing file keeps the path the user wrote, which then resolves
    to nothing meaningful. Checking the kept source entries instead reports what the user wrote.

    Args:
        datalist: a loaded datalist.

    Returns:
        ``(source path, view, positions)``: the view is the source datalist whose recorded sections hold only the
        kept entries, in order, and ``positions[section]`` their indices in the source; ``None`` when
        ``datalist`` is not a split datalist or its source is gone or has changed since.
    """
    split = datalist.get("split")
    if not isinstance(split, dict) or not isinstance(split.get("origin"), dict):
        return None
    source = split.get("source")
    if not isinstance(source, str) or not os.path.isfile(source):
        return None
    try:
        if sha256_file(source) != split.get("source_sha256"):
            return None
        with open(source, encoding="utf-8") as f:
            view = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(view, dict):
        return None
    positions: dict[str, list[int]] = {}
    for section, indices in split["origin"].items():
        entries = view.get(section)
        if not isinstance(entries, list) or not all(_is_int(i) and 0 <= i < len(entries) for i in indices):
            return None
        positions[section] = [int(i) for i in indices]
        view[section] = [entries[i] for i in positions[section]]
    return source, view, positions


def validate_datalist(
    datalist_file: str | os.PathLike,
    sections: Sequence[str] | str = ("training",),
    image_key: str = "image",
    label_key: str | None = None,
    box_key: str | None = None,
    class_key: str | None = None,
    required_keys: Sequence[str] = (),
    spatial_dims: int | None = None,
    num_channels: int | None = None,
    required_classes: Sequence[int] | None = None,
    check_values: bool = True,
    min_entries: int = 1,
    box_label_key: str | None = "box_label",
    label_values: Sequence[int] | None = None,
    nonnegative_labels: bool = False,
    box_attribute_keys: Sequence[str] = (),
) -> dict:
    """Validate a Decathlon-style datalist and every file, box and class it references.

    All problems are collected before one :class:`DatalistError` is raised, so that a single run reports every bad
    entry. Paths are resolved relative to the folder of ``datalist_file`` unless absolute, as
    ``monai.data.load_decathlon_datalist`` does. A path is a NIfTI, DICOM, NRRD or MHA/MHD file, or a folder
    holding one DICOM series. An image is either one file (single channel, or channels-last as the reader gives
    them: a NIfTI of 4 or more axes ``(H, W, 1, 1, C)`` / ``(H, W, D, C)``, an ITK multi-component file) or a list
    of single-channel files, one per channel. Singleton axes after the spatial ones are accepted (a 2D slice stored
    as ``(H, W, 1)``, or a single DICOM file, which ITK reads as one slice). When ``spatial_dims`` is not given it is
    inferred per entry: from the first file of a list image, else from the label, else ``min(ndim, 3)`` of the
    image (MONAI's convention).

    The function can be used from a bundle config, e.g.
    ``{_target_: common.data.validate_datalist, datalist_file: "@datalist", num_channels: "@in_channels"}``.

    Args:
        datalist_file: path of the datalist JSON file.
        sections: sections to validate (a single name is accepted too).
        image_key: key of the image file path(s); always required.
        label_key: key of the label mask file; when given it is required in each entry and must match the image's
            spatial shape and affine.
        box_key: key of the list of boxes (corner format in voxel coordinates, ``[x1, y1, x2, y2]`` in 2D,
            ``[x1, y1, z1, x2, y2, z2]`` in 3D, valid when ``0 <= x1 < x2 <= size`` on each axis); required when given.
        class_key: key of the integer class value; required when given.
        required_keys: further keys that every entry must have.
        spatial_dims: expected number of spatial dims (2 or 3); also tells channels-last files from 3D volumes.
        num_channels: expected number of image channels.
        required_classes: class values that must have at least one sample in each section (needs ``class_key``).
        check_values: whether to read the voxel data to detect unreadable data and NaN/Inf voxels in images and
            labels; when ``False`` only headers are read.
        min_entries: minimum number of entries of each section.
        box_label_key: key of the per-box labels, whose length must equal the number of boxes when both are
            present; ``None`` to skip.
        label_values: allowed label voxel values (e.g. ``range(num_classes)``); any other value found in a label
            file is reported with the file. Used when ``label_key`` is given; the label data is then read.
        nonnegative_labels: report label files with negative values (for masks read as "any value > 0 is
            foreground"). Used when ``label_key`` is given; the label data is then read.
        box_attribute_keys: keys of per-box attributes (e.g. ``["size", "attenuation"]``), each of which must be a
            list with one item per box when present, like ``box_label_key`` (a string such as ``"small"`` is
            reported, not read as one item per character). Needs ``box_key``.

    A datalist written by :func:`common.data.make_split_datalist` is checked through the user's datalist it was
    made from, when that file is unchanged: the problems name the user's datalist, the entries' indices in it and
    their paths as written there, resolved against its folder (a missing file is not reported under the folder of
    the generated split file, where its path would resolve to nothing).

    Returns:
        a summary dict with keys ``"datalist"`` (absolute path), ``"source"`` (the user's datalist a split datalist
        was made from, else ``"datalist"``), ``"num_entries"`` (entries per section),
        ``"num_files"`` (distinct files read), ``"spatial_dims"`` and ``"num_channels"`` (sorted lists of the values
        found), plus ``"class_counts"`` (per section, class value to count) when ``class_key`` is given and
        ``"num_boxes"`` (per section) when ``box_key`` is given.

    Raises:
        DatalistError: when any problem is found; its ``problems`` attribute lists them.
        ValueError: when the arguments are inconsistent (``required_classes`` without ``class_key``,
            ``box_attribute_keys`` without ``box_key``).
    """
    if isinstance(sections, str):
        sections = (sections,)
    if isinstance(required_keys, str):
        required_keys = (required_keys,)
    if required_classes is not None and class_key is None:
        raise ValueError("required_classes needs class_key to be given.")
    if isinstance(box_attribute_keys, str):
        box_attribute_keys = (box_attribute_keys,)
    if box_attribute_keys and box_key is None:
        raise ValueError("box_attribute_keys needs box_key to be given.")
    path = os.path.abspath(os.fspath(datalist_file))
    validator = _Validator(
        base_dir=os.path.dirname(path),
        image_key=image_key,
        label_key=label_key,
        box_key=box_key,
        box_label_key=box_label_key,
        class_key=class_key,
        required_keys=required_keys,
        spatial_dims=spatial_dims,
        num_channels=num_channels,
        check_values=check_values,
        label_values=label_values,
        nonnegative_labels=nonnegative_labels,
        box_attribute_keys=box_attribute_keys,
    )

    datalist = load_datalist_file(path)
    positions: dict[str, list[int]] = {}
    source = _split_source(datalist)
    if source is not None:  # report the user's datalist, entries and paths as written (see _split_source)
        reported, datalist, positions = source
        validator.base_dir = os.path.dirname(reported)
    else:
        reported = path

    num_entries: dict[str, int] = {}
    class_counts: dict[str, Counter] = {}
    num_boxes: dict[str, int] = {}
    for section in sections:
        entries = datalist.get(section)
        if section not in datalist:
            validator.add(section, None, None, None, "section is missing")
            continue
        if not isinstance(entries, list):
            validator.add(section, None, None, None, f"section must be a list of entries, got {type(entries).__name__}")
            continue
        num_entries[section] = len(entries)
        if len(entries) < min_entries:
            if not entries:
                message = f"the {section} section is empty (expected at least {min_entries} entries)"
            else:
                message = f"has {len(entries)} entries, expected at least {min_entries}"
            validator.add(section, None, None, None, message)
        counts: Counter = Counter()
        box_counts: list[int] = []
        indices = positions.get(section, range(len(entries)))
        for index, entry in zip(indices, entries):
            validator.check_entry(section, index, entry, counts, box_counts)
        class_counts[section] = counts
        num_boxes[section] = sum(box_counts)
        for c in required_classes or ():
            if counts[c] == 0:
                validator.add(section, None, class_key, None, f"required class {c} has no samples")

    if validator.problems:
        raise DatalistError(validator.problems, reported)

    summary: dict[str, Any] = {
        "datalist": path,
        "source": reported,
        "num_entries": num_entries,
        "num_files": len(validator.cache),
        "spatial_dims": sorted(validator.dims_found),
        "num_channels": sorted(validator.channels_found),
    }
    if class_key is not None:
        summary["class_counts"] = {s: dict(sorted(c.items())) for s, c in class_counts.items()}
    if box_key is not None:
        summary["num_boxes"] = num_boxes
    of = "" if reported == path else f" (entries of '{reported}')"
    message = f"Datalist '{path}'{of} is valid: " + ", ".join(f"{s}={n}" for s, n in num_entries.items()) + " entries"
    message += f", {summary['num_files']} files, spatial_dims={summary['spatial_dims']}"
    message += f", num_channels={summary['num_channels']}"
    if class_key is not None:
        message += f", class counts {summary['class_counts']}"
    if box_key is not None:
        message += f", boxes {num_boxes}"
    logger.info(message)
    return summary
