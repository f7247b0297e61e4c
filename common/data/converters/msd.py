"""Medical Segmentation Decathlon (MSD) tasks, as downloaded: ``TaskXX_Name/dataset.json``, ``imagesTr``, ``labelsTr``.

The case list is the ``training`` list of the task's ``dataset.json`` (``{"image": "./imagesTr/la_003.nii.gz",
"label": "./labelsTr/la_003.nii.gz"}``), so the ``._*`` resource-fork files of the released archives and the
unlabelled ``imagesTs`` are never read. Channel names and label names come from its ``modality`` and ``labels``.

A multi-channel task stores 4D images ``(X, Y, Z, C)`` (Task01_BrainTumour: FLAIR, T1w, t1gd, T2w; Task05_Prostate:
T2, ADC): each channel becomes its own file, optionally selected and reordered with ``channels`` (e.g.
``["T1w", "t1gd", "T2w", "FLAIR"]`` gives the T1, T1c, T2, FLAIR order of the BraTS converter and the phantoms).
Labels are kept as released. Vu et al. use two of these tasks (sec. 4.1), D-HEART (Task02_Heart, left atrium, 20
MRI) and D-SPLEEN (Task09_Spleen, 41 CT), split 60/20/20 (sec. 3.3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.data.converters.engine import (
    Case,
    CaseError,
    LayoutError,
    LoadedCase,
    VolumeConverter,
    check_geometry,
    integer_labels,
    load_volume,
)
from common.utils import split_ext

__all__ = ["MSDConverter"]


def _file_name(name: str) -> str:
    """A modality name as a file-name part: lower case, runs of other characters than letters/digits as ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "channel"


class MSDConverter(VolumeConverter):
    """Converter of one Medical Segmentation Decathlon task folder (layout in the module docstring).

    Args:
        channels: modality names (as in ``dataset.json``, any case) or indices to keep, in the output order;
            ``None`` keeps every modality in the released order.
    """

    name = "msd"
    reference = "Simpson et al., arXiv:1902.09063, 2019; Antonelli et al., Nat. Commun. 13, 2022"

    def __init__(self, channels: Sequence[str | int] | str | None = None) -> None:
        if isinstance(channels, str):
            channels = [c for c in re.split(r"[,\s]+", channels) if c]
        self.channels = None if channels is None else list(channels)
        self.modalities: list[str] = []
        self.indices: list[int] = []
        self.task_labels: dict[str, str] = {}
        self.description = ""

    @property
    def channel_names(self) -> list[str]:
        if not self.indices:
            raise RuntimeError("MSDConverter.find_cases must run first (it reads dataset.json).")
        return [_file_name(self.modalities[i]) for i in self.indices]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.task_labels)

    def options(self) -> dict[str, Any]:
        return {"channels": self.channel_names}

    def _select(self, modalities: list[str]) -> list[int]:
        if self.channels is None:
            return list(range(len(modalities)))
        lower = [m.lower() for m in modalities]
        indices = []
        for channel in self.channels:
            if isinstance(channel, int) or str(channel).isdigit():
                index = int(channel)
                if not 0 <= index < len(modalities):
                    raise ValueError(f"channel index {index} out of range; the task has modalities {modalities}.")
            elif str(channel).lower() in lower:
                index = lower.index(str(channel).lower())
            else:
                raise ValueError(f"channel {channel!r} is not a modality of the task; its modalities: {modalities}.")
            indices.append(index)
        if len(set(indices)) != len(indices):
            raise ValueError(f"channels {self.channels} name a modality twice.")
        return indices

    def find_cases(self, input_dir: Path) -> list[Case]:
        task = input_dir
        if not (task / "dataset.json").is_file():
            candidates = sorted(p for p in input_dir.glob("Task*") if (p / "dataset.json").is_file())
            if len(candidates) != 1:
                found = f"; found task folders {[p.name for p in candidates]}" if candidates else ""
                raise LayoutError(
                    f"{input_dir} is not a Medical Segmentation Decathlon task folder: expected "
                    f"{input_dir}/dataset.json with imagesTr/ and labelsTr/ (e.g. Task09_Spleen/dataset.json), or "
                    f"a folder holding exactly one such TaskXX_Name folder{found}."
                )
            task = candidates[0]
        try:
            meta = json.loads((task / "dataset.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LayoutError(f"{task / 'dataset.json'} is unreadable ({type(e).__name__}: {e}).") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("training"), list) or not meta.get("modality"):
            raise LayoutError(
                f"{task / 'dataset.json'} is not a Decathlon dataset.json: it needs a 'modality' mapping and a "
                "'training' list of {'image': ./imagesTr/..., 'label': ./labelsTr/...} entries."
            )
        for folder in ("imagesTr", "labelsTr"):
            if not (task / folder).is_dir():
                raise LayoutError(f"{task} has no {folder}/ folder (a Decathlon task has imagesTr/ and labelsTr/).")
        modality = meta["modality"]
        self.modalities = [str(modality[k]) for k in sorted(modality, key=lambda k: int(k))]
        self.indices = self._select(self.modalities)
        self.task_labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        self.name = "msd_" + _file_name(str(meta.get("name") or task.name))
        self.description = f"Medical Segmentation Decathlon {task.name}: {meta.get('description', '')}".strip()
        cases = []
        for item in meta["training"]:
            if not isinstance(item, dict) or "image" not in item or "label" not in item:
                raise LayoutError(f"{task / 'dataset.json'}: training entry {item!r} lacks 'image' or 'label'.")
            image, label = task / str(item["image"]), task / str(item["label"])
            case_id = split_ext(image.name)[0]
            missing = [str(p) for p in (image, label) if not p.is_file()]
            problem = f"file listed in dataset.json is missing: {', '.join(missing)}" if missing else None
            cases.append(Case(case_id, case_id, {"image": str(image), "label": str(label)}, problem=problem))
        return cases

    def load_case(self, case: Case) -> LoadedCase:
        image, image_affine = load_volume(case.files["image"], case.case_id, "image")
        label, label_affine = load_volume(case.files["label"], case.case_id, "label")
        num = len(self.modalities)
        if image.ndim == 4 and image.shape[3] == num:
            channels = [image[..., i] for i in self.indices]
        elif image.ndim == 3 and num == 1:
            channels = [image]
        else:
            raise CaseError(
                f"image shape {tuple(image.shape)} does not hold the task's {num} modalities {self.modalities}"
            )
        check_geometry(case.case_id, {"image": (channels[0], image_affine), "label": (label, label_affine)})
        return LoadedCase(channels, integer_labels(label, case.case_id), image_affine)
