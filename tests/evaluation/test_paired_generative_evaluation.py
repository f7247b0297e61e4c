"""Tests of the paired (image+mask) generative evaluation on tiny NIfTI pairs written here."""

from __future__ import annotations

import json
import logging
import os

import nibabel as nib
import numpy as np
import pytest
from common.data.validation import DatalistError
from common.evaluation import PAIRED_REFERENCE_KEYS, PAIRED_RESULT_KEYS, PairedGenerativeEvaluation

SETTINGS = {"arch": "resnet10", "generative_args": {"input_size": 16, "kid_subsets": 2, "diversity_pairs": 3}}


def _pairs(folder, n: int, spatial: tuple[int, ...], seed: int, bars: str = "odd") -> list[dict]:
    """``n`` pairs: noise plus a bright square of class 1 at a random place, and a dark bar of class 2 in the odd
    cases (``bars="odd"``), in every case (``"all"``) or in none (``"none"``)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        label = np.zeros(spatial, dtype=np.uint8)
        corner = tuple(int(rng.integers(0, s - 3)) for s in spatial)
        label[tuple(slice(c, c + 3) for c in corner)] = 1
        if bars == "all" or (bars == "odd" and i % 2):
            label[(0,) * (len(spatial) - 1)] = 2  # a bar along the last axis
        image = rng.normal(0.0, 0.1, size=spatial) + 2.0 * (label == 1) - 1.0 * (label == 2)
        paths = {"image": os.path.join(folder, f"case{i}.nii.gz"), "label": os.path.join(folder, f"case{i}_seg.nii.gz")}
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), paths["image"])
        nib.save(nib.Nifti1Image(label, np.eye(4)), paths["label"])
        entries.append({k: os.path.basename(v) for k, v in paths.items()})
    return entries


def _datalist(path, section: str, entries: list[dict], synthetic: bool) -> str:
    data = {section: [{**e, "synthetic": True} if synthetic else e for e in entries]}
    if synthetic:
        data["synthetic"] = True
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_identical_sets_give_zero_distances(tmp_path, caplog, spatial_dims):
    spatial = (16, 12) if spatial_dims == 2 else (8, 8, 6)
    entries = _pairs(tmp_path, 5, spatial, seed=0)
    real = _datalist(tmp_path / "real.json", "test", entries, synthetic=False)
    synthetic = _datalist(tmp_path / "synthetic.json", "training", entries, synthetic=True)
    out = tmp_path / "eval"
    with caplog.at_level(logging.INFO, logger="common.evaluation"):
        results = PairedGenerativeEvaluation(
            real,
            synthetic,
            3,
            spatial_dims,
            out,
            class_names=["background", "lesion", "bar"],
            extra={"run": "t"},
            **SETTINGS,
        ).run()

    written = json.loads((out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(results)) and set(PAIRED_RESULT_KEYS) <= set(written)
    assert (out / "image_metrics.json").exists() and (out / "mask_metrics.json").exists()
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    assert written["feature_extractor"].startswith(f"fallback:random-init-resnet10-{spatial_dims}d")
    assert written["mask_feature_extractor"].startswith(f"fallback:random-init-resnet10-{spatial_dims}d")
    assert written["num_real"] == written["num_synthetic"] == 5 and written["run"] == "t"
    assert abs(written["image_fid"]) < 1e-3 and abs(written["mask_fid"]) < 1e-3
    assert written["mask_area_fraction_wasserstein"] == 0.0 and written["mask_components_wasserstein"] == 0.0
    lesion = written["mask_statistics"]["classes"]["lesion"]
    assert lesion["components"]["real_mean"] == 1.0 and lesion["present_synthetic"] == 1.0
    assert lesion["area_fraction"]["real_mean"] == pytest.approx(3**spatial_dims / np.prod(spatial))
    assert written["mask_statistics"]["classes"]["bar"]["present_real"] == pytest.approx(2 / 5)
    assert "image_fid" in caplog.text and "mask_rendering" in caplog.text


def test_synthetic_set_with_extra_class_is_detected(tmp_path):
    real_entries = _pairs(tmp_path / "r", 6, (16, 16), seed=0, bars="none")
    real = _datalist(tmp_path / "r" / "real.json", "test", real_entries, synthetic=False)
    fake_entries = _pairs(tmp_path / "s", 6, (12, 12), seed=1, bars="all")
    synthetic = _datalist(tmp_path / "s" / "datalist.json", "training", fake_entries, synthetic=True)

    with pytest.raises(DatalistError, match="image_size"):  # 16x16 real vs 12x12 synthetic grids
        PairedGenerativeEvaluation(real, synthetic, 3, 2, tmp_path / "e0", **SETTINGS).run()
    results = PairedGenerativeEvaluation(real, synthetic, 3, 2, tmp_path / "e1", image_size=16, **SETTINGS).run()
    assert results["mask_classes_only_in_synthetic"] == ["2"]
    assert results["mask_statistics"]["classes"]["2"]["present_synthetic"] == 1.0
    assert results["mask_fid"] > 1e-3 and results["mask_area_fraction_wasserstein"] > 0


def test_errors_name_datalist_entries_and_files(tmp_path):
    entries = _pairs(tmp_path, 3, (8, 8), seed=0)
    real = _datalist(tmp_path / "real.json", "test", entries, synthetic=False)
    unflagged = _datalist(tmp_path / "unflagged.json", "training", entries, synthetic=False)
    with pytest.raises(DatalistError, match=r"training\[0\] synthetic: entry is not flagged"):
        PairedGenerativeEvaluation(real, unflagged, 3, 2, tmp_path / "e", **SETTINGS).run()
    no_label = _datalist(tmp_path / "no_label.json", "training", [{"image": e["image"]} for e in entries], True)
    with pytest.raises(DatalistError, match=r"no_label.json.*\n.*training\[0\] label"):
        PairedGenerativeEvaluation(real, no_label, 3, 2, tmp_path / "e", validate=False, **SETTINGS).run()
    missing = _datalist(tmp_path / "missing.json", "training", [{**entries[0], "label": "gone.nii.gz"}], True)
    with pytest.raises(DatalistError, match=r"training\[0\] label '.*gone.nii.gz': file not found"):
        PairedGenerativeEvaluation(real, missing, 3, 2, tmp_path / "e", validate=False, **SETTINGS).run()
    with pytest.raises(DatalistError, match="case1_seg.nii.gz"):  # its bar (2) is outside range(2): validation
        PairedGenerativeEvaluation(real, real, 2, 2, tmp_path / "e", real_section="test", **SETTINGS).run()
    with pytest.raises(ValueError, match="clash"):
        PairedGenerativeEvaluation(real, real, 3, 2, tmp_path / "e", extra={"mask_fid": 1})


def test_reference_section_scores_a_real_set_like_the_synthetic_one(tmp_path):
    """With ``reference_section`` a third, real set is scored against the real pairs: equal to the synthetic scores
    when it is the synthetic set, and nearer than a set that lacks a class when it is drawn like the real pairs."""
    real_entries = _pairs(tmp_path / "real", 6, (16, 12), seed=0)
    like_real = _pairs(tmp_path / "ref", 6, (16, 12), seed=1)
    no_bars = _pairs(tmp_path / "fake", 6, (16, 12), seed=2, bars="none")
    data = {"test": real_entries, "training": like_real, "same": no_bars}
    data = {k: [{**e, "image": f"{d}/{e['image']}", "label": f"{d}/{e['label']}"} for e in v]
            for (k, v), d in zip(data.items(), ("real", "ref", "fake"))}  # fmt: skip
    real = tmp_path / "real.json"
    real.write_text(json.dumps(data))
    synthetic = _datalist(tmp_path / "synthetic.json", "training", data["same"], synthetic=True)
    results = {}
    for section in ("training", "same"):
        out = tmp_path / section
        results[section] = PairedGenerativeEvaluation(
            str(real), synthetic, 3, 2, out, reference_section=section, **SETTINGS
        ).run()
        written = json.loads((out / "metrics.json").read_text())
        assert set(PAIRED_REFERENCE_KEYS) <= set(written) and written["reference_section"] == section
        assert written["num_reference"] == 6
    same = results["same"]  # the reference is the synthetic set itself: identical scores
    for m in ("fid", "kid_mean"):
        assert same[f"image_{m}_reference"] == pytest.approx(same[f"image_{m}"])
        assert same[f"mask_{m}_reference"] == pytest.approx(same[f"mask_{m}"])
    assert same["mask_area_fraction_wasserstein_reference"] == pytest.approx(same["mask_area_fraction_wasserstein"])
    ref = results["training"]  # drawn like the real pairs (bars in odd cases): nearer than the bar-less set
    assert ref["mask_fid_reference"] < ref["mask_fid"]
    assert ref["mask_area_fraction_wasserstein_reference"] < ref["mask_area_fraction_wasserstein"]
    assert ref["image_fid"] == pytest.approx(same["image_fid"])  # the synthetic scores do not depend on it
    no_reference = PairedGenerativeEvaluation(str(real), synthetic, 3, 2, tmp_path / "none", **SETTINGS).run()
    assert not set(PAIRED_REFERENCE_KEYS) & set(no_reference)
