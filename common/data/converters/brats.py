"""BraTS (Brain Tumor Segmentation challenge) releases 2018-2021 and 2023+, as downloaded.

Layouts read (case folders may sit at most three folders below the input folder, e.g. under
``MICCAI_BraTS2020_TrainingData/`` or the ``HGG/`` and ``LGG/`` folders of 2018/2019):

- 2018-2021: ``BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz`` (``Brats18_2013_2_1``,
  ``BraTS19_...``, ``BraTS2021_00000``; ``.nii`` accepted too, as in the widespread uncompressed copies). Labels
  1 necrotic / non-enhancing tumour core, 2 peritumoral oedema, 4 enhancing tumour; 4 is written as 3, so that
  every release and the built-in phantom (:py:data:`common.data.phantoms.BRAIN_TUMOUR_LABELS`) share one
  convention. A case folder whose segmentation has another name is read from the one other NIfTI file in the
  folder: BraTS 2020's ``BraTS20_Training_355`` ships its segmentation as ``W39_1998.09.19_Segm.nii``.
- BRATS 2015/2016 (MetaImage, read through ITK): ``BRATS2015_Training/HGG/brats_2013_pat0001_1/
  VSD.Brain.XX.O.MR_{T1,T1c,T2,Flair}.<id>/VSD.Brain.XX.O.MR_<...>.<id>.mha`` and the ground truth
  ``VSD.Brain_3more.XX.O.OT.<id>/VSD.Brain_3more.XX.O.OT.<id>.mha`` (the ``.mha`` files may also sit in the case
  folder itself). Labels 1 necrosis, 2 oedema, 3 non-enhancing tumour, 4 enhancing tumour; as in the 2017+
  releases, 3 joins 1 (tumour core) and 4 is written as 3. The world position of every voxel is kept (ITK's LPS
  space is written as NIfTI's RAS). The patient is ``brats_2013_pat0001`` / ``brats_tcia_pat153`` (the last
  number is the scan), so that several scans of a patient land in one split.
- 2023+: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (also ``BraTS-MEN``, ``-MET``,
  ``-PED``, ``-SSA``). Labels 1 non-enhancing tumour core, 2 surrounding FLAIR hyperintensity, 3 enhancing tumour
  (2024 post-treatment: 4 resection cavity), kept. The last number is the time point: the patient is
  ``BraTS-GLI-00000``, so that every time point of a patient lands in one split.

Channels are written in the fixed order T1, T1c, T2, FLAIR (:py:data:`BRATS_CHANNELS`, the phantom's order), named
``t1``, ``t1c``, ``t2``, ``flair``. The tumour grade (``HGG``/``LGG``) is attached to the entries when known, from a
``HGG``/``LGG`` parent folder (2018/2019) or the ``name_mapping.csv`` of BraTS 2020, and ``grades`` keeps only
some grades: CDA-GAN uses the HGG cases of BraTS 2020 (Xu et al. 2023, sec. 4.1).

The papers' slice ranges are options of the 2D output (:class:`~common.data.converters.OutputOptions`):
CDA-GAN sec. 4.1 keeps axial slices 30-125 (``slices=(30, 126)``); Han's thesis sec. 4.2.1 keeps slices 30-130 of
155 (``(30, 131)``) and sec. 3.2.2 slices 80-149 "among the whole 240 slices" (``(80, 150)``; 240 is an in-plane
size of the 240x240x155 volumes, so that range runs along a non-axial axis: give ``slice_axis`` explicitly).
Vu et al. sec. 4.4 apply N4 bias-field correction to BraTS20 before normalisation; it is not part of this
converter.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.data.converters.engine import (
    Case,
    CaseError,
    LayoutError,
    LoadedCase,
    VolumeConverter,
    integer_labels,
    load_aligned,
)

__all__ = ["BRATS_CHANNELS", "BRATS_LABELS", "BraTSConverter"]

logger = logging.getLogger("common.data")

BRATS_CHANNELS: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
"""Output channels, in order: T1, T1c, T2, FLAIR (as :py:data:`common.data.phantoms.BRAIN_MR_CHANNELS`)."""
BRATS_LABELS: dict[str, str] = {
    "0": "background",
    "1": "necrotic / non-enhancing tumour core",
    "2": "peritumoral oedema (FLAIR hyperintensity)",
    "3": "enhancing tumour",
    "4": "resection cavity (2024 post-treatment releases only)",
}
"""Label values of the written masks (2018-2021 label 4, enhancing tumour, is written as 3)."""

# release suffix of each output channel and of the label, per naming scheme
_LEGACY = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "label": "seg"}
_GLI = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f", "label": "seg"}
_SCHEMES = {
    "2018-2021": ("_", _LEGACY, {4: 3}, (0, 1, 2, 4)),
    "2023+": ("-", _GLI, {}, (0, 1, 2, 3, 4)),
    "2015-2016": ("", {}, {3: 1, 4: 3}, (0, 1, 2, 3, 4)),
}
_MHA_ROLE = re.compile(r"^VSD\.Brain[^.]*\.XX\.O\.(MR_T1c|MR_T1|MR_T2|MR_Flair|OT)\.\d+\.mha$", re.IGNORECASE)
_MHA_ROLES = {"mr_t1": "t1", "mr_t1c": "t1c", "mr_t2": "t2", "mr_flair": "flair", "ot": "label"}
_MHA_PATIENT = re.compile(r"^(brats_[A-Za-z0-9]+_pat\d+)_\d+$", re.IGNORECASE)
_NIFTI = (".nii.gz", ".nii")
_GLI_PATIENT = re.compile(r"^(BraTS-[A-Za-z]+-\d+)-\d+$")
_MAX_DEPTH = 3
_GRADES = ("HGG", "LGG")


def _strip_nifti(name: str) -> str | None:
    lower = name.lower()
    for ext in _NIFTI:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return None


def _is_case_file(folder: str, file: str) -> bool:
    stem = _strip_nifti(file)
    return stem is not None and (stem.startswith(folder + "_") or stem.startswith(folder + "-"))


class BraTSConverter(VolumeConverter):
    """Converter of the BraTS releases 2018-2021 and 2023+ (layouts in the module docstring).

    Args:
        grades: keep only cases of these grades (``["HGG"]`` for CDA-GAN sec. 4.1); ``None`` keeps every case.
            Cases of an unknown grade are excluded when grades are given.
    """

    name = "brats"
    description = (
        "BraTS multi-parametric brain MR (T1, T1c, T2, FLAIR) with glioma segmentations, converted by "
        "common.data.converters."
    )
    reference = "Menze et al., IEEE TMI 34(10), 2015; Bakas et al., Sci. Data 4, 2017; https://www.synapse.org/brats"

    def __init__(self, grades: Sequence[str] | str | None = None) -> None:
        if isinstance(grades, str):
            grades = [g for g in re.split(r"[,\s]+", grades) if g]
        self.grades = None if grades is None else sorted({str(g).upper() for g in grades})
        if self.grades is not None and (not self.grades or set(self.grades) - set(_GRADES)):
            raise ValueError(f"grades must be a subset of {list(_GRADES)}, got {grades!r}.")

    @property
    def channel_names(self) -> list[str]:
        return list(BRATS_CHANNELS)

    @property
    def labels(self) -> dict[str, str]:
        return dict(BRATS_LABELS)

    def options(self) -> dict[str, Any]:
        return {"channels": list(BRATS_CHANNELS), "label_map_2018_2021": {"4": 3}}

    def find_cases(self, input_dir: Path) -> list[Case]:
        case_dirs: list[Path] = []
        grade_table: dict[str, str] = {}
        mha_seen = False
        base_depth = len(input_dir.parts)
        for root, dirs, files in os.walk(input_dir):
            dirs.sort()
            folder = Path(root)
            if "name_mapping.csv" in files:
                grade_table.update(_read_name_mapping(folder / "name_mapping.csv"))
            mha_seen = mha_seen or any(f.lower().endswith(".mha") for f in files)
            if folder != input_dir and (
                any(_is_case_file(folder.name, f) for f in files)
                or any(d.startswith("VSD.Brain") for d in dirs)
                or any(_MHA_ROLE.match(f) for f in files)
            ):
                case_dirs.append(folder)
                dirs[:] = []
            elif len(folder.parts) - base_depth >= _MAX_DEPTH:
                dirs[:] = []
        if not case_dirs:
            hint = " (.mha files were found, but not in that layout)" if mha_seen else ""
            raise LayoutError(
                f"no BraTS case folder found under {input_dir} (searched {_MAX_DEPTH} folder levels){hint}. Expected "
                "case folders such as BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz "
                "(2018-2021, possibly under HGG/ and LGG/), "
                "BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz (2023+) or "
                "HGG/brats_2013_pat0001_1/VSD.Brain.XX.O.MR_T1.<id>/VSD.Brain.XX.O.MR_T1.<id>.mha (2015/2016)."
            )
        return [self._case(folder, grade_table) for folder in sorted(case_dirs, key=lambda p: p.name)]

    def _case(self, folder: Path, grade_table: dict[str, str]) -> Case:
        """The case of one case folder: scheme, files, patient, grade, or the problem that makes it unusable."""
        name = folder.name
        if any(_MHA_ROLE.match(f) for f in os.listdir(folder)) or any(
            p.is_dir() and p.name.startswith("VSD.Brain") for p in folder.iterdir()
        ):
            return self._mha_case(folder, grade_table)
        files = sorted(f for f in os.listdir(folder) if _strip_nifti(f) is not None)
        stems = {_strip_nifti(f): f for f in files}
        scheme = "2023+" if any(f"{name}-{s}" in stems for s in _GLI.values()) else "2018-2021"
        separator, suffixes, _, _ = _SCHEMES[scheme]
        paths: dict[str, str] = {}
        missing = []
        for role, suffix in suffixes.items():
            file = stems.get(f"{name}{separator}{suffix}")
            if file is None:
                missing.append(role)
            else:
                paths[role] = str(folder / file)
        problem = None
        if "label" in missing:
            # a segmentation under another name (BraTS 2020's BraTS20_Training_355/W39_1998.09.19_Segm.nii)
            others = [f for f in files if not any(stems.get(f"{name}{separator}{s}") == f for s in suffixes.values())]
            if len(others) == 1:
                paths["label"] = str(folder / others[0])
                missing.remove("label")
                logger.info("BraTS case %s: segmentation read from %s (non-standard name).", name, others[0])
            elif others:
                problem = f"no {name}{separator}seg file and several other NIfTI files {others}: segmentation unknown"
        channels_missing = [r for r in missing if r != "label"]
        if channels_missing:
            expected = ", ".join(f"{name}{separator}{suffixes[r]}.nii.gz" for r in channels_missing)
            problem = f"missing modality {', '.join(suffixes[r] for r in channels_missing)} (expected {expected})"
        elif "label" in missing and problem is None:
            problem = (
                f"no segmentation (expected {name}{separator}seg.nii.gz); validation and test cases carry no labels"
            )
        match = _GLI_PATIENT.match(name) if scheme == "2023+" else None
        return self._make_case(folder, match.group(1) if match else name, paths, problem, grade_table)

    def _mha_case(self, folder: Path, grade_table: dict[str, str]) -> Case:
        """A BRATS 2015/2016 case folder: ``.mha`` files in ``VSD.Brain...`` subfolders (or in the folder)."""
        found: dict[str, list[str]] = {}
        for parent in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
            for file in sorted(os.listdir(parent)):
                match = _MHA_ROLE.match(file)
                if match:
                    found.setdefault(_MHA_ROLES[match.group(1).lower()], []).append(str(parent / file))
        paths = {role: files[0] for role, files in found.items() if len(files) == 1}
        problem = None
        several = sorted(role for role, files in found.items() if len(files) > 1)
        missing = [role for role in BRATS_CHANNELS if role not in found]
        if several:
            problem = f"several .mha files for {', '.join(several)}"
        elif missing:
            names = {"t1": "MR_T1", "t1c": "MR_T1c", "t2": "MR_T2", "flair": "MR_Flair"}
            problem = (
                f"missing modality {', '.join(names[r] for r in missing)} (expected VSD.Brain.XX.O.<modality>.<id>.mha)"
            )
        elif "label" not in found:
            problem = "no ground truth VSD.Brain_3more.XX.O.OT.<id>.mha; test cases carry no labels"
        match = _MHA_PATIENT.match(folder.name)
        return self._make_case(folder, match.group(1) if match else folder.name, paths, problem, grade_table)

    def _make_case(
        self, folder: Path, patient: str, paths: dict[str, str], problem: str | None, grade_table: dict[str, str]
    ) -> Case:
        """The case with its grade (parent folder or ``name_mapping.csv``) and the grade filter applied."""
        name = folder.name
        grade = folder.parent.name.upper() if folder.parent.name.upper() in _GRADES else grade_table.get(name)
        attributes: dict[str, Any] = {} if grade is None else {"grade": grade}
        excluded = None
        if self.grades is not None:
            if grade is None:
                excluded = "grade unknown (no HGG/LGG parent folder, no name_mapping.csv entry)"
            elif grade not in self.grades:
                excluded = f"grade {grade} not in {self.grades}"
        return Case(name, patient, paths, attributes, problem=problem, excluded=excluded)

    def load_case(self, case: Case) -> LoadedCase:
        t1 = Path(case.files["t1"]).name
        if t1.lower().endswith(".mha"):
            scheme = "2015-2016"
        else:
            scheme = "2023+" if t1.startswith(f"{case.case_id}-") else "2018-2021"
        _, _, label_map, allowed = _SCHEMES[scheme]
        arrays = load_aligned(case, [*BRATS_CHANNELS, "label"])
        label = integer_labels(arrays["label"][0], case.case_id)
        unexpected = sorted(set(np.unique(label).tolist()) - set(allowed))
        if unexpected:
            raise CaseError(f"unexpected label values {unexpected} (BraTS {scheme} uses {list(allowed)})")
        original = label.copy() if label_map else label
        for source, target in label_map.items():
            label[original == source] = target
        return LoadedCase([arrays[c][0] for c in BRATS_CHANNELS], label, arrays["label"][1])


def _read_name_mapping(path: Path) -> dict[str, str]:
    """Case -> grade from BraTS 2020's ``name_mapping.csv`` (columns ``Grade`` and ``BraTS_2020_subject_ID``)."""
    table: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                grade = str(row.get("Grade") or "").strip().upper()
                subject = str(row.get("BraTS_2020_subject_ID") or "").strip()
                if subject and grade in _GRADES:
                    table[subject] = grade
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        logger.warning("Could not read %s (%s); grades from it are unknown.", path, e)
    return table
