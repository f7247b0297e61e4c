"""Tiny copies of public releases, laid out with their exact folder and file names, data types and geometry.

Arrays are tiny (16 x 16 x 8) but keep what the converters depend on: BraTS 2018-2021 int16 modalities with a
uint8 segmentation using labels 1, 2, 4 and the LPS-like affine of the release; BraTS 2023 ``-t1n``/``-t1c``/...
names with labels 1, 2, 3; an MSD Task01 4D float32 image ``(X, Y, Z, 4)`` with its ``dataset.json``; KiTS19 CT with
the axial axis first. Each modality is filled with its own constant level plus noise, so that a test can tell which
release file a written channel came from (:data:`BRATS_LEVELS`, :data:`MSD_LEVELS`).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE: tuple[int, int, int] = (16, 16, 8)
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 15.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
"""BraTS stores 1 mm voxels with the first two axes flipped (x -> -x, y -> 239 - y for the 240-voxel release)."""
BRATS_LEVELS: dict[str, int] = {"t1": 100, "t1ce": 200, "t2": 300, "flair": 400}
"""Release suffix -> intensity level of the 2018-2021 fixtures (T1, T1c, T2, FLAIR = 100, 200, 300, 400)."""
GLI_LEVELS: dict[str, int] = {"t1n": 100, "t1c": 200, "t2w": 300, "t2f": 400}
MSD_MODALITIES: tuple[str, ...] = ("FLAIR", "T1w", "t1gd", "T2w")
MSD_LEVELS: tuple[float, ...] = (40.0, 10.0, 20.0, 30.0)
"""Intensity level of each Task01 channel in release order (FLAIR, T1w, t1gd, T2w): T1..FLAIR = 10..40."""
KITS_AFFINE = np.array([[0, 0, -0.8, 0], [0, -0.8, 0, 0], [-3.0, 0, 0, 0], [0, 0, 0, 1.0]])
"""KiTS19's affine: the first voxel axis is the (inferior) z axis, 3 mm slices, 0.8 mm pixels."""


def save(array: np.ndarray, path: Path, affine: np.ndarray) -> Path:
    """Write a NIfTI file the way the releases are written (nibabel's plain writer, no atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def tumour_mask(
    radii: Mapping[int, float], shape: Sequence[int] = SHAPE, labels: Sequence[int] = (1, 4, 2)
) -> np.ndarray:
    """uint8 mask with a disc of radius ``radii[z]`` around the centre of each slice ``z``: core, rim, oedema.

    Args:
        radii: slice index -> disc radius in voxels (a radius below 1 gives the centre voxel only).
        shape: volume shape.
        labels: values of the core (distance < 1), the rim (< 2) and the rest of the disc.
    """
    mask = np.zeros(shape, dtype=np.uint8)
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    distance = np.hypot(x - shape[0] // 2, y - shape[1] // 2)
    for z, radius in radii.items():
        disc = distance <= radius
        plane = np.zeros(shape[:2], dtype=np.uint8)
        plane[disc] = labels[2]
        plane[disc & (distance < 2)] = labels[1]
        plane[disc & (distance < 1)] = labels[0]
        mask[:, :, z] = plane
    return mask


def _modality(level: float, rng: np.random.Generator, shape: Sequence[int], dtype: type) -> np.ndarray:
    return (level + rng.integers(0, 10, size=tuple(shape))).astype(dtype)


def brats_case(
    parent: Path,
    name: str,
    radii: Mapping[int, float] | None = None,
    scheme: str = "2018-2021",
    ext: str = ".nii.gz",
    seg_name: str | None = None,
    missing: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Write one BraTS case folder ``parent/name`` and return it.

    Args:
        parent: folder of the case folders.
        name: case folder name, e.g. ``BraTS20_Training_001`` or ``BraTS-GLI-00000-000``.
        radii: tumour disc radius per slice (see :func:`tumour_mask`); ``None`` for an empty mask.
        scheme: ``"2018-2021"`` (``_t1ce``, labels 1/2/4) or ``"2023+"`` (``-t1c``, labels 1/2/3).
        ext: ``.nii.gz`` or ``.nii``.
        seg_name: file name of the segmentation when it is not the standard one.
        missing: release suffixes not written (e.g. ``["t1ce"]``).
        seed: seed of the noise.
    """
    rng = np.random.default_rng(seed)
    folder = parent / name
    legacy = scheme == "2018-2021"
    levels = BRATS_LEVELS if legacy else GLI_LEVELS
    separator = "_" if legacy else "-"
    for suffix, level in levels.items():
        if suffix not in missing:
            save(_modality(level, rng, SHAPE, np.int16), folder / f"{name}{separator}{suffix}{ext}", BRATS_AFFINE)
    mask = tumour_mask(radii or {}, labels=(1, 4, 2) if legacy else (1, 3, 2))
    save(mask, folder / (seg_name or f"{name}{separator}seg{ext}"), BRATS_AFFINE)
    return folder


def brats2020(root: Path, num_cases: int = 10, tumour_slices: Sequence[int] = (2, 3, 4, 5)) -> Path:
    """A BraTS 2020 training release: ``MICCAI_BraTS2020_TrainingData/BraTS20_Training_XXX`` with
    ``name_mapping.csv`` (first case LGG, the others HGG).

    Case 001 has an empty mask; case 002 a tumour of one voxel in slice 2 (radius 0) and a full disc elsewhere;
    the last case is named ``BraTS20_Training_355`` and ships its segmentation as ``W39_1998.09.19_Segm.nii``, as in
    the release; every other case has a disc of radius 3 on ``tumour_slices``.

    Returns:
        the release folder ``root/MICCAI_BraTS2020_TrainingData``.
    """
    release = root / "MICCAI_BraTS2020_TrainingData"
    names = [f"BraTS20_Training_{i:03d}" for i in range(1, num_cases)] + ["BraTS20_Training_355"]
    for i, name in enumerate(names):
        radii: dict[int, float] | None = dict.fromkeys(tumour_slices, 3.0)
        if i == 0:
            radii = None
        elif i == 1:
            radii = {**radii, tumour_slices[0]: 0.0}
        seg = "W39_1998.09.19_Segm.nii" if name.endswith("_355") else None
        brats_case(release, name, radii, seg_name=seg, seed=i)
    with open(release / "name_mapping.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID", "TCGA_TCIA_subject_ID",
                         "BraTS_2019_subject_ID", "BraTS_2020_subject_ID"])  # fmt: skip
        for i, name in enumerate(names):
            writer.writerow(["LGG" if i == 0 else "HGG", "NA", "NA", "NA", "NA", name])
    (release / "survival_info.csv").write_text("Brats20ID,Age,Survival_days,Extent_of_Resection\n")
    return release


def corrupt(path: Path) -> None:
    """Truncate a ``.nii.gz`` file in the middle of its compressed stream (a broken download)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert path.suffix != ".gz" or _is_truncated(path)


def _is_truncated(path: Path) -> bool:
    try:
        gzip.decompress(path.read_bytes())
    except (EOFError, OSError):
        return True
    return False


def msd_task01(root: Path, num_cases: int = 4) -> Path:
    """A Task01_BrainTumour folder: ``dataset.json``, 4D float32 ``imagesTr/BRATS_XXX.nii.gz`` (X, Y, Z, 4), uint8
    ``labelsTr`` (labels 1 edema, 2 non-enhancing, 3 enhancing), an ``imagesTs`` image and the ``._`` resource-fork
    files of the released archive."""
    task = root / "Task01_BrainTumour"
    rng = np.random.default_rng(1)
    training = []
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for i in range(1, num_cases + 1):
        name = f"BRATS_{i:03d}.nii.gz"
        image = np.stack([level + rng.random(SHAPE, dtype=np.float32) for level in MSD_LEVELS], axis=-1)
        save(image.astype(np.float32), task / "imagesTr" / name, affine)
        radii = dict.fromkeys((3, 4), 3.0) if i % 2 else {}
        save(tumour_mask(radii, labels=(2, 3, 1)), task / "labelsTr" / name, affine)
        (task / "imagesTr" / f"._{name}").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    save(np.zeros((*SHAPE, 4), np.float32), task / "imagesTs" / "BRATS_900.nii.gz", affine)
    meta = {
        "name": "BRATS",
        "description": "Gliomas segmentation tumour and oedema in on brain images",
        "reference": "https://www.med.upenn.edu/sbia/brats2017.html",
        "licence": "CC-BY-SA 4.0",
        "release": "2.0 04/05/2018",
        "tensorImageSize": "4D",
        "modality": {str(i): m for i, m in enumerate(MSD_MODALITIES)},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": num_cases,
        "numTest": 1,
        "training": training,
        "test": ["./imagesTs/BRATS_900.nii.gz"],
    }
    (task / "dataset.json").write_text(json.dumps(meta, indent=4))
    return task


def kits19(root: Path, num_cases: int = 3, num_test: int = 1) -> Path:
    """The KiTS19 repository's ``data/`` folder: ``case_XXXXX/imaging.nii.gz`` (int16 HU, shape (Z, Y, X) = (8, 16,
    16)) and ``segmentation.nii.gz`` (uint8, 1 kidney, 2 tumour) on slices 2-4; ``num_test`` cases after them
    without segmentation (like cases 210-299)."""
    data = root / "kits19" / "data"
    rng = np.random.default_rng(2)
    shape = (SHAPE[2], SHAPE[0], SHAPE[1])
    for i in range(num_cases + num_test):
        folder = data / f"case_{i:05d}"
        save(rng.integers(-1000, 400, size=shape).astype(np.int16), folder / "imaging.nii.gz", KITS_AFFINE)
        if i < num_cases:
            seg = np.zeros(shape, dtype=np.uint8)
            seg[2:5, 4:10, 4:10] = 1
            seg[3, 6:8, 6:8] = 2
            save(seg, folder / "segmentation.nii.gz", KITS_AFFINE)
    return data.parent


MHA_SPACING: tuple[float, float, float] = (0.9, 0.8, 2.0)
MHA_ORIGIN: tuple[float, float, float] = (10.0, 20.0, 30.0)
MHA_DIRECTION = np.diag([1.0, -1.0, 1.0])
"""Geometry of the BRATS 2015 fixtures (ITK's LPS space): anisotropic spacing, an origin and a flipped y axis."""


def brats2015_case(parent: Path, name: str, ids: int, radii: Mapping[int, float], seed: int = 0) -> Path:
    """One BRATS 2015/2016 case folder: ``VSD.Brain.XX.O.MR_<modality>.<id>/VSD.Brain.XX.O.MR_<modality>.<id>.mha``
    (int16) and ``VSD.Brain_3more.XX.O.OT.<id>/...mha`` (uint8, labels 1 necrosis, 2 oedema, 3 non-enhancing,
    4 enhancing: the disc of :func:`tumour_mask` with 3 on its first pixel row), written through ITK.

    Args:
        parent: the ``HGG`` or ``LGG`` folder.
        name: case folder name, e.g. ``brats_2013_pat0001_1``.
        ids: first file id (the release numbers files consecutively).
        radii: tumour disc radius per slice.
        seed: seed of the noise.
    """
    import itk

    rng = np.random.default_rng(seed)
    folder = parent / name
    mask = tumour_mask(radii, labels=(1, 4, 2))
    rows = np.nonzero(mask.any(axis=(1, 2)))[0]
    if rows.size:
        mask[rows[0]][mask[rows[0]] > 0] = 3
    volumes = [(f"MR_{m}", _modality(BRATS_LEVELS[k], rng, SHAPE, np.int16)) for m, k in
               (("Flair", "flair"), ("T1", "t1"), ("T1c", "t1ce"), ("T2", "t2"))]  # fmt: skip
    for offset, (modality, array) in enumerate([*volumes, ("OT", mask)]):
        stem = f"VSD.Brain{'_3more' if modality == 'OT' else ''}.XX.O.{modality}.{ids + offset}"
        image = itk.image_from_array(np.ascontiguousarray(array.transpose(2, 1, 0)))  # ITK arrays are (z, y, x)
        image.SetSpacing(MHA_SPACING)
        image.SetOrigin(MHA_ORIGIN)
        image.SetDirection(itk.matrix_from_array(MHA_DIRECTION))
        (folder / stem).mkdir(parents=True)
        itk.imwrite(image, str(folder / stem / f"{stem}.mha"))
    return folder


def medmnist_npz(path: Path, sizes: Sequence[int] = (7, 3, 4), shape: Sequence[int] = (8, 8), num_labels: int = 1,
                 num_classes: int = 3, seed: int = 0) -> Path:  # fmt: skip
    """A MedMNIST release file: ``{train,val,test}_{images,labels}`` with the release's dtypes, compressed.

    Images are random uint8 ``(N, *shape)`` (``shape`` ``(H, W)``, ``(H, W, 3)`` or ``(D, H, W)``) from ``seed``, so
    that a test can match every written file to its row; labels uint8 ``(N, 1)`` in ``0..num_classes-1`` or, with
    ``num_labels > 1``, a binary ``(N, num_labels)`` matrix (ChestMNIST).
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
        if num_labels == 1:
            arrays[f"{split}_labels"] = rng.integers(0, num_classes, size=(count, 1), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = (rng.random((count, num_labels)) < 0.1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


LGG_LEVELS: tuple[int, ...] = (60, 120, 180)
"""Intensity level of the pre-contrast, FLAIR and post-contrast planes of the LGG fixtures."""


def lgg_patient(parent: Path, name: str, tumour: Sequence[int], num_slices: int = 4, size: int = 8) -> Path:
    """One ``kaggle_3m/TCGA_*`` folder: ``<name>_<n>.tif`` RGB uint8 slices and ``<name>_<n>_mask.tif`` 0/255 masks.

    The planes hold :data:`LGG_LEVELS` plus the slice number; slice ``n`` (from 1) has a 2 x 2 tumour when ``n`` is in
    ``tumour``, else an empty mask.
    """
    from PIL import Image

    folder = parent / name
    folder.mkdir(parents=True)
    for number in range(1, num_slices + 1):
        image = np.zeros((size, size, 3), np.uint8)
        for plane, level in enumerate(LGG_LEVELS):
            image[..., plane] = level + number
        mask = np.zeros((size, size), np.uint8)
        if number in tumour:
            mask[2:4, 3:5] = 255
        Image.fromarray(image, "RGB").save(folder / f"{name}_{number}.tif")
        Image.fromarray(mask, "L").save(folder / f"{name}_{number}_mask.tif")
    return folder


def tcia_lgg(root: Path) -> Path:
    """The Kaggle LGG release with two patients under ``root/kaggle_3m`` (4 slices, tumour in slices 2-3 / none) plus
    its ``data.csv``; returns ``root``."""
    lgg_patient(root / "kaggle_3m", "TCGA_CS_4941_19960909", tumour=(2, 3))
    lgg_patient(root / "kaggle_3m", "TCGA_DU_5849_19950405", tumour=())
    (root / "kaggle_3m" / "data.csv").write_text("Patient,RNASeqCluster\nTCGA_CS_4941,2\n")
    return root


LUNA16_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.{:03d}"
"""Series instance UIDs of the LUNA16 fixtures (LIDC-IDRI's prefix and a three-digit number)."""
LUNA16_SPACING: tuple[float, float, float] = (0.8, 0.8, 2.0)
LUNA16_ORIGIN: tuple[float, float, float] = (-120.0, -110.0, -300.0)
"""Geometry of :func:`luna16` (ITK's LPS frame, identity direction): world = origin + spacing * voxel index."""
LIDC_TEXTURES: tuple[int, ...] = (5, 3, 1)
"""LIDC-IDRI reader texture ratings of :func:`luna16`'s nodules in turn: solid, part-solid, ground-glass."""


def lidc_xml(
    path: Path, uid: str, readers: Sequence[Sequence[tuple[float, float, Sequence[float], int | None]]]
) -> Path:
    """A LIDC-IDRI ``LidcReadMessage`` (with its namespace): one reading session per reader, each a list of nodules
    ``(x pixel, y pixel, [imageZposition, ...], texture)`` drawn as 4-point contours around the pixel; a texture of
    ``None`` is a nodule < 3 mm (no characteristics)."""
    sessions = []
    for reader in readers:
        nodules = []
        for x, y, zs, texture in reader:
            edges = "".join(
                f"<edgeMap><xCoord>{x + dx}</xCoord><yCoord>{y + dy}</yCoord></edgeMap>"
                for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1))
            )
            rois = "".join(
                f"<roi><imageZposition>{z}</imageZposition><inclusion>TRUE</inclusion>{edges}</roi>" for z in zs
            )
            chars = "" if texture is None else f"<characteristics><texture>{texture}</texture></characteristics>"
            nodules.append(f"<unblindedReadNodule><noduleID>n</noduleID>{chars}{rois}</unblindedReadNodule>")
        sessions.append(
            f"<readingSession><annotationVersion>3.12</annotationVersion>{''.join(nodules)}</readingSession>"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><LidcReadMessage xmlns="http://www.nih.gov" uid="1">'
        f"<ResponseHeader><SeriesInstanceUid>{uid}</SeriesInstanceUid></ResponseHeader>{''.join(sessions)}"
        "</LidcReadMessage>"
    )
    return path


def luna16(
    root: Path,
    num_series: int = 8,
    shape: Sequence[int] = (32, 32, 16),
    diameters: Sequence[float] = (6.0, 12.0),
    num_readers: int = 4,
) -> Path:
    """A LUNA16 release with the LIDC-IDRI reader annotations, sized for the 3D bundles' tiny patches.

    ``subset0/``, ``subset1/`` of int16 ``<seriesuid>.mhd`` + ``.raw`` volumes (``shape`` (x, y, z), lung
    parenchyma at -700 HU plus noise, :data:`LUNA16_SPACING`, :data:`LUNA16_ORIGIN`), ``CSVFILES/annotations.csv``
    and ``LIDC-XML-only/tcia-lidc-xml/<n>.xml``. Every third series (0, 3, ...) has no nodule; each other one has
    a solid 40 HU ball of ``diameters[i % len(diameters)]`` mm at a voxel centre that moves with the series, marked
    by ``num_readers`` readers with the texture ``LIDC_TEXTURES[i % 3]``.

    Returns:
        ``root`` (the input folder of ``convert("luna16", root, ..., lidc_xml=root / "LIDC-XML-only")``).
    """
    import itk

    rng = np.random.default_rng(4)
    spacing, origin = np.asarray(LUNA16_SPACING), np.asarray(LUNA16_ORIGIN)
    rows: list[list] = []
    for i in range(num_series):
        uid = LUNA16_UID.format(i)
        hu = rng.normal(-700.0, 30.0, tuple(shape))
        if i % 3:
            n = len(rows)
            voxel = np.array([shape[0] // 2 + i % 4 - 2, shape[1] // 2 - i % 3, shape[2] // 2], dtype=np.float64)
            diameter = float(diameters[n % len(diameters)])
            grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
            hu[np.linalg.norm((grid - voxel) * spacing, axis=-1) <= diameter / 2] = 40.0
            centre = origin + spacing * voxel
            rows.append([uid, *centre.round(3), diameter])
            zs = [centre[2] + dz * spacing[2] for dz in (-1, 0, 1)]
            readers = [[(voxel[0], voxel[1], zs, LIDC_TEXTURES[n % 3])]] * num_readers
            lidc_xml(root / "LIDC-XML-only" / "tcia-lidc-xml" / f"{i:03d}.xml", uid, readers)
        image = itk.image_from_array(np.ascontiguousarray(hu.astype(np.int16).transpose(2, 1, 0)))  # (z, y, x)
        image.SetSpacing(LUNA16_SPACING)
        image.SetOrigin(LUNA16_ORIGIN)
        (root / f"subset{i % 2}").mkdir(parents=True, exist_ok=True)
        itk.imwrite(image, str(root / f"subset{i % 2}" / f"{uid}.mhd"))
    (root / "CSVFILES").mkdir(parents=True, exist_ok=True)
    with open(root / "CSVFILES" / "annotations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        writer.writerows(rows)
    return root
