"""YOLOv3 target assignment and loss (Han's thesis sec. 5.2.3: "YOLOv3 ... with Darknet-53 as a backbone classifier
and sum squared error as a loss"; Redmon & Farhadi 2018, sec. 2.1-2.2).

Each scale ``l`` of the detector predicts, for every cell of its grid (stride ``s_l``) and each of its anchors
(bounding-box priors ``p``), ``2 d + 1 + C`` numbers: ``t_x`` (d centre offsets), ``t_w`` (d log-space sizes), the
objectness ``t_o`` and ``C`` class logits. The box is (Redmon & Farhadi, sec. 2.1)::

    b_x = (sigmoid(t_x) + c_x) * s_l        b_w = p_w * exp(t_w)

in pixels of the network input, ``c_x`` the cell index. Assignment (sec. 2.1): the anchor whose shape (aligned at the
origin) has the highest IoU with a ground-truth box, over all scales, is responsible for it, in the cell holding the
box centre; its targets are ``sigmoid(t_x) -> b_x / s_l - c_x`` and ``t_w -> log(b_w / p_w)``. A prediction that is
not responsible but whose decoded box overlaps a ground-truth box by more than ``ignore_thresh`` (0.5) is ignored
by the objectness loss (as the paper's authors' Darknet implementation does, on the predicted boxes); every other
prediction is a negative for objectness.

Terms (the thesis names only "sum squared error"; Redmon & Farhadi use "sum of squared error loss" for the box
coordinates and logistic regression/binary cross-entropy for objectness and the independent class predictions):

* ``loss_box``: sum of squared errors of ``sigmoid(t_x)`` and ``t_w`` against their targets over the responsible
  predictions;
* ``loss_objectness``: binary cross-entropy of ``t_o`` (1 for responsible, 0 for negatives, ignored ones left out),
  or, with ``objectness_loss="sse"``, the squared error of ``sigmoid(t_o)`` (the thesis's loss taken literally);
* ``loss_class``: binary cross-entropy of each class logit against the one-hot label, responsible predictions only
  (same ``"sse"`` switch).

All terms are sums over the predictions divided by the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.data.box_utils import box_iou
from torch import Tensor, nn

__all__ = [
    "YOLOTargets",
    "YOLOv3Loss",
    "anchor_shape_iou",
    "assign_yolo_targets",
    "decode_yolo_boxes",
    "ignored_predictions",
    "yolov3_loss",
]

#: largest ``t_w`` passed to ``exp`` when decoding (a box 22,000 times its anchor), so that untrained logits stay
#: finite.
MAX_LOG_SCALE = 10.0


def anchor_shape_iou(sizes: Tensor, anchors: Tensor) -> Tensor:
    """IoU of boxes and anchors aligned at the origin (only their shapes count).

    Args:
        sizes: (N, d) box sizes.
        anchors: (K, d) anchor sizes.

    Returns:
        (N, K) IoU.
    """
    inter = torch.minimum(sizes[:, None, :], anchors[None, :, :]).prod(-1)
    union = sizes.prod(-1)[:, None] + anchors.prod(-1)[None, :] - inter
    return inter / union.clamp_min(1e-12)


def decode_yolo_boxes(prediction: Tensor, anchors: Tensor, stride: float) -> Tensor:
    """Corner boxes of one scale's raw predictions, in network-input pixels.

    Args:
        prediction: (B, A, *S, 2 d + 1 + C) raw outputs of one scale (spatial axis ``i`` = box axis ``i``).
        anchors: (A, d) anchor sizes of this scale, in pixels.
        stride: the scale's stride.

    Returns:
        (B, A, *S, 2 d) boxes ``(x0, y0[, z0], x1, y1[, z1])``.
    """
    d = anchors.shape[1]
    spatial = prediction.shape[2 : 2 + d]
    grids = torch.meshgrid(
        *[torch.arange(s, device=prediction.device, dtype=prediction.dtype) for s in spatial], indexing="ij"
    )
    cells = torch.stack(grids, -1)  # (*S, d)
    centre = (torch.sigmoid(prediction[..., :d]) + cells) * stride
    shape = (prediction.shape[1],) + (1,) * d + (d,)
    size = anchors.to(prediction.dtype).reshape(shape) * torch.exp(prediction[..., d : 2 * d].clamp(max=MAX_LOG_SCALE))
    return torch.cat([centre - size / 2, centre + size / 2], -1)


@dataclass
class YOLOTargets:
    """Targets of one scale (see :func:`assign_yolo_targets`).

    Attributes:
        responsible: (B, A, *S) bool, the predictions responsible for a ground-truth box.
        offsets: (B, A, *S, d) target ``sigmoid(t_x)`` (centre offset within the cell, in [0, 1)).
        log_scales: (B, A, *S, d) target ``t_w = log(b_w / p_w)``.
        classes: (B, A, *S, C) one-hot class targets.
    """

    responsible: Tensor
    offsets: Tensor
    log_scales: Tensor
    classes: Tensor


def assign_yolo_targets(
    grid_sizes: Sequence[Sequence[int]],
    anchors: Sequence[Tensor],
    strides: Sequence[float],
    targets: Sequence[dict[str, Tensor]],
    num_classes: int,
) -> list[YOLOTargets]:
    """Make each ground-truth box the responsibility of its best-shaped anchor in the cell of its centre.

    The best anchor is chosen over all scales by :func:`anchor_shape_iou` (ties: the first, i.e. the finer scale and
    the smaller anchor); two boxes landing on one anchor of one cell keep the later box (as Darknet does).

    Args:
        grid_sizes: per scale, its grid size (d values).
        anchors: per scale, (A, d) anchor sizes in pixels.
        strides: per scale, its stride.
        targets: per image ``{"boxes": (G, 2 d) corner boxes in network-input pixels, "labels": (G,) 0-based}``.
        num_classes: C.

    Returns:
        one :class:`YOLOTargets` per scale.
    """
    batch = len(targets)
    device = anchors[0].device
    d = anchors[0].shape[1]
    out = []
    for size, anc in zip(grid_sizes, anchors):
        shape = (batch, anc.shape[0], *[int(s) for s in size])
        out.append(
            YOLOTargets(
                responsible=torch.zeros(shape, dtype=torch.bool, device=device),
                offsets=torch.zeros(shape + (d,), device=device),
                log_scales=torch.zeros(shape + (d,), device=device),
                classes=torch.zeros(shape + (num_classes,), device=device),
            )
        )
    all_anchors = torch.cat(list(anchors)).float()
    level_of = torch.cat([torch.full((a.shape[0],), i, dtype=torch.long) for i, a in enumerate(anchors)])
    index_in_level = torch.cat([torch.arange(a.shape[0]) for a in anchors])
    for b, target in enumerate(targets):
        boxes = target["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 2 * d)
        if boxes.shape[0] == 0:
            continue
        labels = target["labels"].reshape(-1)
        sizes = (boxes[:, d:] - boxes[:, :d]).clamp_min(1e-6)
        centres = (boxes[:, :d] + boxes[:, d:]) / 2
        best = anchor_shape_iou(sizes, all_anchors).argmax(1)
        for g in range(boxes.shape[0]):
            level, a = int(level_of[best[g]]), int(index_in_level[best[g]])
            stride = float(strides[level])
            grid = out[level].responsible.shape[2:]
            scaled = centres[g] / stride
            cell = tuple(min(max(int(math.floor(float(v))), 0), int(n) - 1) for v, n in zip(scaled, grid))
            where = (b, a, *cell)
            out[level].responsible[where] = True
            out[level].offsets[where] = scaled - torch.tensor(cell, dtype=scaled.dtype, device=device)
            out[level].log_scales[where] = torch.log(sizes[g] / anchors[level][a].to(sizes))
            out[level].classes[where] = 0.0
            out[level].classes[where + (int(labels[g]),)] = 1.0
    return out


def ignored_predictions(
    boxes: Tensor, targets: Sequence[dict[str, Tensor]], ignore_thresh: float, spatial_dims: int
) -> Tensor:
    """Predictions whose decoded box overlaps a ground-truth box of its image by more than ``ignore_thresh``.

    Args:
        boxes: (B, A, *S, 2 d) decoded boxes of one scale.
        targets: per image ``{"boxes": (G, 2 d)}``.
        ignore_thresh: IoU above which a prediction is ignored.
        spatial_dims: d.

    Returns:
        (B, A, *S) bool.
    """
    out = torch.zeros(boxes.shape[:-1], dtype=torch.bool, device=boxes.device)
    for b, target in enumerate(targets):
        gt = target["boxes"].to(boxes).reshape(-1, 2 * spatial_dims)
        if gt.shape[0] == 0:
            continue
        iou = box_iou(boxes[b].reshape(-1, 2 * spatial_dims), gt)
        out[b] = (iou.max(1).values > ignore_thresh).reshape(out.shape[1:])
    return out


def _plain(value: Tensor) -> Tensor:
    """A MetaTensor (boxes from MONAI transforms) as a plain tensor."""
    return value.as_tensor() if isinstance(value, MetaTensor) else value


def _binary_loss(logits: Tensor, target: Tensor, kind: str) -> Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    return ((torch.sigmoid(logits) - target) ** 2).sum()


def yolov3_loss(
    predictions: Sequence[Tensor],
    anchors: Sequence[Tensor],
    strides: Sequence[float],
    targets: Sequence[dict[str, Tensor]],
    num_classes: int,
    ignore_thresh: float = 0.5,
    objectness_loss: str = "bce",
    class_loss: str = "bce",
) -> dict[str, Tensor]:
    """The YOLOv3 loss of a batch (module docstring).

    Args:
        predictions: per scale (B, A, *S, 2 d + 1 + C) raw outputs.
        anchors: per scale (A, d) anchor sizes in network-input pixels.
        strides: per scale, its stride.
        targets: per image ``{"boxes": (G, 2 d) corner boxes in network-input pixels, "labels": (G,) 0-based}``.
        num_classes: C.
        ignore_thresh: IoU above which a non-responsible prediction is left out of the objectness loss.
        objectness_loss / class_loss: ``"bce"`` (binary cross-entropy of the logits) or ``"sse"`` (squared error of
            the sigmoid).

    Returns:
        ``{"loss_box", "loss_objectness", "loss_class"}``, scalars (sums divided by the batch size).
    """
    for name, kind in (("objectness_loss", objectness_loss), ("class_loss", class_loss)):
        if kind not in ("bce", "sse"):
            raise ValueError(f"{name} must be 'bce' or 'sse', got {kind!r}.")
    d = anchors[0].shape[1]
    batch = predictions[0].shape[0]
    targets = [{k: _plain(v) for k, v in t.items()} for t in targets]
    assigned = assign_yolo_targets([p.shape[2 : 2 + d] for p in predictions], anchors, strides, targets, num_classes)
    zero = predictions[0].sum() * 0.0
    loss_box, loss_obj, loss_cls = zero, zero, zero
    for pred, anc, stride, tgt in zip(predictions, anchors, strides, assigned):
        with torch.no_grad():
            ignored = ignored_predictions(
                decode_yolo_boxes(pred.detach().float(), anc, stride), targets, ignore_thresh, d
            )
        resp = tgt.responsible
        pos = pred[resp].float()  # (P, 2 d + 1 + C)
        loss_box = loss_box + ((torch.sigmoid(pos[:, :d]) - tgt.offsets[resp]) ** 2).sum()
        loss_box = loss_box + ((pos[:, d : 2 * d] - tgt.log_scales[resp]) ** 2).sum()
        negatives = ~resp & ~ignored
        obj = pred[..., 2 * d].float()
        loss_obj = loss_obj + _binary_loss(obj[resp], torch.ones_like(obj[resp]), objectness_loss)
        loss_obj = loss_obj + _binary_loss(obj[negatives], torch.zeros_like(obj[negatives]), objectness_loss)
        loss_cls = loss_cls + _binary_loss(pos[:, 2 * d + 1 :], tgt.classes[resp], class_loss)
    return {"loss_box": loss_box / batch, "loss_objectness": loss_obj / batch, "loss_class": loss_cls / batch}


class YOLOv3Loss(nn.Module):
    """:func:`yolov3_loss` with its settings fixed (the anchors and strides come with each call).

    Args:
        num_classes: C.
        ignore_thresh: IoU above which a non-responsible prediction is left out of the objectness loss (0.5).
        objectness_loss / class_loss: ``"bce"`` or ``"sse"``.
    """

    def __init__(
        self, num_classes: int, ignore_thresh: float = 0.5, objectness_loss: str = "bce", class_loss: str = "bce"
    ) -> None:
        super().__init__()
        for name, kind in (("objectness_loss", objectness_loss), ("class_loss", class_loss)):
            if kind not in ("bce", "sse"):
                raise ValueError(f"{name} must be 'bce' or 'sse', got {kind!r}.")
        self.num_classes = num_classes
        self.ignore_thresh = ignore_thresh
        self.objectness_loss = objectness_loss
        self.class_loss = class_loss

    def forward(
        self,
        predictions: Sequence[Tensor],
        anchors: Sequence[Tensor],
        strides: Sequence[float],
        targets: Sequence[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """See :func:`yolov3_loss`."""
        return yolov3_loss(
            predictions,
            anchors,
            strides,
            targets,
            self.num_classes,
            self.ignore_thresh,
            self.objectness_loss,
            self.class_loss,
        )
