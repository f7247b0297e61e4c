"""TCIA lower-grade glioma (LGG) FLAIR segmentation set, as published on Kaggle ("lgg-mri-segmentation").

CDA-GAN (Xu et al. 2023, sec. 4.1, Table 1) uses this release as its "TCIA" data set: 110 LGG patients of The
Cancer Imaging Archive, 20 to 88 axial 256 x 256 slices each, with manual FLAIR abnormality masks; one channel
(FLAIR) per slice, 20 % of the patients for testing and 10 % for validation (``split="7:1:2"``).

Layout (the archive unpacked; ``INPUT_DIR`` may be ``kaggle_3m`` itself, its parent or the parent of
``lgg-mri-segmentation/kaggle_3m``)::

    kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1.tif        slice 1, RGB uint8 (256, 256, 3)
    kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1_mask.tif   its mask, uint8 0/255 (256, 256)
    kaggle_3m/data.csv, README.md                                      ignored

The three colour planes of a slice are three MR sequences: pre-contrast, FLAIR, post-contrast (the release's
README); they become the channels ``pre``, ``flair``, ``post``, of which ``channels`` picks some (FLAIR only by
default, as in the paper). One case per ``TCGA_*`` folder, ``patient`` = the folder name; the slices of a case
(numbered from 1 in the file names) are stacked along the third voxel axis (slice ``k`` of the output is file
``_<k + 1>.tif``) with an identity affine (the release keeps no spacing), so the engine writes 2D slices with
``class`` = tumour present (at least ``min_area`` mask pixels) and the mask as 0/1 label. A slice tif without its
mask (or a mask without its slice) makes the case a listed skip naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.data.converters.engine import Case, CaseError, LayoutError, LoadedCase, VolumeConverter, find_case_folders

__all__ = ["LGG_CHANNELS", "TCIALGGConverter"]

LGG_CHANNELS: tuple[str, ...] = ("pre", "flair", "post")
"""The colour planes of the release's slices, in order: pre-contrast, FLAIR, post-contrast."""
_PATIENT = re.compile(r"^TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+_\d+$")
_SLICE = re.compile(r"^(?P<stem>.+)_(?P<number>\d+)(?P<mask>_mask)?\.tif$")


def _read_tif(path: str, role: str) -> np.ndarray:
    """A tif as a numpy array (PIL), read failures as :class:`CaseError` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError... for a corrupt file
        raise CaseError(f"{role} file unreadable or corrupt: {path} ({type(e).__name__}: {e})") from None


class TCIALGGConverter(VolumeConverter):
    """Converter of the Kaggle LGG segmentation release (layout and output in the module docstring).

    Args:
        channels: colour planes to keep, in order, names of :data:`LGG_CHANNELS` or indices (``"flair"`` by
            default; ``"pre,flair,post"`` for all three).

    Raises:
        ValueError: for an unknown channel.
    """

    name = "tcia_lgg"
    description = "TCIA lower-grade glioma MR slices (pre-contrast, FLAIR, post-contrast) with FLAIR abnormality masks."
    reference = (
        "Buda et al., Comput. Biol. Med. 109, 2019; Mazurowski et al., 2017; "
        "https://www.kaggle.com/datasets/mateuszbudala/lgg-mri-segmentation"
    )

    def __init__(self, channels: str | Sequence[str | int] | None = "flair"):
        if channels is None:
            channels = ("flair",)
        if isinstance(channels, str):
            channels = [c for c in re.split(r"[,\s]+", channels.strip()) if c]
        names = []
        for channel in channels:
            if isinstance(channel, int) or str(channel).isdigit():
                if not 0 <= int(channel) < len(LGG_CHANNELS):
                    raise ValueError(f"channel index {channel} out of range 0-{len(LGG_CHANNELS) - 1}.")
                names.append(LGG_CHANNELS[int(channel)])
            elif str(channel).lower() in LGG_CHANNELS:
                names.append(str(channel).lower())
            else:
                raise ValueError(f"unknown channel {channel!r}; expected names of {list(LGG_CHANNELS)} or indices.")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"channels must name distinct planes, got {channels!r}.")
        self.channels = names

    @property
    def channel_names(self) -> list[str]:
        return list(self.channels)

    @property
    def labels(self) -> dict[str, str]:
        return {"0": "background", "1": "FLAIR abnormality"}

    def options(self) -> dict[str, Any]:
        return {"channels": list(self.channels)}

    def find_cases(self, input_dir: Path) -> list[Case]:
        candidates = (input_dir, input_dir / "kaggle_3m", input_dir / "lgg-mri-segmentation" / "kaggle_3m")
        folder, names = find_case_folders(candidates, _PATIENT)
        if not names:
            raise LayoutError(
                f"no TCGA_* patient folder under {input_dir} (or its kaggle_3m folder): expected "
                "kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1.tif with ..._1_mask.tif."
            )
        return [self._case(folder / name) for name in names]

    def _case(self, folder: Path) -> Case:
        """One patient folder: slice number -> image and mask files, or the problem found."""
        images: dict[int, str] = {}
        masks: dict[int, str] = {}
        for name in os.listdir(folder):
            match = _SLICE.match(name)
            if match is None or match.group("stem") != folder.name:
                continue
            (masks if match.group("mask") else images)[int(match.group("number"))] = str(folder / name)
        files: dict[str, str] = {}
        problem = None
        for number in sorted(images):
            if number not in masks:
                problem = f"slice {Path(images[number]).name} has no mask ({folder.name}_{number}_mask.tif missing)"
                break
        else:
            orphans = sorted(set(masks) - set(images))
            if orphans:
                problem = f"mask {Path(masks[orphans[0]]).name} has no slice ({folder.name}_{orphans[0]}.tif missing)"
            elif not images:
                problem = f"no slice {folder.name}_<n>.tif in {folder}"
            elif sorted(images) != list(range(1, len(images) + 1)):
                missing = sorted(set(range(1, max(images) + 1)) - set(images))
                problem = f"slice numbers not contiguous from 1: {folder.name}_{missing[0]}.tif missing"
        for number in sorted(images):
            files[f"image_{number}"] = images[number]
            if number in masks:
                files[f"mask_{number}"] = masks[number]
        return Case(folder.name, folder.name, files, problem=problem)

    def load_case(self, case: Case) -> LoadedCase:
        """Stack the slices ``(H, W, S)`` per kept channel and the 0/1 masks; check every slice's shape."""
        numbers = sorted(int(role.split("_")[1]) for role in case.files if role.startswith("image_"))
        planes = [LGG_CHANNELS.index(name) for name in self.channels]
        channels: list[list[np.ndarray]] = [[] for _ in planes]
        masks = []
        shape = None
        for number in numbers:
            image_file, mask_file = case.files[f"image_{number}"], case.files[f"mask_{number}"]
            image = _read_tif(image_file, "slice")
            mask = _read_tif(mask_file, "mask")
            if image.ndim != 3 or image.shape[-1] < 3:
                raise CaseError(f"slice {Path(image_file).name} has shape {image.shape}; expected (H, W, 3) RGB")
            if mask.ndim == 3:
                mask = mask[..., 0]
            if mask.shape != image.shape[:2]:
                raise CaseError(
                    f"geometry mismatch: mask {Path(mask_file).name} is {mask.shape}, its slice {image.shape[:2]}"
                )
            if shape is None:
                shape = mask.shape
            elif mask.shape != shape:
                raise CaseError(f"geometry mismatch: slice {Path(image_file).name} is {mask.shape}, the first {shape}")
            for target, plane in zip(channels, planes):
                target.append(image[..., plane])
            masks.append((mask > 0).astype(np.uint8))
        return LoadedCase([np.stack(c, axis=-1) for c in channels], np.stack(masks, axis=-1), np.eye(4))
