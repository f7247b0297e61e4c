"""Fast R-CNN box head on pooled proposals (Ren et al. 2015 / Girshick 2015), 2D and 3D (thesis sec. 6.2.2).

Training: ground-truth boxes are added to the proposals, each proposal is matched to a ground truth
(IoU >= ``fg_iou_threshold`` foreground, < ``bg_iou_threshold`` background), a balanced mini-batch is sampled,
RoIAlign pools a fixed-size feature on the FPN level chosen by box size, two fully connected layers and ReLU
give a representation, and linear layers predict ``num_classes + 1`` class logits and class-specific deltas.
Inference: softmax scores, decoded class-specific boxes clipped to the image, a score threshold, per-class NMS
and the ``detections_per_img`` best.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from common.losses.detection import box_head_loss
from monai.apps.detection.utils.box_coder import BoxCoder
from monai.data.box_utils import box_iou, clip_boxes_to_image
from torch import Tensor, nn

from .matching import BalancedPositiveNegativeSampler, IoUMatcher, nms
from .roi_align import MultiScaleRoIAlign
from .rpn import remove_small_boxes

__all__ = ["TwoMLPHead", "FastRCNNPredictor", "RoIHeads"]


class TwoMLPHead(nn.Module):
    """Two fully connected layers with ReLU on flattened pooled features.

    Args:
        in_features: ``channels * prod(output_size)``.
        representation_size: width of both layers.
    """

    def __init__(self, in_features: int, representation_size: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        """(K, C, *output_size) -> (K, representation_size)."""
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """Class logits (``num_classes + 1``, 0 = background) and class-specific box deltas.

    Args:
        in_features: representation width.
        num_classes: object classes (background excluded).
        spatial_dims: 2 or 3.
    """

    def __init__(self, in_features: int, num_classes: int, spatial_dims: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, num_classes * 2 * spatial_dims)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class RoIHeads(nn.Module):
    """Proposal matching and sampling, multi-level RoIAlign, box head, predictor, losses and post-processing.

    Args:
        spatial_dims: 2 or 3.
        in_channels: FPN channels.
        num_classes: object classes (background excluded).
        output_size: RoIAlign bins per axis.
        sampling_ratio: RoIAlign samples per bin per axis.
        representation_size: width of the two FC layers.
        fg_iou_threshold: proposals with IoU >= this are foreground.
        bg_iou_threshold: proposals with IoU < this are background.
        batch_size_per_image: proposals sampled per image for the loss.
        positive_fraction: maximum foreground fraction of the sample.
        bbox_reg_weights: BoxCoder weights (centre weights then size weights).
        score_thresh: detections below this score are dropped at inference.
        nms_thresh: per-class NMS IoU threshold at inference.
        detections_per_img: detections kept per image.
        min_size: detections with a side below this are dropped.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        output_size: int = 7,
        sampling_ratio: int = 2,
        representation_size: int = 256,
        fg_iou_threshold: float = 0.5,
        bg_iou_threshold: float = 0.5,
        batch_size_per_image: int = 128,
        positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        min_size: float = 1.0,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self.box_roi_pool = MultiScaleRoIAlign(output_size, sampling_ratio)
        self.box_head = TwoMLPHead(in_channels * output_size**spatial_dims, representation_size)
        self.box_predictor = FastRCNNPredictor(representation_size, num_classes, spatial_dims)
        weights = bbox_reg_weights or (10.0,) * spatial_dims + (5.0,) * spatial_dims
        self.box_coder = BoxCoder(weights=tuple(weights))
        self.matcher = IoUMatcher(fg_iou_threshold, bg_iou_threshold, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.min_size = float(min_size)

    def select_training_samples(
        self, proposals: list[Tensor], targets: Sequence[dict[str, Tensor]]
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """Add the ground truths to the proposals, match, sample; return sampled proposals, labels, targets."""
        sampled_props, labels_out, reg_out = [], [], []
        labels_all = []
        matched_all = []
        props_all = []
        for props, target in zip(proposals, targets):
            gt = target["boxes"].to(props.dtype)
            gt_labels = target["labels"].to(torch.int64)
            props = torch.cat([props, gt], dim=0)
            if len(gt):
                matches = self.matcher(box_iou(gt, props))
                lab = gt_labels[matches.clamp(min=0)] + 1
                lab[matches == -1] = 0
                lab[matches == -2] = -1
            else:
                matches = torch.full((len(props),), -1, dtype=torch.int64, device=props.device)
                lab = torch.zeros(len(props), dtype=torch.int64, device=props.device)
            labels_all.append(lab)
            matched_all.append(matches)
            props_all.append(props)
        pos, neg = self.sampler(labels_all)
        for props, target, lab, matches, p, n in zip(props_all, targets, labels_all, matched_all, pos, neg):
            idx = (p | n).nonzero(as_tuple=True)[0]
            sampled_props.append(props[idx])
            labels_out.append(lab[idx].clamp(min=0))
            gt = target["boxes"].to(props.dtype)
            if len(gt):
                reg_out.append(self.box_coder.encode_single(gt[matches[idx].clamp(min=0)], props[idx]))
            else:
                reg_out.append(torch.zeros_like(props[idx]))
        return sampled_props, torch.cat(labels_out), torch.cat(reg_out)

    def forward(
        self,
        features: Sequence[Tensor],
        proposals: list[Tensor],
        image_shape: Sequence[int],
        image_size: Sequence[int],
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Classify and refine the proposals.

        Args:
            features: FPN maps pooled by RoIAlign (finest first).
            proposals: per image, (P, 2 * spatial_dims).
            image_shape: spatial shape of the padded batch (for the level scales).
            image_size: unpadded spatial size (detections are clipped to it).
            targets: per image ``{"boxes", "labels"}`` (labels 0-based); required in training.

        Returns:
            detections per image ``{"boxes", "scores", "labels"}`` (empty in training) and the losses
            ``{"loss_classifier", "loss_box_reg"}`` (empty at inference).
        """
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode.")
            proposals, labels, regression = self.select_training_samples(proposals, targets)
        pooled = self.box_roi_pool(features, proposals, image_shape)
        class_logits, box_deltas = self.box_predictor(self.box_head(pooled))
        if self.training:
            loss_cls, loss_box = box_head_loss(class_logits, box_deltas, labels, regression)
            return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        return self.postprocess(class_logits, box_deltas, proposals, image_size), {}

    def postprocess(
        self, class_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor], image_size: Sequence[int]
    ) -> list[dict[str, Tensor]]:
        """Softmax, class-specific decoding, clipping, score threshold, per-class NMS, top detections."""
        width = 2 * self.spatial_dims
        scores_all = F.softmax(class_logits.float(), dim=-1)
        counts = [len(p) for p in proposals]
        results = []
        for props, scores, deltas in zip(proposals, scores_all.split(counts), box_deltas.split(counts)):
            if len(props) == 0:
                results.append(
                    {
                        "boxes": props.new_zeros((0, width)),
                        "scores": props.new_zeros((0,)),
                        "labels": torch.zeros((0,), dtype=torch.int64, device=props.device),
                    }
                )
                continue
            boxes = self.box_coder.decode_single(deltas.float(), props.float())  # (P, C * width)
            boxes = boxes.reshape(-1, width)
            scores = scores[:, 1:].reshape(-1)
            labels = torch.arange(self.num_classes, device=props.device).repeat(len(props))
            boxes, _ = clip_boxes_to_image(boxes, tuple(image_size), remove_empty=False)
            keep = (scores > self.score_thresh).nonzero(as_tuple=True)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results
