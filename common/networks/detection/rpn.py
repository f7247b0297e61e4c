"""Region proposal network (Ren et al. 2015, sec. 3.1), for 2D and 3D images (Han's thesis sec. 6.2.2).

Anchors come from MONAI's :class:`~monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape`
(one set of anchor shapes, scaled per FPN level) and box deltas are encoded with MONAI's
:class:`~monai.apps.detection.utils.box_coder.BoxCoder`. The head is shared by all levels: a 3x3(x3) convolution
and ReLU, then 1x1(x1) convolutions giving one objectness logit and ``2 * spatial_dims`` deltas per anchor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from common.losses.detection import rpn_loss
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.apps.detection.utils.box_coder import BoxCoder
from monai.data.box_utils import box_iou, clip_boxes_to_image
from monai.networks.layers.factories import Conv
from torch import Tensor, nn

from .matching import BalancedPositiveNegativeSampler, IoUMatcher, nms

__all__ = ["RPNHead", "RegionProposalNetwork", "flatten_head_outputs", "remove_small_boxes"]


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose every side is at least ``min_size``."""
    spatial_dims = boxes.shape[1] // 2
    sides = boxes[:, spatial_dims:] - boxes[:, :spatial_dims]
    return (sides >= min_size).all(dim=1).nonzero(as_tuple=True)[0]


def flatten_head_outputs(maps: Sequence[Tensor], num_anchors: int, width: int) -> Tensor:
    """Concatenate per-level head maps into (B, sum_l prod(S_l) * A, width) in the anchor generator's order.

    Args:
        maps: per level, (B, A * width, *S_l), channel ``a * width + k`` = value ``k`` of anchor ``a``.
        num_anchors: anchors per location A.
        width: values per anchor.
    """
    out = []
    for m in maps:
        b, spatial = m.shape[0], m.shape[2:]
        m = m.view(b, num_anchors, width, *spatial)
        m = m.permute(0, *range(3, 3 + len(spatial)), 1, 2)  # (B, *S, A, width)
        out.append(m.reshape(b, -1, width))
    return torch.cat(out, dim=1)


class RPNHead(nn.Module):
    """Shared RPN head: conv + ReLU, then objectness and box-delta convolutions.

    Args:
        spatial_dims: 2 or 3.
        in_channels: FPN channels.
        num_anchors: anchors per location.
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv = nn.Sequential(conv(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.cls_logits = conv(in_channels, num_anchors, 1)
        self.bbox_pred = conv(in_channels, num_anchors * 2 * spatial_dims, 1)
        for layer in self.modules():
            if isinstance(layer, conv):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: objectness (B, A, *S) and deltas (B, A * 2 * spatial_dims, *S)."""
        logits, deltas = [], []
        for f in features:
            t = self.conv(f)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


class RegionProposalNetwork(nn.Module):
    """Anchors, objectness and box regression, proposal decoding, NMS and top-k; losses in training.

    Args:
        spatial_dims: 2 or 3.
        in_channels: FPN channels.
        anchor_shapes: base anchor shapes (each ``spatial_dims`` sides) at the finest level.
        feature_map_scales: multiplier of ``anchor_shapes`` per FPN level (one per level given to the RPN).
        fg_iou_threshold: anchors with IoU >= this are positives (plus each ground truth's best anchors).
        bg_iou_threshold: anchors with IoU < this are negatives.
        batch_size_per_image: anchors sampled per image for the loss.
        positive_fraction: maximum fraction of positives in the sample.
        pre_nms_top_n: proposals kept per level before NMS, ``{"training": n, "testing": n}``.
        post_nms_top_n: proposals kept per image after NMS.
        nms_thresh: IoU threshold of the proposal NMS (per level).
        min_size: proposals with a side below this (pixels/voxels) are dropped.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        anchor_shapes: Sequence[Sequence[float]],
        feature_map_scales: Sequence[float],
        fg_iou_threshold: float = 0.7,
        bg_iou_threshold: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: dict[str, int] | None = None,
        post_nms_top_n: dict[str, int] | None = None,
        nms_thresh: float = 0.7,
        min_size: float = 1.0,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        if any(len(s) != spatial_dims for s in anchor_shapes):
            raise ValueError(f"every anchor shape needs {spatial_dims} sides, got {anchor_shapes}.")
        self.anchor_generator = AnchorGeneratorWithAnchorShape(
            feature_map_scales=tuple(feature_map_scales), base_anchor_shapes=tuple(map(tuple, anchor_shapes))
        )
        self.num_anchors = len(anchor_shapes)
        self.head = RPNHead(spatial_dims, in_channels, self.num_anchors)
        self.box_coder = BoxCoder(weights=(1.0,) * (2 * spatial_dims))
        self.matcher = IoUMatcher(fg_iou_threshold, bg_iou_threshold, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = dict(pre_nms_top_n or {"training": 1000, "testing": 500})
        self.post_nms_top_n = dict(post_nms_top_n or {"training": 500, "testing": 200})
        self.nms_thresh = float(nms_thresh)
        self.min_size = float(min_size)

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def forward(
        self,
        images: Tensor,
        features: Sequence[Tensor],
        image_size: Sequence[int],
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Propose boxes.

        Args:
            images: the (padded) batch, (B, C, *S); only its shape is used.
            features: FPN maps, finest first, each (B, F, *S_l).
            image_size: spatial size of the unpadded images (proposals are clipped to it).
            targets: per image ``{"boxes": (G, 2 * spatial_dims)}``; required in training.

        Returns:
            per image, proposals (P, 2 * spatial_dims) detached; and ``{"loss_objectness", "loss_rpn_box_reg"}``
            in training (empty otherwise).
        """
        width = 2 * self.spatial_dims
        logits_maps, delta_maps = self.head(features)
        anchors = self.anchor_generator(images, list(features))[0]  # same anchors for every image
        objectness = flatten_head_outputs(logits_maps, self.num_anchors, 1).squeeze(-1)  # (B, N)
        deltas = flatten_head_outputs(delta_maps, self.num_anchors, width)  # (B, N, width)
        per_level = [m.shape[2:].numel() * self.num_anchors for m in logits_maps]
        batch = objectness.shape[0]
        with torch.no_grad():
            boxes = self.box_coder.decode_single(deltas.detach().reshape(-1, width), anchors.repeat(batch, 1))
            boxes = boxes.reshape(batch, -1, width)
        proposals = self.filter_proposals(boxes, objectness.detach(), per_level, image_size)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode.")
            labels, regression = [], []
            for target in targets:
                gt = target["boxes"].to(anchors.dtype)
                matches = self.matcher(box_iou(gt, anchors))
                lab = (matches >= 0).to(torch.int64)
                lab[matches == -2] = -1
                labels.append(lab)
                if len(gt):
                    regression.append(self.box_coder.encode_single(gt[matches.clamp(min=0)], anchors))
                else:
                    regression.append(torch.zeros_like(anchors))
            pos, neg = self.sampler(labels)
            loss_obj, loss_box = rpn_loss(
                objectness.reshape(-1),
                deltas.reshape(-1, width),
                torch.cat(labels).clamp(min=0),
                torch.cat(regression),
                torch.cat(pos),
                torch.cat(neg),
            )
            losses = {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}
        return proposals, losses

    def filter_proposals(
        self, boxes: Tensor, objectness: Tensor, per_level: Sequence[int], image_size: Sequence[int]
    ) -> list[Tensor]:
        """Top-k per level, clip to the image, drop small boxes, NMS per level, keep the best ``post_nms_top_n``."""
        pre_n, post_n = self.pre_nms_top_n[self._mode()], self.post_nms_top_n[self._mode()]
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(per_level)])
        levels = levels.to(boxes.device)
        out = []
        for b in range(boxes.shape[0]):
            keep_idx, start = [], 0
            for n in per_level:
                k = min(pre_n, n)
                keep_idx.append(objectness[b, start : start + n].topk(k).indices + start)
                start += n
            idx = torch.cat(keep_idx)
            box, score, lvl = boxes[b, idx], objectness[b, idx], levels[idx]
            box, _ = clip_boxes_to_image(box, tuple(image_size), remove_empty=False)
            small = remove_small_boxes(box, self.min_size)
            box, score, lvl = box[small], score[small], lvl[small]
            keep = nms(box, score, lvl, self.nms_thresh)[:post_n]
            out.append(box[keep])
        return out
