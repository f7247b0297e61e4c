"""YOLOv3 target assignment and loss (common.losses.yolo) on a hand-made box: the responsible anchor and cell, its
t_x / t_w targets, the ignored predictions, and the loss value against a hand computation."""

import math

import pytest
import torch
from common.losses import YOLOv3Loss, anchor_shape_iou, assign_yolo_targets, decode_yolo_boxes, yolov3_loss

# 64x64 input: grids 8x8 (stride 8), 4x4 (stride 16), 2x2 (stride 32); three anchors per scale, finest first
ANCHORS = [
    torch.tensor([[4.0, 4.0], [6.0, 6.0], [10.0, 10.0]]),
    torch.tensor([[16.0, 16.0], [20.0, 20.0], [30.0, 30.0]]),
    torch.tensor([[40.0, 40.0], [50.0, 50.0], [60.0, 60.0]]),
]
STRIDES = (8, 16, 32)
GRIDS = ((8, 8), (4, 4), (2, 2))
# a 20 x 18 box centred at (20, 29): best shape IoU with the 20x20 anchor (360 / 400 = 0.9)
BOX = torch.tensor([[10.0, 20.0, 30.0, 38.0]])
TARGETS = [{"boxes": BOX, "labels": torch.tensor([0])}]


def zero_predictions(num_classes=1):
    return [torch.zeros(1, 3, *g, 5 + num_classes, requires_grad=True) for g in GRIDS]


def test_anchor_shape_iou():
    iou = anchor_shape_iou(torch.tensor([[20.0, 18.0]]), torch.tensor([[20.0, 20.0], [16.0, 16.0], [30.0, 30.0]]))
    assert torch.allclose(iou, torch.tensor([[0.9, 256 / 360, 0.4]]))


def test_the_best_shaped_anchor_in_the_centre_cell_is_responsible():
    t8, t16, t32 = assign_yolo_targets(GRIDS, ANCHORS, STRIDES, TARGETS, num_classes=2)
    assert not t8.responsible.any() and not t32.responsible.any()
    assert t16.responsible.sum() == 1 and t16.responsible[0, 1, 1, 1]  # anchor 20x20, cell (20 // 16, 29 // 16)
    assert torch.allclose(t16.offsets[0, 1, 1, 1], torch.tensor([0.25, 0.8125]))  # 20 / 16 - 1, 29 / 16 - 1
    assert torch.allclose(t16.log_scales[0, 1, 1, 1], torch.tensor([0.0, math.log(18 / 20)]))
    assert t16.classes[0, 1, 1, 1].tolist() == [1.0, 0.0]
    two = assign_yolo_targets(GRIDS, ANCHORS, STRIDES, [{"boxes": BOX, "labels": torch.tensor([1])}], 2)[1]
    assert two.classes[0, 1, 1, 1].tolist() == [0.0, 1.0]


def test_a_small_box_goes_to_the_finest_scale_and_a_border_centre_stays_on_the_grid():
    boxes = torch.tensor([[60.0, 0.0, 66.0, 5.0]])  # 6 x 5, centre (63, 2.5): last cell of the 8x8 grid
    t8, t16, t32 = assign_yolo_targets(GRIDS, ANCHORS, STRIDES, [{"boxes": boxes, "labels": torch.tensor([0])}], 1)
    assert t8.responsible[0, 1, 7, 0] and t8.responsible.sum() == 1 and not t16.responsible.any()
    assert torch.allclose(t8.offsets[0, 1, 7, 0], torch.tensor([63 / 8 - 7, 2.5 / 8]))


def test_decode_inverts_the_targets():
    preds = zero_predictions()
    with torch.no_grad():
        preds[1][0, 1, 1, 1, :2] = torch.logit(torch.tensor([0.25, 0.8125]))
        preds[1][0, 1, 1, 1, 2:4] = torch.tensor([0.0, math.log(18 / 20)])
    boxes = decode_yolo_boxes(preds[1], ANCHORS[1], 16)
    assert torch.allclose(boxes[0, 1, 1, 1], BOX[0], atol=1e-4)
    assert torch.allclose(
        decode_yolo_boxes(preds[0], ANCHORS[0], 8)[0, 0, 2, 3], torch.tensor([18.0, 26.0, 22.0, 30.0])
    )


def test_loss_against_a_hand_computation_with_an_ignored_prediction():
    preds = zero_predictions()
    # at stride 8, cell (2, 3) has centre (20, 28); anchor 10x10 scaled to 20 x 18: IoU 340 / 380 with the box
    with torch.no_grad():
        preds[0][0, 2, 2, 3, 2:4] = torch.tensor([math.log(2.0), math.log(1.8)])
    losses = yolov3_loss(preds, ANCHORS, STRIDES, TARGETS, num_classes=1)
    box = (0.5 - 0.25) ** 2 + (0.5 - 0.8125) ** 2 + 0.0**2 + math.log(0.9) ** 2
    total = 3 * (64 + 16 + 4)  # 252 predictions: 1 responsible, 1 ignored, 250 negatives, all logits 0
    assert losses["loss_box"].item() == pytest.approx(box, rel=1e-5)
    assert losses["loss_objectness"].item() == pytest.approx((total - 1) * math.log(2.0), rel=1e-5)
    assert losses["loss_class"].item() == pytest.approx(math.log(2.0), rel=1e-5)
    # without the overlapping prediction nothing is ignored
    plain = yolov3_loss(zero_predictions(), ANCHORS, STRIDES, TARGETS, num_classes=1)
    assert plain["loss_objectness"].item() == pytest.approx(total * math.log(2.0), rel=1e-5)
    # a higher ignore threshold keeps it as a negative
    strict = yolov3_loss(preds, ANCHORS, STRIDES, TARGETS, num_classes=1, ignore_thresh=0.95)
    assert strict["loss_objectness"].item() == pytest.approx(total * math.log(2.0), rel=1e-5)


def test_sse_objectness_and_batch_normalisation():
    preds = [torch.zeros(2, 3, *g, 6) for g in GRIDS]
    targets = TARGETS + [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    losses = YOLOv3Loss(num_classes=1, objectness_loss="sse", class_loss="sse")(preds, ANCHORS, STRIDES, targets)
    # image 1: 251 negatives (0.5 - 0)^2 and one positive (0.5 - 1)^2; image 2: 252 negatives; divided by 2
    assert losses["loss_objectness"].item() == pytest.approx((252 * 0.25 + 252 * 0.25) / 2)
    assert losses["loss_class"].item() == pytest.approx(0.25 / 2)
    with pytest.raises(ValueError, match="objectness_loss"):
        YOLOv3Loss(1, objectness_loss="l1")


def test_gradients_reach_only_the_terms_of_the_assignment():
    preds = zero_predictions()
    losses = yolov3_loss(preds, ANCHORS, STRIDES, TARGETS, num_classes=1)
    sum(losses.values()).backward()
    grad = preds[1].grad[0, 1, 1, 1]
    assert (grad[:4] != 0).sum() == 3  # t_x, t_y, t_h (t_w is on target)
    assert grad[4] < 0 and grad[5] < 0  # objectness and class pushed up
    assert torch.all(preds[1].grad[0, 0, ..., :4] == 0)  # no box gradient elsewhere
    assert torch.all(preds[2].grad[..., 4] > 0)  # negatives pushed down
