"""CPM / FROC, CPM by attribute, sensitivity and FPs per image, and COCO mAP on hand-made detections."""

import numpy as np
import pytest
from common.metrics import coco_metrics, cpm, cpm_by_attribute, froc_curve, match_image, sensitivity_fp_per_image
from common.metrics.detection import box_iou_np
from monai.data.box_utils import box_iou

from tests.builders import FAR, G1, G2, G4, two_scans


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
