"""scripts/difference_map_stats.py on hand-made maps and masks."""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from difference_map_stats import main, map_statistics  # noqa: E402


def _nii(path: Path, array: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), str(path))
    return str(path)


def _grid(tmp_path: Path) -> Path:
    mask = np.zeros((8, 8))
    mask[2:4, 2:4] = 2  # 4 tumour pixels (any label > 0)
    eval_dir = tmp_path / "grid" / "generators" / "gen" / "set" / "eval"
    for rule, sub, strength in (("train", "cross_domain", 1.0), ("test", "cross_domain_test", 0.5)):
        (eval_dir / sub).mkdir(parents=True)
        pos_map = np.full((8, 8), 0.1)
        pos_map[mask > 0] = strength
        entries = [
            {
                "class": 1,
                "label": _nii(eval_dir / sub / "p_seg.nii.gz", mask),
                "difference": [_nii(eval_dir / sub / f"p_{c}.nii.gz", pos_map * c) for c in (1, 3)],  # mean: 2x
            },
            {"class": 0, "label": "", "difference": _nii(eval_dir / sub / "n.nii.gz", np.full((8, 8), 0.25))},
        ]
        data = {"difference_rule": rule, "training": entries}
        (eval_dir / sub / "enhanced_datalist.json").write_text(json.dumps(data))
    return tmp_path / "grid"


def test_inside_outside_and_negative_means(tmp_path):
    grid = _grid(tmp_path)
    s = map_statistics(grid / "generators/gen/set/eval/cross_domain/enhanced_datalist.json")
    assert s["rule"] == "train" and (s["positives"], s["negatives"]) == (1, 1)
    assert s["inside"] == pytest.approx(2.0) and s["outside"] == pytest.approx(0.2)  # channels averaged
    assert s["negative"] == pytest.approx(0.25)
    table = main(str(grid), output=str(tmp_path / "maps.md"))
    assert "| gen | set | training images | train | 1 | 2.000 | 0.200 | 1 | 0.250 |" in table
    assert "| gen | set | validation and test images | test | 1 | 1.000 | 0.200 | 1 | 0.250 |" in table
    assert "ablation" not in table  # no such file: no row
    assert (tmp_path / "maps.md").read_text() == table
