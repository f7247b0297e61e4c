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
    # bootstrap over the two scans (AA, AB, BB): 95 % intervals around the estimate, per rate and of the CPM
    assert metrics["cpm_mode"] == "luna16" and metrics["n_bootstrap"] == 1000 and metrics["confidence"] == 0.95
    assert metrics["cpm_ci_low"] < metrics["cpm"] < metrics["cpm_ci_high"]
    for rate in ("0.125", "0.25", "0.5", "1", "2", "4", "8"):
        assert metrics[f"sens@{rate}_ci_low"] <= metrics[f"sens@{rate}"] <= metrics[f"sens@{rate}_ci_high"]
    # scan A twice (.9 hit, .8 FP, .3 hit on 2 nodules) bounds the interval above: sensitivity 1 at 1 FP per scan
    assert metrics["sens@1_ci_high"] == 1.0
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
    # one scan: every bootstrap sample is that scan, the interval has zero width
    assert metrics["cpm_ci_low"] == metrics["cpm_ci_high"] == 1.0 and "95 % CI" in caplog.text


def test_detection_evaluation_cpm_mode_and_no_bootstrap(tmp_path):
    """The step rule as an option; n_bootstrap=0 writes no intervals. A hit and a FP share the score .5 on one scan
    (2 nodules): LUNA16 joins (0, 0) to (1, .5), the step rule stays at 0 below 1 FP per scan."""
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [{"image": "a.nii.gz", "box": [G1, G2]}]}))
    pred = {"test": [{"image": "a.nii.gz", "box": [G1, G4], "score": [0.5, 0.5]}]}
    (tmp_path / "predictions.json").write_text(json.dumps(pred))
    kwargs = dict(datalist=tmp_path / "datalist.json", section="test", predictions=tmp_path / "predictions.json")
    luna = DetectionEvaluation(output_dir=tmp_path / "luna", n_bootstrap=0, **kwargs).run()
    step = DetectionEvaluation(output_dir=tmp_path / "step", n_bootstrap=0, cpm_mode="step", **kwargs).run()
    assert luna["sens@0.5"] == 0.25 and step["sens@0.5"] == 0.0 and luna["sens@1"] == step["sens@1"] == 0.5
    assert luna["cpm"] == pytest.approx((0.0625 + 0.125 + 0.25 + 4 * 0.5) / 7)
    assert "cpm_ci_low" not in luna and luna["confidence"] is None
