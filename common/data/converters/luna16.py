"""LUNA16 (LUng Nodule Analysis 2016), as downloaded: CT volumes with nodule boxes in the detection contract.

Layout: ``subset0/`` ... ``subset9/`` of ``<seriesuid>.mhd`` (MetaImage header) with ``<seriesuid>.raw`` (int16
Hounsfield units), and ``annotations.csv`` (``seriesuid,coordX,coordY,coordZ,diameter_mm``: nodule centres in
world millimetres of ITK's LPS frame) in the folder, in its ``CSVFILES/`` folder, or given explicitly;
``candidates*.csv`` and ``seg-lungs-LUNA16/`` are ignored. The MONAI model zoo's ``lung_nodule_ct_detection``
datalist (``dataset_fold0.json``: ``{"image": "<seriesuid>.mhd" or ".nii.gz", "box": [[x, y, z, w, h, d], ...],
"label": [0, ...]}`` in its ``training`` / ``validation`` sections, boxes as centre and size (``cccwhd``) in LPS
world millimetres, which its training turns into voxels with ``AffineBoxToImageCoordinated(affine_lps_to_ras=True)``)
is read instead of ``annotations.csv`` when ``datalist_json`` is given; its images are found under the input folder.

Each series becomes one case (``cases/<seriesuid>/ct.nii.gz`` and ``seg.nii.gz``, a mask of the nodules as balls of
their diameter) and one entry in the chest CT phantom's contract (:py:func:`common.data.make_chest_ct`)::

    {"image": "cases/<uid>/ct.nii.gz", "label": "cases/<uid>/seg.nii.gz", "box": [[x1, y1, z1, x2, y2, z2], ...],
     "box_label": [0, ...], "size": ["small", ...], "diameter_mm": [...], "class": 0 or 1, "patient": uid, ...}

Boxes are in voxel indices of the array as nibabel loads the written file (start inclusive, end exclusive): the
world centre goes through the inverse of the voxel-to-world affine (origin, spacing and direction of the header;
the written NIfTI is RAS, the annotations LPS, see :py:func:`world_box_to_voxels`), and the box is the cube of the
nodule's diameter: the voxels whose centres lie within half a diameter of the centre along each voxel axis (at
least the voxel of the centre). The ``size`` class follows Han's thesis (sec. 6.2.1, Data Preparation): small up to
10 mm, medium over 10 and up to 20 mm, large over 20 mm. LUNA16 carries no attenuation (solid / part-solid /
ground-glass, which LIDC-IDRI readers rate as texture), so entries have no ``attenuation`` key: the detection bundle
trains on them; the MCGAN bundle, which conditions on attenuation, rejects them with a message naming the key. With
``lidc_xml`` (the LIDC-IDRI XML reader annotations), each nodule gets the attenuation of the median texture rating of
the readers whose nodule centroid lies within its radius (at least 3 mm), when at least ``min_readers`` readers
marked it, else ``"unknown"`` (:data:`LIDC_TEXTURE_ATTENUATION`, :func:`read_lidc_xml`).
Series without nodules are kept as negatives (``class`` 0, no box). A nodule whose centre lies outside its volume
makes the case skipped with the reason; an annotation naming a series that is not in the folder is listed as a
skipped case ``<seriesuid>`` with the reason. A series is its own patient (LUNA16 does not name LIDC patients).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.data.converters.engine import (
    LABEL_NAME,
    Case,
    CaseError,
    LayoutError,
    LoadedCase,
    OutputOptions,
    VolumeConverter,
    load_volume,
    write_masks,
)
from common.utils import save_nifti

__all__ = [
    "LIDC_TEXTURE_ATTENUATION",
    "LUNA16_SIZE_BINS",
    "LUNA16Converter",
    "nodule_size_class",
    "read_lidc_xml",
    "world_box_to_voxels",
]

LUNA16_SIZE_BINS: tuple[tuple[str, float], ...] = (("small", 10.0), ("medium", 20.0), ("large", math.inf))
"""Size class -> upper bound of the diameter in mm (inclusive): Han's thesis, sec. 6.2.1 (Data Preparation)."""
ANNOTATION_COLUMNS: tuple[str, ...] = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
_SUBSET = re.compile(r"^subset\d+$")
_IMAGE_EXTS = (".mhd", ".mha", ".nii.gz", ".nii")


def nodule_size_class(diameter_mm: float) -> str:
    """Size class of a nodule diameter: small (<= 10 mm), medium (10-20 mm], large (> 20 mm); thesis sec. 6.2.1."""
    for name, upper in LUNA16_SIZE_BINS:
        if diameter_mm <= upper:
            return name
    raise ValueError(f"invalid nodule diameter {diameter_mm!r}")


def world_box_to_voxels(
    center_lps: Sequence[float], extent_mm: Sequence[float], affine: np.ndarray, shape: Sequence[int]
) -> tuple[list[int], bool]:
    """A world box (centre in LPS millimetres, edge lengths along the world axes) in voxel indices of an array.

    Args:
        center_lps: ``(x, y, z)`` centre in ITK's LPS world frame (mm), as in LUNA16's ``annotations.csv``.
        extent_mm: ``(w, h, d)`` edge lengths along the world axes (mm); a nodule's cube is ``(d, d, d)``.
        affine: 4x4 voxel-to-RAS affine of the array (nibabel's; :py:func:`.engine.read_itk` gives it for ITK files).
        shape: spatial shape ``(X, Y, Z)`` of the array.

    Returns:
        ``([x1, y1, z1, x2, y2, z2], clipped)``: the voxels whose centres lie inside the box along each voxel axis
        (the box's bounding box in voxel space for an oblique direction), at least the centre's voxel, start
        inclusive, end exclusive, clipped to the array (``clipped`` tells whether it was).

    Raises:
        ValueError: when the centre lies outside the array (beyond half a voxel of the first or last voxel).
    """
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    center = inverse[:3, :3] @ (np.asarray(center_lps, dtype=np.float64) * _LPS_TO_RAS) + inverse[:3, 3]
    half = 0.5 * np.abs(inverse[:3, :3]) @ np.asarray(extent_mm, dtype=np.float64)
    size = np.asarray(shape, dtype=np.float64)
    if np.any(center < -0.5) or np.any(center >= size - 0.5):
        raise ValueError(f"centre at voxel {np.round(center, 2).tolist()} outside the volume of shape {list(shape)}")
    nearest = np.floor(center + 0.5)
    start = np.minimum(np.ceil(center - half - 1e-6), nearest)
    stop = np.maximum(np.floor(center + half + 1e-6) + 1, nearest + 1)
    clipped_start, clipped_stop = np.maximum(start, 0), np.minimum(stop, size)
    clipped = bool(np.any(clipped_start != start) or np.any(clipped_stop != stop))
    return [int(v) for v in clipped_start] + [int(v) for v in clipped_stop], clipped


LIDC_TEXTURE_ATTENUATION: dict[int, str] = {
    1: "ground-glass",
    2: "ground-glass",
    3: "part-solid",
    4: "solid",
    5: "solid",
}
"""LIDC-IDRI reader texture rating (1 non-solid/GGO, 3 part solid/mixed, 5 solid) -> attenuation class of the thesis'
conditions (sec. 6.2.1: solid, part-solid, ground-glass nodule); the thesis' own attenuation labels are not public."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Any, name: str) -> Any:
    return next((c for c in element if _local(c.tag) == name), None)


def _children(element: Any, name: str) -> list[Any]:
    return [c for c in element if _local(c.tag) == name]


def read_lidc_xml(path: str | os.PathLike) -> tuple[str, list[dict[str, Any]]]:
    """The reader nodules (>= 3 mm: those with characteristics) of one LIDC-IDRI XML annotation file.

    Args:
        path: an XML file of the LIDC-IDRI release (``LidcReadMessage``: one ``readingSession`` per reader, each with
            ``unblindedReadNodule`` elements holding ``characteristics/texture`` and per-slice ``roi`` contours of
            ``imageZposition`` and ``edgeMap`` pixel ``xCoord``/``yCoord``).

    Returns:
        ``(series instance UID, nodules)``, each nodule ``{"reader": session index, "pixel": (mean x, mean y) of the
        contour points (column, row), "z": mean imageZposition (LPS mm), "texture": 1..5}``.

    Raises:
        ValueError: when the file is not such a message (no SeriesInstanceUid).
    """
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(os.fspath(path)).getroot()
    header = _child(root, "ResponseHeader")
    uid = _child(header, "SeriesInstanceUid") if header is not None else None
    if uid is None or not (uid.text or "").strip():
        raise ValueError(f"{path}: not a LIDC-IDRI XML annotation (no ResponseHeader/SeriesInstanceUid)")
    nodules = []
    for reader, session in enumerate(_children(root, "readingSession")):
        for nodule in _children(session, "unblindedReadNodule"):
            characteristics = _child(nodule, "characteristics")
            texture = _child(characteristics, "texture") if characteristics is not None else None
            if texture is None or not (texture.text or "").strip():
                continue  # a nodule < 3 mm: no characteristics
            points, zs = [], []
            for roi in _children(nodule, "roi"):
                inclusion = _child(roi, "inclusion")
                if inclusion is not None and (inclusion.text or "").strip().upper() == "FALSE":
                    continue
                zs.append(float(_child(roi, "imageZposition").text))
                for edge in _children(roi, "edgeMap"):
                    points.append((float(_child(edge, "xCoord").text), float(_child(edge, "yCoord").text)))
            if points and zs:
                mean = np.mean(np.asarray(points), axis=0)
                nodules.append(
                    {"reader": reader, "pixel": (float(mean[0]), float(mean[1])), "z": float(np.mean(zs)),
                     "texture": int(round(float(texture.text)))}  # fmt: skip
                )
    return uid.text.strip(), nodules


def _attenuation(
    center_lps: Sequence[float],
    radius: float,
    readers: Sequence[Mapping[str, Any]],
    affine: np.ndarray,
    min_readers: int,
) -> str:
    """Attenuation class of the median texture of the readers' nodules near a centre, ``"unknown"`` below
    ``min_readers`` distinct readers (LUNA16 keeps nodules marked by >= 3 of 4 readers)."""
    found: dict[int, int] = {}
    for nodule in readers:
        ras = affine[:3, :3] @ np.array([*nodule["pixel"], 0.0]) + affine[:3, 3]
        world = np.array([-ras[0], -ras[1], nodule["z"]])  # axial LIDC geometry: x, y from the pixel, z given
        if np.linalg.norm(world - np.asarray(center_lps)) <= max(radius, 3.0):
            found.setdefault(int(nodule["reader"]), int(nodule["texture"]))
    if len(found) < min_readers:
        return "unknown"
    return LIDC_TEXTURE_ATTENUATION[int(np.clip(np.round(np.median(list(found.values()))), 1, 5))]


def _ball_mask(shape: Sequence[int], affine: np.ndarray, nodules: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """uint8 mask, 1 at the voxels whose centres lie within a nodule's radius (world distance) of its centre."""
    mask = np.zeros(tuple(shape), dtype=np.uint8)
    for nodule in nodules:
        x1, y1, z1, x2, y2, z2 = nodule["box"]
        grid = np.stack(np.meshgrid(np.arange(x1, x2), np.arange(y1, y2), np.arange(z1, z2), indexing="ij"), -1)
        world = grid @ affine[:3, :3].T + affine[:3, 3]
        center = np.asarray(nodule["center"], dtype=np.float64) * _LPS_TO_RAS
        inside = np.linalg.norm(world - center, axis=-1) <= 0.5 * nodule["diameter_mm"]
        region = mask[x1:x2, y1:y2, z1:z2]
        region[inside] = 1
    return mask


class LUNA16Converter(VolumeConverter):
    """Converter of the LUNA16 release (layout and entries in the module docstring): one CT channel, ``ct``.

    Args:
        annotations: ``annotations.csv`` (absolute, or relative to the input folder); found in the input folder or
            its ``CSVFILES/`` folder when omitted.
        datalist_json: the model zoo's LUNA16 detection datalist (boxes ``cccwhd`` in LPS world mm) to read instead
            of the annotations; images are looked up under the input folder by their relative path or file name.
        lidc_xml: folder (or file) of LIDC-IDRI XML reader annotations (absolute, or relative to the input folder):
            adds each nodule's ``attenuation`` from the readers' texture ratings.
        min_readers: readers that must have marked a nodule for its attenuation (else ``"unknown"``).
    """

    name = "luna16"
    description = "LUNA16 chest CT (HU) from LIDC-IDRI with lung nodule boxes (>= 3 mm, >= 3 of 4 readers)."
    reference = "Setio et al., Med. Image Anal. 42, 2017; https://luna16.grand-challenge.org/Data/"

    def __init__(
        self,
        annotations: str | os.PathLike | None = None,
        datalist_json: str | os.PathLike | None = None,
        lidc_xml: str | os.PathLike | None = None,
        min_readers: int = 3,
    ):
        if annotations is not None and datalist_json is not None:
            raise ValueError("give either annotations (annotations.csv) or datalist_json, not both.")
        if int(min_readers) < 1:
            raise ValueError(f"min_readers must be >= 1, got {min_readers!r}.")
        self.annotations = None if annotations is None else os.fspath(annotations)
        self.datalist_json = None if datalist_json is None else os.fspath(datalist_json)
        self.lidc_xml = None if lidc_xml is None else os.fspath(lidc_xml)
        self.min_readers = int(min_readers)

    @property
    def channel_names(self) -> list[str]:
        return ["ct"]

    @property
    def labels(self) -> dict[str, str]:
        return {"0": "background", "1": "nodule"}

    def options(self) -> dict[str, Any]:
        if self.datalist_json is not None:
            options = {"boxes_from": f"datalist_json:{Path(self.datalist_json).name}"}
        else:
            options = {"boxes_from": "annotations.csv" if self.annotations is None else Path(self.annotations).name}
        if self.lidc_xml is not None:
            options.update(lidc_xml=Path(self.lidc_xml).name, min_readers=self.min_readers)
        return options

    def _read_lidc(self, input_dir: Path) -> dict[str, tuple[dict[str, Any], ...]]:
        """seriesuid -> reader nodules of every ``*.xml`` under ``lidc_xml`` (see :func:`read_lidc_xml`)."""
        if self.lidc_xml is None:
            return {}
        folder = Path(self.lidc_xml)
        folder = folder if folder.is_absolute() else input_dir / folder
        files = sorted(folder.rglob("*.xml")) if folder.is_dir() else ([folder] if folder.is_file() else [])
        if not files:
            raise LayoutError(f"no LIDC-IDRI XML file under {folder} (lidc_xml).")
        readers: dict[str, list[dict[str, Any]]] = {}
        for file in files:
            try:
                uid, nodules = read_lidc_xml(file)
            except Exception as e:  # a malformed XML file stops the conversion, naming the file
                raise LayoutError(f"LIDC-IDRI XML file {file} unreadable: {e}") from None
            readers.setdefault(uid, []).extend(nodules)
        return {uid: tuple(nodules) for uid, nodules in readers.items()}

    # ------------------------------------------------------------------------------------------------------------
    # reading the release
    # ------------------------------------------------------------------------------------------------------------

    def _annotation_file(self, input_dir: Path) -> Path:
        if self.annotations is not None:
            path = Path(self.annotations)
            path = path if path.is_absolute() else input_dir / path
            if not path.is_file():
                raise LayoutError(f"annotations file {path} not found.")
            return path
        for path in (input_dir / "annotations.csv", input_dir / "CSVFILES" / "annotations.csv"):
            if path.is_file():
                return path
        raise LayoutError(
            f"no annotations.csv in {input_dir} or {input_dir / 'CSVFILES'}: give --annotations PATH (LUNA16's "
            "annotations.csv) or --datalist_json PATH (the model zoo's LUNA16 detection datalist)."
        )

    @staticmethod
    def _read_annotations(path: Path) -> dict[str, list[dict[str, Any]]]:
        """seriesuid -> nodules ``{"center": (x, y, z) LPS mm, "extent": (d, d, d), "diameter_mm": d}``."""
        nodules: dict[str, list[dict[str, Any]]] = {}
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ANNOTATION_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise LayoutError(
                    f"{path} is not LUNA16's annotations.csv: columns {missing} missing (expected "
                    f"{','.join(ANNOTATION_COLUMNS)}, got {reader.fieldnames})."
                )
            for line, row in enumerate(reader, start=2):
                try:
                    center = tuple(float(row[c]) for c in ("coordX", "coordY", "coordZ"))
                    diameter = float(row["diameter_mm"])
                except (TypeError, ValueError):
                    raise LayoutError(f"{path}, line {line}: non-numeric coordinate or diameter: {row}") from None
                if not all(math.isfinite(v) for v in (*center, diameter)) or diameter <= 0:
                    raise LayoutError(f"{path}, line {line}: invalid coordinate or diameter: {row}")
                nodules.setdefault(row["seriesuid"].strip(), []).append(
                    {"center": center, "extent": (diameter,) * 3, "diameter_mm": diameter}
                )
        return nodules

    def _read_datalist(self, input_dir: Path) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """image path as written in the datalist -> (case id, nodules) from the zoo's cccwhd world boxes."""
        path = Path(self.datalist_json)  # type: ignore[arg-type]
        path = path if path.is_absolute() else input_dir / path
        try:
            datalist = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise LayoutError(f"datalist_json {path} unreadable: {e}") from None
        sections = [v for v in datalist.values() if isinstance(v, list)] if isinstance(datalist, dict) else []
        entries = [e for section in sections for e in section if isinstance(e, dict) and "image" in e]
        if not entries:
            raise LayoutError(f"{path} holds no entry with an image (expected the model zoo's LUNA16 datalist).")
        result: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        for entry in entries:
            image = str(entry["image"])
            boxes, labels = entry.get("box", []), entry.get("label", [0] * len(entry.get("box", [])))
            if not isinstance(boxes, list) or any(len(b) != 6 for b in boxes) or len(labels) != len(boxes):
                raise LayoutError(
                    f"{path}: entry {image}: expected 'box' [[x, y, z, w, h, d], ...] with one 'label' per box."
                )
            nodules = [
                {"center": tuple(map(float, b[:3])), "extent": tuple(map(float, b[3:])), "diameter_mm": max(b[3:])}
                for b in boxes
            ]
            name = os.path.basename(image)
            for ext in _IMAGE_EXTS:
                if name.endswith(ext):
                    name = name[: -len(ext)]
                    break
            result[image] = (name, nodules)
        return result

    def find_cases(self, input_dir: Path) -> list[Case]:
        if self.datalist_json is not None:
            return self._cases_from_datalist(input_dir)
        folders = sorted(n for n in os.listdir(input_dir) if _SUBSET.match(n) and (input_dir / n).is_dir())
        series: dict[str, Path] = {}
        for folder in [input_dir, *(input_dir / n for n in folders)]:
            for name in sorted(os.listdir(folder)):
                if name.endswith(".mhd") and not name.startswith("."):
                    series.setdefault(name[: -len(".mhd")], folder / name)
        if not series:
            raise LayoutError(
                f"no LUNA16 series under {input_dir}: expected subset0/ ... subset9/ of <seriesuid>.mhd with "
                "<seriesuid>.raw."
            )
        nodules = self._read_annotations(self._annotation_file(input_dir))
        lidc = self._read_lidc(input_dir)
        cases = [
            Case(uid, uid, {"ct": str(path)}, {"nodules": tuple(nodules.get(uid, ())), "lidc": lidc.get(uid)})
            for uid, path in sorted(series.items())
        ]
        for uid in sorted(set(nodules) - set(series)):
            problem = f"series named in the annotations ({len(nodules[uid])} nodules) not found under {input_dir}"
            cases.append(Case(uid, uid, {}, problem=problem))
        return cases

    def _cases_from_datalist(self, input_dir: Path) -> list[Case]:
        by_name: dict[str, Path] = {}
        for root, _, names in os.walk(input_dir):
            for name in names:
                if name.endswith(_IMAGE_EXTS) and not name.startswith("."):
                    by_name.setdefault(name, Path(root) / name)
        cases = []
        lidc = self._read_lidc(input_dir)
        for image, (case_id, nodules) in sorted(self._read_datalist(input_dir).items()):
            path = input_dir / image
            if not path.is_file():
                path = by_name.get(os.path.basename(image), path)
            problem = None if path.is_file() else f"image {image} of the datalist not found under {input_dir}"
            attributes = {"nodules": tuple(nodules), "lidc": lidc.get(case_id)}
            cases.append(Case(case_id, case_id, {"ct": str(path)}, attributes, problem=problem))
        return cases

    # ------------------------------------------------------------------------------------------------------------
    # one case
    # ------------------------------------------------------------------------------------------------------------

    def load_case(self, case: Case) -> LoadedCase:
        array, affine = load_volume(case.files["ct"], case.case_id, "ct")
        if array.ndim != 3:
            raise CaseError(f"ct is not a 3D volume (shape {tuple(array.shape)})")
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
        elif array.dtype != np.int16 and array.min() >= -32768 and array.max() <= 32767:
            array = array.astype(np.int16)
        return LoadedCase([array], np.zeros(array.shape, dtype=np.uint8), affine)

    def write_case(
        self, loaded: LoadedCase, case: Case, folder: Path, prefix: str, options: OutputOptions
    ) -> dict[str, Any]:
        """Write ``ct.nii.gz``, the nodule mask ``seg.nii.gz`` and the case's one entry with its boxes (3D only)."""
        if options.spatial_dims != 3:
            raise ValueError("the LUNA16 converter writes 3D volumes only (spatial_dims=3).")
        image = loaded.channels[0]
        nodules = []
        for i, nodule in enumerate(case.attributes.get("nodules", ())):
            try:
                box, clipped = world_box_to_voxels(nodule["center"], nodule["extent"], loaded.affine, image.shape)
            except ValueError as e:
                raise CaseError(f"nodule {i} at {list(nodule['center'])} mm (LPS): {e}") from None
            nodules.append({**nodule, "box": box, "clipped": clipped})
        save_nifti(image, folder / "ct.nii.gz", loaded.affine)
        save_nifti(_ball_mask(image.shape, loaded.affine, nodules), folder / f"{LABEL_NAME}.nii.gz", loaded.affine)
        entry: dict[str, Any] = {
            "image": f"{prefix}/ct.nii.gz",
            "label": f"{prefix}/{LABEL_NAME}.nii.gz",
            **write_masks(loaded, folder, prefix),  # "lung" with the lung_mask preprocessing
            "box": [n["box"] for n in nodules],
            "box_label": [0] * len(nodules),
            "size": [nodule_size_class(n["diameter_mm"]) for n in nodules],
            "diameter_mm": [round(float(n["diameter_mm"]), 3) for n in nodules],
            "class": int(bool(nodules)),
            "patient": case.patient,
            "case": case.case_id,
        }
        if self.lidc_xml is not None:
            readers = case.attributes.get("lidc") or ()
            entry["attenuation"] = [
                _attenuation(n["center"], 0.5 * n["diameter_mm"], readers, loaded.affine, self.min_readers)
                for n in nodules
            ]
        if any(n["clipped"] for n in nodules):
            entry["box_clipped"] = [n["clipped"] for n in nodules]
        return {"case": case.case_id, "patient": case.patient, "entries": [entry], "num_ambiguous": 0}

    def validation_args(self, options: OutputOptions) -> dict[str, Any]:
        return {
            "label_key": "label",
            "box_key": "box",
            "class_key": "class",
            "required_keys": ("patient", "size"),
            "spatial_dims": 3,
            "num_channels": 1,
        }
