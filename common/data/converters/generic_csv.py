"""Generic converter: any set of NIfTI, NRRD, MHA/MHD files or DICOM series folders listed in one CSV file.

The CSV (the converter's input is the file itself) has one row per scan and the columns:

- ``patient`` (required): patient identifier; the rows of one patient land in one split;
- ``image`` (one channel) or ``image_<name>`` columns (one per channel, e.g. ``image_t1,image_t2``; the channel
  files are named ``<name>.nii.gz``): a file path, or a folder path read as one DICOM series (ITK's GDCM reader);
- ``label`` (optional): integer mask file (same geometry as the image); the engine's class (foreground present)
  comes from it unless a ``class`` column is given;
- ``class`` (optional): integer class of the scan (3D output);
- ``box`` (optional): JSON list of boxes, ``[[x1, y1, z1, x2, y2, z2], ...]`` in voxel indices of the
  image (``box_coordinates="voxel"``, start inclusive, end exclusive; ``[[x1, y1, x2, y2], ...]`` for a single-slice
  image) or ``[[x, y, z, w, h, d], ...]`` centre and edge lengths in LPS millimetres like LUNA16's annotations
  (``box_coordinates="world"``, converted with :py:func:`.luna16.world_box_to_voxels`); an empty cell is a scan
  without box. 2D output cuts the boxes into the slices they cross (2D corner boxes per slice).

Paths are relative to the CSV file's folder (or absolute). Each row is one case (``case`` = the patient, followed by
``_<k>`` when the patient has several rows); the engine writes 3D volumes or 2D slices,
splits by patient and validates the datalist with :py:func:`common.data.validate_datalist`. 2D slices need a
``label`` or a ``box`` column (a slice's class: mask present, else crossed by a box). Missing required columns
raise :class:`LayoutError` before anything is written; a row with a missing file, an empty cell, a non-integer class
or a malformed box is a listed skip naming the row and patient with the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from common.data.converters.engine import (
    Case,
    CaseError,
    LayoutError,
    LoadedCase,
    OutputOptions,
    VolumeConverter,
    check_geometry,
    integer_labels,
    load_volume,
    read_itk,
    write_case,
)
from common.data.converters.luna16 import world_box_to_voxels
from common.data.preprocessing import axial_axis

__all__ = ["GenericCSVConverter"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
BOX_COORDINATES: tuple[str, ...] = ("voxel", "world")
_EXTRA = "\0extra"  # key of a row's problem with its number of cells (not a possible column name)


def _load(path: str, case_id: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    """A file through :py:func:`.engine.load_volume`, a folder as a DICOM series through ITK (:py:func:`read_itk`)."""
    if os.path.isdir(path):
        try:
            array, affine = read_itk(path)
        except Exception as e:  # ITK raises RuntimeError for a folder without a readable series
            raise CaseError(f"{role} DICOM series folder unreadable: {path} ({type(e).__name__}: {e})") from None
        return array, affine
    return load_volume(path, case_id, role)


class GenericCSVConverter(VolumeConverter):
    """Converter of a CSV list of image files (columns, layout and output in the module docstring).

    Args:
        box_coordinates: ``"voxel"`` (corner boxes in voxel indices) or ``"world"`` (LPS mm centre and size).

    Raises:
        ValueError: for another ``box_coordinates``.
    """

    name = "csv"
    description = "Images (NIfTI, NRRD, MHA or DICOM series) with optional masks, classes and boxes from a CSV file."
    reference = "user data"
    input_is_file = True

    def __init__(self, box_coordinates: str = "voxel"):
        if box_coordinates not in BOX_COORDINATES:
            raise ValueError(f"box_coordinates must be one of {list(BOX_COORDINATES)}, got {box_coordinates!r}.")
        self.box_coordinates = box_coordinates
        self.columns: dict[str, str] = {}  # channel name -> CSV column, set by find_cases
        self.has_label = False
        self.has_class = False
        self.has_box = False

    @property
    def channel_names(self) -> list[str]:
        return list(self.columns)

    def options(self) -> dict[str, Any]:
        return {
            "channels": list(self.columns),
            "box_coordinates": self.box_coordinates,
            "label": self.has_label,
            "class": self.has_class,
            "box": self.has_box,
        }

    def find_cases(self, input_dir: Path) -> list[Case]:
        """Read the CSV (``input_dir`` is the file): one case per row, bad rows as cases with their problem."""
        with open(input_dir, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = []
            for row in reader:  # cells past the header's columns land under None (a list): a bad row
                extra = row.pop(None, None)  # type: ignore[call-overload]
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
                if extra:
                    rows[-1][_EXTRA] = f"{len(extra)} cell(s) more than the header's {len(header)} columns"
        if "patient" not in header:
            raise LayoutError(f"{input_dir}: no 'patient' column (columns: {header}).")
        if "image" in header:
            self.columns = {"image": "image"}
        else:
            self.columns = {h[len("image_") :]: h for h in header if h.startswith("image_") and len(h) > 6}
        if not self.columns:
            raise LayoutError(f"{input_dir}: no 'image' column nor 'image_<name>' columns (columns: {header}).")
        self.has_label, self.has_class, self.has_box = ("label" in header, "class" in header, "box" in header)
        if not rows:
            raise LayoutError(f"{input_dir}: no row.")
        folder = input_dir.parent
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.get("patient", "")] = counts.get(row.get("patient", ""), 0) + 1
        seen: dict[str, int] = {}
        cases = []
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            patient = row.get("patient", "")
            seen[patient] = seen.get(patient, 0) + 1
            safe = _UNSAFE.sub("_", patient).strip("._-") or f"row{number}"
            case_id = safe if counts[patient] == 1 else f"{safe}_{seen[patient]}"
            cases.append(self._case(row, number, case_id, patient or case_id, folder))
        return cases

    def _case(self, row: dict[str, str], number: int, case_id: str, patient: str, folder: Path) -> Case:
        """One row: its files and attributes, or the problem found (naming the row and patient)."""
        where = f"row {number} (patient {patient!r})"
        files: dict[str, str] = {}
        attributes: dict[str, Any] = {}
        problems = []
        if not row.get("patient"):
            problems.append("empty 'patient'")
        if _EXTRA in row:
            problems.append(row[_EXTRA])
        roles = dict(self.columns)
        if self.has_label:
            roles["label"] = "label"
        for role, column in roles.items():
            value = row.get(column, "")
            if not value:
                problems.append(f"empty {column!r}")
                continue
            path = Path(value) if os.path.isabs(value) else folder / value
            files[role] = str(path)
            if not path.exists():
                problems.append(f"{column} file missing: {path}")
        if self.has_class:
            try:
                attributes["class"] = int(row.get("class", ""))
            except ValueError:
                problems.append(f"class {row.get('class', '')!r} is not an integer")
        if self.has_box:
            text = row.get("box", "")
            try:
                boxes = json.loads(text) if text else []
                if not isinstance(boxes, list) or any(
                    not isinstance(b, list) or len(b) not in (4, 6) or not all(isinstance(v, (int, float)) for v in b)
                    for b in boxes
                ):
                    raise ValueError("expected [[6 numbers], ...], or [[4 numbers], ...] for single-slice images")
                attributes["box"] = [[float(v) for v in b] for b in boxes]
            except ValueError as e:
                problems.append(f"box {text!r} malformed ({e})")
        problem = f"{where}: " + "; ".join(problems) if problems else None
        return Case(case_id, patient, files, attributes, problem=problem)

    def load_case(self, case: Case) -> LoadedCase:
        """Load the channels (and the label), checked to share shape and affine."""
        roles = list(self.columns) + (["label"] if self.has_label else [])
        arrays = {role: _load(case.files[role], case.case_id, role) for role in roles}
        check_geometry(case.case_id, arrays)
        shape, affine = arrays[roles[0]][0].shape, arrays[roles[0]][1]
        channels = [
            arrays[n][0].astype(np.float32) if np.issubdtype(arrays[n][0].dtype, np.floating) else arrays[n][0]
            for n in self.columns
        ]
        label = integer_labels(arrays["label"][0], case.case_id) if self.has_label else np.zeros(shape, np.uint8)
        return LoadedCase(channels, label, affine)

    def check_options(self, options: OutputOptions) -> None:
        """Voxel boxes index the images as listed: refused when the preprocessing changes the voxel grid."""
        super().check_options(options)
        pre = options.preprocessing
        if self.has_box and self.box_coordinates == "voxel" and (pre.orientation or pre.spacing or pre.size):
            raise ValueError(
                "voxel boxes index the listed images' grid, which orientation / spacing / size would change; give "
                "the boxes in world coordinates (box_coordinates='world') or leave the grid as it is."
            )

    def _voxel_boxes(self, boxes: list[list[float]], loaded: LoadedCase) -> list[list[int]]:
        """3D voxel boxes ``[x1, y1, z1, x2, y2, z2]`` of the loaded volume (a 4-number box of a single-slice image
        spans its one slice)."""
        shape = loaded.channels[0].shape
        result = []
        for i, box in enumerate(boxes):
            if len(box) == 4:
                if shape[2] != 1:
                    raise CaseError(f"box {i} {box} has 4 numbers: 2D boxes need a single-slice image, not {shape}")
                if self.box_coordinates == "world":
                    raise CaseError(f"box {i} {box}: world boxes need 6 numbers (LPS mm centre and size)")
                box = [box[0], box[1], 0, box[2], box[3], 1]
            if self.box_coordinates == "world":
                try:
                    voxels, _ = world_box_to_voxels(box[:3], box[3:], loaded.affine, shape)
                except ValueError as e:
                    raise CaseError(f"box {i} {box} (LPS mm centre and size): {e}") from None
            else:
                if any(v != int(v) for v in box):
                    raise CaseError(f"box {i} {box}: voxel boxes need integer indices")
                voxels = [int(v) for v in box]
                if any(voxels[a] < 0 or voxels[a] >= voxels[a + 3] or voxels[a + 3] > shape[a] for a in range(3)):
                    raise CaseError(f"box {i} {box}: not 0 <= start < end <= size within the image of shape {shape}")
            result.append(voxels)
        return result

    def write_case(
        self, loaded: LoadedCase, case: Case, folder: Path, prefix: str, options: OutputOptions
    ) -> dict[str, Any]:
        """The engine's output, with the CSV's class and voxel boxes; without a label column no mask is kept.

        2D output cuts each 3D box into the slices it crosses: a slice's boxes are the in-plane extents
        ``[x1, y1, x2, y2]`` (the two axes other than the slice axis, in order) of the boxes that contain the slice,
        as CPGGAN (Han's thesis, sec. 5.2.1) and 2D detection read them. Without a label column the class of a slice
        is then "crossed by a box" (at least ``min_area`` box pixels), from a mask made of the boxes.
        """
        if options.spatial_dims == 2 and not (self.has_label or self.has_box):
            raise CaseError("2D output needs a 'label' or a 'box' column (the class of a slice comes from either)")
        boxes = self._voxel_boxes(case.attributes.get("box", []), loaded) if self.has_box else None
        if options.spatial_dims == 2 and boxes is not None and not self.has_label:
            mask = np.zeros(loaded.label.shape, dtype=np.uint8)
            for b in boxes:
                mask[b[0] : b[3], b[1] : b[4], b[2] : b[5]] = 1
            loaded = dataclasses.replace(loaded, label=mask)
        record = write_case(
            loaded, dataclasses.replace(case, attributes={}), self.channel_names, folder, prefix, options
        )
        axis = axial_axis(loaded.affine) if options.slice_axis is None else options.slice_axis
        in_plane = [a for a in range(3) if a != axis]
        for entry in record["entries"]:
            if not self.has_label:
                os.remove(folder / Path(entry.pop("label")).name)
            if self.has_class and options.spatial_dims == 3:
                entry["class"] = int(case.attributes["class"])
            elif not (self.has_label or (boxes is not None and options.spatial_dims == 2)):
                entry.pop("class")  # neither a mask, nor boxes cut into slices, nor a class column: no class
            if boxes is not None:
                if options.spatial_dims == 2:
                    index = entry["slice"]
                    entry["box"] = [
                        [b[in_plane[0]], b[in_plane[1]], b[in_plane[0] + 3], b[in_plane[1] + 3]]
                        for b in boxes
                        if b[axis] <= index < b[axis + 3]
                    ]
                else:
                    entry["box"] = boxes
                entry["box_label"] = [0] * len(entry["box"])
        return record

    def validation_args(self, options: OutputOptions) -> dict[str, Any]:
        return {
            "label_key": "label" if self.has_label else None,
            "box_key": "box" if self.has_box else None,
            "class_key": (
                "class" if (self.has_label or self.has_class or (self.has_box and options.spatial_dims == 2)) else None
            ),
            "required_keys": ("patient",),
            "spatial_dims": options.spatial_dims,
            "num_channels": len(self.columns),
        }
