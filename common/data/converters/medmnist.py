"""MedMNIST v2/v3 and MedMNIST+ ``.npz`` releases: class-labelled 2D images or 3D volumes, the release's own split.

GA-UNet (Chen et al., sec. III.A, Table I) evaluates on eight data sets that MedMNIST packages with the same
training / validation / test sizes: NCT-CRC-HE-100K (``pathmnist``), ChestXray8 (``chestmnist``), HAM10000
(``dermamnist``), OCT 2017 (``octmnist``), pneumonia X-rays (``pneumoniamnist``), breast ultrasound
(``breastmnist``), LiTS (``organamnist``) and LIDC/LUNA nodules (``nodulemnist3d``).

Layout: one file ``<flag>.npz`` (28 px) or ``<flag>_<size>.npz`` (MedMNIST+: 64, 128, 224; 3D: 64) holding the
arrays ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``, ``test_labels``. Images
are uint8, 2D ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB), 3D ``(N, D, H, W)``; labels ``(N, 1)`` integers,
ChestMNIST ``(N, 14)`` binary multi-label.

Output, per image (rows ``[start, stop)`` of one split form one case folder of ``images_per_case`` images):

- one single-channel NIfTI file per channel (``grey``, or ``red``/``green``/``blue``), the array stored with the
  release's axis order and an identity affine (MedMNIST has no spacing): a loaded file equals the npz slice;
- ``class``: the label; for a multi-label release either ``label_index=k`` (finding ``k`` as a binary class) or
  ``multi_label=True`` (the label vector under ``labels`` and ``class`` = 1 when any finding is present);
- ``patient``: the image's own identifier ``<flag>-<split>-<index>`` (e.g. ``pathmnist-train-000123``), as
  MedMNIST publishes no patient identifier; the release's split is kept as published (``train`` -> training,
  ``val`` -> validation, ``test`` -> test), so the ``split`` ratios of the engine do not apply.

Streaming: the image arrays are read from the zip member of the npz in blocks of ``images_per_case`` rows (a
compressed member is decompressed once per process when the blocks come in order), never loaded whole, so that
``pathmnist_224.npz`` (13 GB of pixels) converts with the memory of one block.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from common.data.converters.engine import Case, CaseError, LayoutError, LoadedCase, OutputOptions, VolumeConverter
from common.utils import save_nifti

__all__ = ["MEDMNIST_SPLITS", "MedMNISTConverter", "medmnist_info"]

logger = logging.getLogger("common.data")

MEDMNIST_SPLITS: dict[str, str] = {"train": "training", "val": "validation", "test": "test"}
"""Release split -> datalist section."""
_FILE = re.compile(r"^(?P<flag>[a-z0-9]+mnist(?:3d)?)(?:_(?P<size>\d+))?\.npz$")
_RGB_NAMES = ["red", "green", "blue"]

# per-process cache of the open image member being streamed: (pid, path, key) -> [zipfile, file, next row]
_READERS: dict[tuple[int, str, str], list[Any]] = {}


def _array_header(handle: IO[bytes]) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Read the ``.npy`` header at the handle's position: ``(shape, dtype, fortran_order)``."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran)


def medmnist_info(path: str | os.PathLike) -> dict[str, Any]:
    """Read the headers of a MedMNIST npz (no pixel data): flag, size, shapes and dtypes of its six arrays.

    Returns:
        ``{"flag", "size", "spatial_dims", "num_channels", "arrays": {key: (shape, dtype)}}``.

    Raises:
        LayoutError: when the file is not named or laid out like a MedMNIST release.
    """
    path = Path(path)
    match = _FILE.match(path.name)
    if match is None:
        raise LayoutError(
            f"{path.name} is not a MedMNIST file name: expected <flag>.npz or <flag>_<size>.npz, e.g. "
            "pathmnist.npz, pathmnist_128.npz, nodulemnist3d_64.npz."
        )
    arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for split in MEDMNIST_SPLITS:
                for kind in ("images", "labels"):
                    key = f"{split}_{kind}"
                    if f"{key}.npy" not in names:
                        raise LayoutError(
                            f"{path} holds no array {key!r} (MedMNIST keys: train/val/test_images/labels)."
                        )
                    with zf.open(f"{key}.npy") as handle:
                        shape, dtype, fortran = _array_header(handle)
                    if fortran:
                        raise LayoutError(f"{path}: array {key} is stored in Fortran order; expected C order.")
                    arrays[key] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        if isinstance(e, LayoutError):
            raise
        raise LayoutError(f"{path} is not a readable npz file ({type(e).__name__}: {e}).") from None
    flag = match.group("flag")
    is_3d = flag.endswith("3d")
    image_shape = arrays["train_images"][0]
    if is_3d:
        spatial_dims, channels = 3, 1
        expected_ndim = 4
    elif len(image_shape) == 4 and image_shape[-1] == 3:
        spatial_dims, channels, expected_ndim = 2, 3, 4
    else:
        spatial_dims, channels, expected_ndim = 2, 1, 3
    for split in MEDMNIST_SPLITS:
        (ishape, idtype), (lshape, ldtype) = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(ishape) != expected_ndim or ishape[1:] != image_shape[1:] or idtype != np.uint8:
            raise LayoutError(
                f"{path}: {split}_images has shape {ishape} and dtype {idtype}; expected uint8 "
                f"{'(N, D, H, W)' if is_3d else '(N, H, W) or (N, H, W, 3)'} like train_images {image_shape}."
            )
        if len(lshape) != 2 or lshape[0] != ishape[0] or not np.issubdtype(ldtype, np.integer):
            raise LayoutError(
                f"{path}: {split}_labels has shape {lshape} and dtype {ldtype}; expected integers (N, 1) or (N, K) "
                f"with N = {ishape[0]} images."
            )
    size = match.group("size")
    return {
        "flag": flag,
        "size": int(size) if size else int(image_shape[1]),
        "spatial_dims": spatial_dims,
        "num_channels": channels,
        "arrays": arrays,
    }


def _read_rows(path: str, key: str, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of the array ``key`` of an npz, streamed from its zip member.

    The open member is kept per process between calls, so blocks read in order decompress the member once; another
    start re-opens it and skips forward (decompressing what it skips).
    """
    cache_key = (os.getpid(), path, key)
    for other in [k for k in _READERS if k != cache_key]:  # one open member per process (and none of a parent)
        state = _READERS.pop(other)
        if other[0] == os.getpid():
            state[1].close()
            state[0].close()
    state = _READERS.get(cache_key)
    if state is None or state[2] != start:
        if state is not None:
            state[1].close()
            state[0].close()
        zf = zipfile.ZipFile(path)
        handle = zf.open(f"{key}.npy")
        shape, dtype, _ = _array_header(handle)
        state = [zf, handle, 0, shape, dtype, handle.tell()]
        _READERS[cache_key] = state
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        if start:
            handle.seek(state[5] + start * row_bytes)
    zf, handle, _, shape, dtype, _ = state
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    data = handle.read((stop - start) * row_bytes)
    if len(data) != (stop - start) * row_bytes:
        raise CaseError(f"{key} of {path} ends early: rows {start}-{stop - 1} incomplete (truncated file?)")
    state[2] = stop
    if stop >= shape[0]:  # the last block: release the member
        _READERS.pop(cache_key)
        handle.close()
        zf.close()
    return np.frombuffer(data, dtype=dtype).reshape((stop - start, *shape[1:]))


class MedMNISTConverter(VolumeConverter):
    """Converter of one MedMNIST ``.npz`` file (layout and output in the module docstring).

    Args:
        label_index: multi-label releases (ChestMNIST): the finding used as binary class (0-13; ChestMNIST's order
            atelectasis, cardiomegaly, effusion, infiltration, mass, nodule, pneumonia, pneumothorax,
            consolidation, edema, emphysema, fibrosis, pleural thickening, hernia).
        multi_label: multi-label releases: keep the label vector under ``labels``; ``class`` = any finding.
        images_per_case: images per case folder (the unit of streaming, resume and worker tasks).

    Raises:
        ValueError: for a bad option.
    """

    name = "medmnist"
    description = "MedMNIST class-labelled images, with the release's training / validation / test split."
    reference = "Yang et al., MedMNIST v2, Scientific Data 10:41, 2023; https://medmnist.com"
    input_is_file = True
    supports_preprocessing = False  # blocks of images, not volumes on one grid

    def __init__(self, label_index: int | None = None, multi_label: bool = False, images_per_case: int = 1000):
        if label_index is not None and multi_label:
            raise ValueError("label_index and multi_label exclude each other: choose one finding or the vector.")
        if label_index is not None and int(label_index) < 0:
            raise ValueError(f"label_index must be >= 0, got {label_index!r}.")
        if int(images_per_case) < 1:
            raise ValueError(f"images_per_case must be >= 1, got {images_per_case!r}.")
        self.label_index = None if label_index is None else int(label_index)
        self.multi_label = bool(multi_label)
        self.images_per_case = int(images_per_case)
        self.info: dict[str, Any] | None = None

    @property
    def channel_names(self) -> list[str]:
        if self.info is None:
            raise RuntimeError("channel_names are known once find_cases has read the file.")
        return list(_RGB_NAMES) if self.info["num_channels"] == 3 else ["grey"]

    def options(self) -> dict[str, Any]:
        return {
            "label_index": self.label_index,
            "multi_label": self.multi_label,
            "images_per_case": self.images_per_case,
        }

    def find_cases(self, input_dir: Path) -> list[Case]:
        """List one case per block of ``images_per_case`` images of each split (``input_dir`` is the npz file)."""
        info = medmnist_info(input_dir)
        num_labels = info["arrays"]["train_labels"][0][1]
        if num_labels > 1 and self.label_index is None and not self.multi_label:
            raise LayoutError(
                f"{input_dir.name} is multi-label ({num_labels} findings per image): choose label_index=k (finding k "
                "as binary class) or multi_label=True (the vector under 'labels', class = any finding)."
            )
        if self.label_index is not None and self.label_index >= num_labels:
            raise LayoutError(f"label_index {self.label_index} out of range: {input_dir.name} has {num_labels} labels.")
        self.info = info
        cases = []
        for split in MEDMNIST_SPLITS:
            count = info["arrays"][f"{split}_images"][0][0]
            for block, start in enumerate(range(0, count, self.images_per_case)):
                stop = min(start + self.images_per_case, count)
                case_id = f"{split}-{block:05d}"
                attributes = {"split": split, "start": start, "stop": stop}
                cases.append(Case(case_id, case_id, {"npz": str(input_dir)}, attributes=attributes))
        return cases

    def load_case(self, case: Case) -> LoadedCase:
        """The block's images as ``channels[0]`` ``(n, ...)`` and its label rows ``(n, K)`` as ``label``."""
        path, split = case.files["npz"], case.attributes["split"]
        start, stop = int(case.attributes["start"]), int(case.attributes["stop"])
        try:
            images = _read_rows(path, f"{split}_images", start, stop)
            with np.load(path) as npz:
                labels = np.asarray(npz[f"{split}_labels"][start:stop])
        except CaseError:
            raise
        except Exception as e:  # zlib.error, BadZipFile, EOFError... of a corrupt member
            raise CaseError(f"{split} rows {start}-{stop - 1} of {path} unreadable ({type(e).__name__}: {e})") from None
        return LoadedCase([images], labels, np.eye(4))

    def write_case(
        self, loaded: LoadedCase, case: Case, folder: Path, prefix: str, options: OutputOptions
    ) -> dict[str, Any]:
        """Write one NIfTI file per image and channel; the record carries the release split of the block."""
        assert self.info is not None
        if options.spatial_dims != self.info["spatial_dims"]:
            raise ValueError(
                f"{self.info['flag']} holds {self.info['spatial_dims']}D images; convert with "
                f"spatial_dims={self.info['spatial_dims']} (got {options.spatial_dims})."
            )
        images, labels = loaded.channels[0], np.asarray(loaded.label)
        split, start = case.attributes["split"], int(case.attributes["start"])
        names = self.channel_names
        entries = []
        for row, (image, label) in enumerate(zip(images, labels)):
            index = start + row
            stem = f"{index:06d}"
            files = []
            planes = [image[..., c] for c in range(3)] if len(names) == 3 else [image]
            for name, plane in zip(names, planes):
                save_nifti(plane, folder / f"{stem}_{name}.nii.gz", np.eye(4))
                files.append(f"{prefix}/{stem}_{name}.nii.gz")
            entry: dict[str, Any] = {"image": files}
            if self.multi_label:
                entry["labels"] = [int(v) for v in label]
                entry["class"] = int(np.any(label > 0))
            else:
                entry["class"] = int(label[self.label_index or 0])
            entry.update({"patient": f"{self.info['flag']}-{split}-{index:06d}", "case": case.case_id, "index": index})
            entries.append(entry)
        return {
            "case": case.case_id,
            "patient": case.patient,
            "entries": entries,
            "num_ambiguous": 0,
            "release_split": MEDMNIST_SPLITS[split],
        }

    def assign_splits(self, records: Sequence[dict[str, Any]], fractions: Sequence[float], seed: int) -> dict[str, str]:
        """The release's split: each image (its own patient) goes to the section of its block."""
        return {str(e["patient"]): r["release_split"] for r in records for e in r["entries"]}

    def validation_args(self, options: OutputOptions) -> dict[str, Any]:
        return {
            "label_key": None,
            "class_key": "class",
            "required_keys": ("patient",),
            "spatial_dims": options.spatial_dims,
            "num_channels": len(self.channel_names),
        }
