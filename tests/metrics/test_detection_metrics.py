"""CPM / FROC (LUNA16 interpolation and step rule), bootstrap CIs, CPM by attribute, sensitivity and FPs per image,
the validation score of model selection, and COCO mAP on hand-made detections."""

import numpy as np
import pytest
import torch
from common.metrics import (
    DetectionScore,
    coco_metrics,
    cpm,
    cpm_bootstrap,
    cpm_by_attribute,
    detection_score,
    froc_curve,
    match_image,
    sensitivity_fp_per_image,
)
from common.metrics.detection import box_iou_np, sensitivity_at_fp_rates
from monai.data.box_utils import box_iou

from tests.builders import FAR, G1, G2, G3, G4, two_scans


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
    # no score is shared by a hit and a false positive: LUNA16's interpolation (the default) is the step rule here
    assert cpm(two_scans(), mode="step")["sensitivities"] == result["sensitivities"]


def tied_scans(duplicate=False):
    """Scan A: .9 hits G1, then .5 a FP and .5 a hit on G2 (a tie); scan B: .5 FP, .2 hits G3; G4 is missed."""
    a = {"gt_boxes": [G1, G2], "pred_boxes": [G1, FAR, G2], "pred_scores": [0.9, 0.5, 0.5]}
    if duplicate:  # a second hit on G1 with the tied score: ignored (LUNA16) or a false positive
        a = dict(a, pred_boxes=a["pred_boxes"] + [[1, 0, 0, 10, 10, 10]], pred_scores=a["pred_scores"] + [0.5])
    return [a, {"gt_boxes": [G3, G4], "pred_boxes": [FAR, G3], "pred_scores": [0.5, 0.2]}]


def test_cpm_luna16_interpolates_between_operating_points_of_tied_scores():
    # operating points (FPs/scan, sensitivity): (0, 0) (0, .25) [.9]; the tie .5 enters 2 FPs and 1 hit together:
    # (1, .5); .2: (1, .75). LUNA16 draws a line from (0, .25) to (1, .5): 1/8 -> .25 + .25 / 8 = .28125,
    # 1/4 -> .3125, 1/2 -> .375; at 1 FP the highest sensitivity .75; beyond the last point its sensitivity .75
    result = cpm(tied_scans())
    assert result["froc"]["fps"].tolist() == [0, 0, 1, 1] and result["froc"]["sensitivity"].tolist() == [
        0,
        0.25,
        0.5,
        0.75,
    ]
    assert result["sensitivities"] == {
        0.125: 0.28125,
        0.25: 0.3125,
        0.5: 0.375,
        1.0: 0.75,
        2.0: 0.75,
        4.0: 0.75,
        8.0: 0.75,
    }
    assert result["cpm"] == pytest.approx((0.28125 + 0.3125 + 0.375 + 4 * 0.75) / 7)
    # the step rule: no operating point between 0 and 1 FP holds more than .25
    assert cpm(tied_scans(), mode="step")["cpm"] == pytest.approx((3 * 0.25 + 4 * 0.75) / 7)
    # FP rates beyond the last operating point (1 FP/scan) keep the last sensitivity; rate 0: the best at 0 FPs
    assert cpm(tied_scans(), fp_rates=[0, 16, 100])["sensitivities"] == {0.0: 0.25, 16.0: 0.75, 100.0: 0.75}
    # a duplicate hit on G1 (score .5) is ignored as in LUNA16 ...
    assert cpm(tied_scans(duplicate=True))["sensitivities"] == result["sensitivities"]
    # ... or a third FP of the tie: (0, .25) -> (1.5, .5), so 1/2 -> .25 + .25 / 3
    assert cpm(tied_scans(duplicate=True), duplicates="fp")["sensitivities"][0.5] == pytest.approx(0.25 + 0.25 / 3)
    with pytest.raises(ValueError, match="mode"):
        cpm(tied_scans(), mode="nearest")


def test_luna16_mode_is_numpy_interp_of_the_operating_points():
    """LUNA16's script reads the curve with numpy.interp; the explicit form gives the same on curves with ties."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 12))
        fps = np.sort(rng.integers(0, 6, n) / 2.0)
        fps[0] = 0.0
        sens = np.sort(rng.integers(0, 5, n) / 4.0)
        rates = rng.uniform(0, 4, 7)
        np.testing.assert_allclose(sensitivity_at_fp_rates(fps, sens, rates), np.interp(rates, fps, sens))
    assert sensitivity_at_fp_rates(np.zeros(1), np.zeros(1)).tolist() == [0.0] * 7  # no detection at all


def test_cpm_bootstrap_confidence_intervals():
    # every scan the same: every sample has the same FROC, the interval has zero width at the point estimate
    same = [tied_scans()[0]] * 3
    point = cpm(same)
    ci = cpm_bootstrap(same, n_bootstrap=50, seed=1)
    assert ci["cpm_ci_low"] == ci["cpm_ci_high"] == pytest.approx(point["cpm"])
    assert ci["sens_ci_low"] == ci["sens_ci_high"] == pytest.approx(point["sensitivities"])
    # two scans A, B: a sample is AA, BB (1/4 each) or AB; with 1000 draws the 2.5 / 97.5 percentiles are the
    # lowest and highest of the three CPMs. AA: (0, .5) [.9 x2] (1, 1) [.5] -> 1/8 .5625, 1/4 .625, 1/2 .75, 1..8: 1;
    # BB: (1, 0) [.5] (1, .5) [.2] -> 1/8 .. 1/2: 0, 1..8: .5; AB: the tied curve above
    a, b = tied_scans()
    assert cpm([a, a])["cpm"] == pytest.approx((0.5625 + 0.625 + 0.75 + 4) / 7)
    assert cpm([b, b])["cpm"] == pytest.approx(2 / 7)
    ci = cpm_bootstrap([a, b], seed=0)
    assert ci["cpm_ci_low"] == pytest.approx(2 / 7) and ci["cpm_ci_high"] == pytest.approx(
        (0.5625 + 0.625 + 0.75 + 4) / 7
    )
    assert ci["sens_ci_low"][0.125] == 0.0 and ci["sens_ci_high"][0.125] == 0.5625 and ci["n_bootstrap"] == 1000
    # seeded: the same seed gives the same draws; a 50 % interval lies inside the 95 % one
    assert cpm_bootstrap([a, b], n_bootstrap=200, seed=3) == cpm_bootstrap([a, b], n_bootstrap=200, seed=3)
    narrow = cpm_bootstrap([a, b], n_bootstrap=200, confidence=0.5, seed=3)
    assert ci["cpm_ci_low"] <= narrow["cpm_ci_low"] <= narrow["cpm_ci_high"] <= ci["cpm_ci_high"]
    assert np.isnan(cpm_bootstrap([])["cpm_ci_low"])
    with pytest.raises(ValueError, match="n_bootstrap"):
        cpm_bootstrap([a, b], n_bootstrap=0)


def test_detection_score_and_its_ignite_metric():
    # sensitivity at detection threshold .5 / IoU .5 (thesis sec. 5.2.3 with its threshold): .9 G1, .5 G2 -> 2 / 4
    assert detection_score(tied_scans(), "sensitivity", iou_threshold=0.5, score_threshold=0.5) == 0.5
    assert detection_score(tied_scans(), "sensitivity", score_threshold=0.001) == 0.75
    assert detection_score(tied_scans(), "cpm") == pytest.approx(cpm(tied_scans())["cpm"])
    # the metric takes the detectors' eval-mode outputs (tensors) and ground-truth boxes, one update per batch
    metric = DetectionScore("cpm")
    metric.reset()
    for scan in tied_scans():
        pred = {
            "boxes": torch.tensor(scan["pred_boxes"], dtype=torch.float32),
            "scores": torch.tensor(scan["pred_scores"]),
        }
        metric.update(([pred], [torch.tensor(scan["gt_boxes"], dtype=torch.float32)]))
    assert metric.compute() == pytest.approx(cpm(tied_scans())["cpm"])
    metric.reset()
    metric.update(([{"boxes": torch.zeros(0, 6), "scores": torch.zeros(0)}], [{"boxes": torch.tensor([G1])}]))
    assert metric.compute() == 0.0
    with pytest.raises(ValueError, match="metric"):
        DetectionScore("froc")


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


def test_box_iou_np_is_monai_box_iou_in_float64():
    """box_iou_np uses MONAI's box convention; it is kept because MONAI's float32 IoU moves threshold cases."""
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 50, (40, 3))
    boxes = np.concatenate([lo, lo + rng.uniform(1, 30, (40, 3))], axis=1)
    np.testing.assert_allclose(box_iou_np(boxes[:25], boxes[25:]), box_iou(boxes[:25], boxes[25:]), atol=1e-6)
    shifted = np.array([[1, 0, 0, 10, 10, 10]], dtype=float)  # 900 of 1000 voxels shared with G1
    assert box_iou_np(shifted, [G1])[0, 0] == 0.9
    assert box_iou(shifted, np.array([G1], dtype=float))[0, 0] < 0.9  # float32 plus eps: below the threshold
    assert box_iou_np(np.zeros((0, 6)), [G1]).shape == (0, 1)
