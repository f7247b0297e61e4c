"""CPM / FROC, CPM by attribute, sensitivity and FPs per image, and COCO mAP on hand-made detections."""

import json

import numpy as np
import pytest

from common.metrics import (
    DetectionEvaluation,
    coco_metrics,
    cpm,
    cpm_by_attribute,
    froc_curve,
    match_image,
    sensitivity_fp_per_image,
)

G1, G2 = [0, 0, 0, 10, 10, 10], [20, 20, 20, 30, 30, 30]
G3, G4 = [0, 0, 0, 10, 10, 10], [40, 40, 40, 50, 50, 50]
FAR = [60, 60, 60, 70, 70, 70]


def two_scans():
    """Scan A: nodules G1 (small), G2 (large); scan B: G3 (small), G4 (large)."""
    a = {
        "gt_boxes": [G1, G2],
        "size": ["small", "large"],
        # 0.9 hit G1; 0.8 far: FP; 0.7 hits G1 again: duplicate; 0.3 hits G2
        "pred_boxes": [G1, FAR, [1, 0, 0, 10, 10, 10], G2],
        "pred_scores": [0.9, 0.8, 0.7, 0.3],
    }
    b = {
        "gt_boxes": [G3, G4],
        "size": ["small", "large"],
        # 0.85 far: FP; 0.6 hits G3; 0.2 far: FP
        "pred_boxes": [FAR, G3, [80, 80, 80, 90, 90, 90]],
        "pred_scores": [0.85, 0.6, 0.2],
    }
    return [a, b]


def test_match_image_kinds():
    kind, scores, gt = match_image(two_scans()[0]["pred_boxes"], two_scans()[0]["pred_scores"], [G1, G2], 0.25)
    assert scores.tolist() == [0.9, 0.8, 0.7, 0.3]
    assert kind.tolist() == [1, 0, -1, 1] and gt.tolist() == [0, -1, 0, 1]


def test_cpm_equals_hand_computed_value():
    # all detections by score: .9 TP, .85 FP, .8 FP, .7 dup (ignored), .6 TP, .3 TP, .2 FP; 4 nodules, 2 scans
    # operating points (FPs/scan, sensitivity): (0, .25) (.5, .25) (1, .25) (1, .25) (1, .5) (1, .75) (1.5, .75)
    # best sensitivity with FPs <= rate: 1/8 .25, 1/4 .25, 1/2 .25, 1 .75, 2 .75, 4 .75, 8 .75
    result = cpm(two_scans(), iou_threshold=0.25)
    assert result["sensitivities"] == {0.125: 0.25, 0.25: 0.25, 0.5: 0.25, 1.0: 0.75, 2.0: 0.75, 4.0: 0.75, 8.0: 0.75}
    assert result["cpm"] == pytest.approx((3 * 0.25 + 4 * 0.75) / 7)
    froc = result["froc"]
    assert froc["fps"].tolist() == [0, 0, 0.5, 1, 1, 1, 1, 1.5]
    assert froc["sensitivity"].tolist() == [0, 0.25, 0.25, 0.25, 0.25, 0.5, 0.75, 0.75]
    # duplicates counted as false positives: (.7 -> 1.5 FPs) 1/8..1 .25, 2..8 .75
    assert cpm(two_scans(), duplicates="fp")["cpm"] == pytest.approx((4 * 0.25 + 3 * 0.75) / 7)
    # a stricter IoU than the one of the duplicate changes nothing here (all hits are exact)
    assert cpm(two_scans(), iou_threshold=0.9)["cpm"] == pytest.approx(result["cpm"])


def test_cpm_by_size_equals_hand_computed_value():
    # small (G1, G3): hits on G2 are ignored: .9 TP (.5 @ 0), .85 FP, .8 FP (1 FP/scan), .6 TP (1.0 @ 1), .2 FP
    #   -> 1/8, 1/4, 1/2: .5; 1..8: 1.0
    # large (G2, G4): .85 FP, .8 FP, .3 TP (.5 @ 1), .2 FP -> 1/8..1/2: 0; 1..8: .5
    by_size = cpm_by_attribute(two_scans(), "size", values=["small", "medium", "large"])
    assert by_size["small"] == pytest.approx((3 * 0.5 + 4 * 1.0) / 7)
    assert by_size["large"] == pytest.approx(4 * 0.5 / 7)
    assert np.isnan(by_size["medium"])


def test_sensitivity_and_fps_per_image_at_iou_thresholds():
    # one slice with two lesions; a detection overlapping lesion 2 by IoU 1000/2200 = 0.45
    images = [
        {
            "gt_boxes": [G1, G4],
            "pred_boxes": [G1, [40, 40, 40, 50, 50, 62], FAR, [70, 70, 70, 80, 80, 80]],
            "pred_scores": [0.9, 0.55, 0.6, 0.1],
        },
        {"gt_boxes": [], "pred_boxes": [FAR], "pred_scores": [0.7]},
    ]
    strict = sensitivity_fp_per_image(images, iou_threshold=0.5, score_threshold=0.5)
    loose = sensitivity_fp_per_image(images, iou_threshold=0.25, score_threshold=0.5)
    # IoU 0.5: hits G1 only; FPs: 0.55, 0.6 (slice 1), 0.7 (slice 2) -> 3 / 2 slices
    assert strict == {"sensitivity": 0.5, "fp_per_image": 1.5, "num_gt": 2, "num_images": 2}
    # IoU 0.25: the 0.55 detection hits G4 -> sensitivity 1, FPs 2 / 2
    assert loose["sensitivity"] == 1.0 and loose["fp_per_image"] == 1.0
    # no detection at all: sensitivity 0, no FPs
    empty = froc_curve([{"gt_boxes": [G1], "pred_boxes": [], "pred_scores": []}])
    assert empty["sensitivity"].tolist() == [0.0] and empty["num_gt"] == 1


def test_coco_map_perfect_and_empty():
    perfect = [{"gt_boxes": [G1, G2], "pred_boxes": [G1, G2], "pred_scores": [0.9, 0.8]}]
    assert coco_metrics(perfect)["map"] == pytest.approx(1.0) and coco_metrics(perfect)["mar"] == pytest.approx(1.0)
    missed = [{"gt_boxes": [G1], "pred_boxes": [FAR], "pred_scores": [0.9]}]
    assert coco_metrics(missed)["mar"] == pytest.approx(0.0)


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
