"""IoU matcher, balanced positive/negative sampler and NMS helpers of Faster R-CNN (Ren et al. 2015, sec. 3.1.2;
Han's thesis sec. 6.2.2 uses the 3D version).

MONAI provides an ATSS matcher and a hard-negative sampler (RetinaNet); the classic Faster R-CNN rules are
written here: an anchor/proposal is positive when its IoU with a ground-truth box reaches ``high_threshold``
(or, optionally, when it is a ground truth's best match), negative below ``low_threshold`` and ignored in
between; a training mini-batch per image holds at most ``positive_fraction`` positives, topped up with negatives.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data.box_utils import box_iou
from torch import Tensor

__all__ = ["BELOW_LOW_THRESHOLD", "BETWEEN_THRESHOLDS", "IoUMatcher", "BalancedPositiveNegativeSampler", "nms"]

BELOW_LOW_THRESHOLD = -1
"""Match value of a negative (IoU < low threshold with every ground truth)."""
BETWEEN_THRESHOLDS = -2
"""Match value of an ignored element (low <= best IoU < high)."""


class IoUMatcher:
    """Assign each predicted box (anchor or proposal) to at most one ground-truth box by IoU.

    Args:
        high_threshold: IoU at or above which a prediction is matched (positive).
        low_threshold: IoU below which a prediction is negative; between the two it is ignored.
        allow_low_quality_matches: also match, for each ground truth, the predictions with its highest IoU
            (ties included) even if that IoU is below ``high_threshold`` (Ren et al.: "the anchor with the highest
            IoU overlap with a ground-truth box" is positive), so every ground truth gets a positive.
    """

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold {low_threshold} must not exceed high_threshold {high_threshold}.")
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> Tensor:
        """Match from an IoU matrix.

        Args:
            iou: (G, N) IoU of G ground-truth boxes with N predictions.

        Returns:
            int64 (N,): the matched ground-truth index, or ``BELOW_LOW_THRESHOLD`` (-1, negative) or
            ``BETWEEN_THRESHOLDS`` (-2, ignored).
        """
        num_pred = iou.shape[1]
        if iou.shape[0] == 0:
            return torch.full((num_pred,), BELOW_LOW_THRESHOLD, dtype=torch.int64, device=iou.device)
        best, matches = iou.max(dim=0)
        original = matches.clone()
        matches[best < self.high_threshold] = BETWEEN_THRESHOLDS
        matches[best < self.low_threshold] = BELOW_LOW_THRESHOLD
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1, keepdim=True).values
            gt_idx, pred_idx = ((iou == best_per_gt) & (best_per_gt > 0)).nonzero(as_tuple=True)
            matches[pred_idx] = original[pred_idx]
        return matches


class BalancedPositiveNegativeSampler:
    """Sample a mini-batch of positives and negatives per image (Ren et al. 2015, sec. 3.1.3).

    Args:
        batch_size_per_image: number of sampled elements per image.
        positive_fraction: at most this fraction of them are positives; negatives fill the rest.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if batch_size_per_image < 1 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError("batch_size_per_image must be >= 1 and positive_fraction in [0, 1].")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)

    def __call__(
        self, labels: list[Tensor], generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Sample per image.

        Args:
            labels: per image, (N,) labels: >= 1 positive, 0 negative, -1 ignored.
            generator: optional random generator (tests).

        Returns:
            per image, boolean (N,) masks of the sampled positives and of the sampled negatives.
        """
        pos_masks, neg_masks = [], []
        for lab in labels:
            positive = (lab >= 1).nonzero(as_tuple=True)[0]
            negative = (lab == 0).nonzero(as_tuple=True)[0]
            num_pos = min(len(positive), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(len(negative), self.batch_size_per_image - num_pos)
            perm_pos = torch.randperm(len(positive), generator=generator)[:num_pos].to(lab.device)
            perm_neg = torch.randperm(len(negative), generator=generator)[:num_neg].to(lab.device)
            pos_mask = torch.zeros_like(lab, dtype=torch.bool)
            neg_mask = torch.zeros_like(lab, dtype=torch.bool)
            pos_mask[positive[perm_pos]] = True
            neg_mask[negative[perm_neg]] = True
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks


def nms(boxes: Tensor, scores: Tensor, groups: Tensor | None, iou_threshold: float, max_keep: int = -1) -> Tensor:
    """Greedy non-maximum suppression, separately per group, on MONAI's :func:`~monai.data.box_utils.box_iou`.

    MONAI's ``non_max_suppression`` recomputes the IoU of the remaining boxes in a Python loop (seconds for a few
    thousand proposals on a CPU); here the IoU matrix of each group is computed once (only within the group: the
    RPN's per-level NMS over four levels costs a quarter of one matrix over all boxes) and the greedy pass runs on
    a boolean array. MONAI's ``batched_nms``/``non_max_suppression`` are not used because they are too slow here:
    about 9 s per 3D training step of the detection bundle with them, 1.71 +- 0.58 s with one IoU matrix over all
    groups (the batched-NMS offset trick), 0.62 +- 0.12 s with one matrix per group (``scripts/benchmark.py`` on the
    project's shared 2-core x86-64 CPU without AMX, torch 2.13 CPU; separate runs of the same command, not one
    side-by-side run; see "Time and memory" in the bundle's model card).

    Args:
        boxes: (N, 2 * spatial_dims) corner boxes.
        scores: (N,) scores.
        groups: (N,) group index (class, level) or None for one group.
        iou_threshold: a box whose IoU with a kept, higher-scored box of its group exceeds this is removed.
        max_keep: keep at most this many (-1: all).

    Returns:
        int64 indices of the kept boxes, in decreasing score order (ties: lower index first).
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    boxes = boxes.detach().float()
    scores = scores.detach().float()
    order = torch.argsort(scores, descending=True, stable=True)
    if groups is None or len(groups) == 0:
        members = [order]
    else:
        sorted_groups = groups[order]
        members = [order[sorted_groups == g] for g in torch.unique(sorted_groups)]
    kept = [member[_greedy_keep(boxes[member], iou_threshold, max_keep)] for member in members]
    if len(kept) == 1:
        return kept[0]
    kept_all = torch.cat(kept)
    # back to one decreasing-score order; ties by original index, as the single-group pass orders them
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    kept_all = kept_all[torch.argsort(rank[kept_all])]
    return kept_all[:max_keep] if max_keep > 0 else kept_all


def _greedy_keep(sorted_boxes: Tensor, iou_threshold: float, max_keep: int) -> Tensor:
    """Positions kept by greedy NMS among boxes sorted by decreasing score."""
    suppress = box_iou(sorted_boxes, sorted_boxes).cpu().numpy() > iou_threshold
    removed = np.zeros(len(sorted_boxes), dtype=bool)
    kept: list[int] = []
    for i in range(len(sorted_boxes)):
        if removed[i]:
            continue
        kept.append(i)
        if 0 < max_keep <= len(kept):
            break
        removed |= suppress[i]
    return torch.as_tensor(kept, dtype=torch.int64, device=sorted_boxes.device)
