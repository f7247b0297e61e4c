"""Faster R-CNN multi-task losses (Ren et al. 2015, eq. 1; the "multi-task loss" of Han's thesis sec. 6.2.2).

``L = L_cls + lambda * L_reg`` for the region proposal network (binary objectness, BCE) and for the box head
(``num_classes + 1``-way softmax cross-entropy), the regression term being the smooth L1 loss of the encoded box
deltas of positives only, normalised by the number of sampled elements (as torchvision's reference
implementation does, with ``beta = 1/9``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["rpn_loss", "box_head_loss"]


def rpn_loss(
    objectness: Tensor,
    box_deltas: Tensor,
    labels: Tensor,
    regression_targets: Tensor,
    sampled_pos: Tensor,
    sampled_neg: Tensor,
    beta: float = 1.0 / 9.0,
) -> tuple[Tensor, Tensor]:
    """RPN objectness (BCE) and box-regression (smooth L1) losses over the sampled anchors.

    Args:
        objectness: (N,) logits of all anchors of the batch.
        box_deltas: (N, 2 * spatial_dims) predicted deltas.
        labels: (N,) 1 for object anchors, 0 for background (others are not sampled).
        regression_targets: (N, 2 * spatial_dims) encoded ground-truth deltas.
        sampled_pos: (N,) bool mask of sampled positives.
        sampled_neg: (N,) bool mask of sampled negatives.
        beta: smooth L1 transition point.

    Returns:
        (objectness loss, box loss), both scalars.
    """
    sampled = sampled_pos | sampled_neg
    num = sampled.sum().clamp(min=1)
    loss_obj = (
        F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled].to(objectness.dtype), reduction="sum")
        / num
    )
    loss_box = (
        F.smooth_l1_loss(box_deltas[sampled_pos], regression_targets[sampled_pos], beta=beta, reduction="sum") / num
    )
    return loss_obj, loss_box


def box_head_loss(
    class_logits: Tensor, box_deltas: Tensor, labels: Tensor, regression_targets: Tensor, beta: float = 1.0 / 9.0
) -> tuple[Tensor, Tensor]:
    """Box-head classification (cross-entropy) and class-specific box-regression (smooth L1) losses.

    Args:
        class_logits: (K, num_classes + 1) logits of the sampled proposals (class 0 = background).
        box_deltas: (K, num_classes * 2 * spatial_dims) class-specific deltas.
        labels: (K,) int64 target class (0 background, 1..num_classes objects).
        regression_targets: (K, 2 * spatial_dims) encoded deltas to each proposal's matched ground truth.
        beta: smooth L1 transition point.

    Returns:
        (classification loss, box loss), both scalars.
    """
    loss_cls = F.cross_entropy(class_logits, labels)
    num = max(labels.numel(), 1)
    pos = (labels > 0).nonzero(as_tuple=True)[0]
    if len(pos) == 0:
        return loss_cls, box_deltas.sum() * 0.0
    width = regression_targets.shape[1]
    deltas = box_deltas.reshape(box_deltas.shape[0], -1, width)[pos, labels[pos] - 1]
    loss_box = F.smooth_l1_loss(deltas, regression_targets[pos], beta=beta, reduction="sum") / num
    return loss_cls, loss_box
