"""KiTS19 (Kidney Tumor Segmentation challenge 2019), as cloned from its repository.

Layout: ``case_00000/imaging.nii.gz`` (contrast CT in Hounsfield units) and ``case_00000/segmentation.nii.gz``
(0 background, 1 kidney, 2 tumour), under the given folder or its ``data/`` folder (the repository's layout). The
test cases (``case_00210``-``case_00299``) have no segmentation and are listed as skipped. The volumes are stored
with the axial axis first (shape ``(slices, 512, 512)``); 2D output finds that axis from the affine. KiTS21/23
use the same file names and are read too. Vu et al. train on KiTS19 subsets of 20-210 patients (sec. 4.1, Table 1);
with the default class rule a slice is positive when it shows kidney or tumour (``positive_labels=(2,)`` for
tumour only).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from common.data.converters.engine import (
    Case,
    LayoutError,
    LoadedCase,
    VolumeConverter,
    find_case_folders,
    integer_labels,
    load_aligned,
)

__all__ = ["KITS_LABELS", "KiTSConverter"]

KITS_LABELS: dict[str, str] = {"0": "background", "1": "kidney", "2": "tumour"}
"""Label values of KiTS19 (KiTS21/23 add 3: cyst)."""
_CASE = re.compile(r"^case_\d{5}$")


class KiTSConverter(VolumeConverter):
    """Converter of the KiTS19 case folders (layout in the module docstring): one CT channel, ``ct``."""

    name = "kits19"
    description = "KiTS19 contrast-enhanced abdominal CT (HU) with kidney and tumour segmentations."
    reference = "Heller et al., arXiv:1904.00445, 2019; https://github.com/neheller/kits19"

    @property
    def channel_names(self) -> list[str]:
        return ["ct"]

    @property
    def labels(self) -> dict[str, str]:
        return dict(KITS_LABELS)

    def find_cases(self, input_dir: Path) -> list[Case]:
        folder, names = find_case_folders((input_dir, input_dir / "data"), _CASE)
        if not names:
            raise LayoutError(
                f"no KiTS19 case folder under {input_dir} or {input_dir / 'data'}: expected "
                "case_00000/imaging.nii.gz with case_00000/segmentation.nii.gz."
            )
        cases = []
        for name in names:
            files = {"ct": str(folder / name / "imaging.nii.gz"), "label": str(folder / name / "segmentation.nii.gz")}
            problem = None
            if not os.path.isfile(files["ct"]):
                problem = f"imaging.nii.gz missing in {folder / name}"
            elif not os.path.isfile(files["label"]):
                problem = "no segmentation.nii.gz (the KiTS19 test cases 210-299 carry no labels)"
            cases.append(Case(name, name, files, problem=problem))
        return cases

    def load_case(self, case: Case) -> LoadedCase:
        arrays = load_aligned(case, ["ct", "label"])
        return LoadedCase([arrays["ct"][0]], integer_labels(arrays["label"][0], case.case_id), arrays["ct"][1])
