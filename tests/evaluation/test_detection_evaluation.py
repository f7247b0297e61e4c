"""The detection evaluation pipeline: metrics.json, froc.png and the table from a predictions datalist."""

import json
import logging
import sys

import pytest
from common.evaluation import DetectionEvaluation

from tests.builders import G1, G2, G3, G4, two_scans


def test_detection_evaluation_writes_flat_metrics(tmp_path):
    gt = {
        "test": [
            {"image": "a.nii.gz", "box": [G1, G2], "size": ["small", "large"]},
            {"image": "b.nii.gz", "box": [G3, G4], "size": ["small", "large"]},
        ]
    }
    scans = two_scans()
    pred = {
        "test": [
            {"image": "../a.nii.gz", "box": scans[0]["pred_boxes"], "score": scans[0]["pred_scores"]},
            {"image": "../b.nii.gz", "box": scans[1]["pred_boxes"], "score": scans[1]["pred_scores"]},
        ]
    }
    (tmp_path / "datalist.json").write_text(json.dumps(gt))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "predictions.json").write_text(json.dumps(pred))
    ev = DetectionEvaluation(
        tmp_path / "datalist.json",
        "test",
        tmp_path / "out" / "predictions.json",
        tmp_path / "out",
        attributes=["size"],
        iou_thresholds=[0.5],
        attribute_values={"size": ["small", "medium", "large"]},
    )
    ev.run()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["cpm"] == pytest.approx(3.75 / 7) and metrics["sens@0.125"] == 0.25 and metrics["sens@8"] == 0.75
    assert metrics["cpm_size_small"] == pytest.approx(5.5 / 7) and metrics["cpm_size_medium"] is None
    # score >= 0.5: .9 TP, .8 FP, .7 dup, .85 FP, .6 TP -> sensitivity 2/4, FPs 2/2
    assert metrics["sensitivity_iou0.5"] == 0.5 and metrics["fp_per_image_iou0.5"] == 1.0
    assert 0 < metrics["map"] <= 1 and (tmp_path / "out" / "froc.png").stat().st_size > 0
    (tmp_path / "out" / "predictions.json").write_text(json.dumps({"test": pred["test"][:1]}))
    with pytest.raises(ValueError, match="no prediction"):
        ev.run()


def test_detection_evaluation_without_matplotlib(tmp_path, monkeypatch, caplog):
    """matplotlib is optional: without it the metrics are written and the FROC plot is skipped with a warning."""
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [{"image": "a.nii.gz", "box": [G1]}]}))
    pred = {"test": [{"image": "a.nii.gz", "box": [G1], "score": [0.9]}]}
    (tmp_path / "predictions.json").write_text(json.dumps(pred))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    ev = DetectionEvaluation(tmp_path / "datalist.json", "test", tmp_path / "predictions.json", tmp_path / "out")
    with caplog.at_level(logging.INFO, logger="common.evaluation"):
        metrics = ev.run()
    assert metrics["cpm"] == 1.0 and (tmp_path / "out" / "metrics.json").is_file()
    assert not (tmp_path / "out" / "froc.png").exists()
    assert "matplotlib is not installed" in caplog.text and "CPM (%)" in caplog.text
