"""Faster R-CNN with a ResNet-FPN backbone for 2D and 3D images (Han's thesis sec. 6.2.2: "3D Faster RCNN is a 3D
version of Faster RCNN [55] using multi-task loss"; sec. 5 runs the same detector in 2D here).

Backbone: MONAI's :class:`~monai.networks.nets.ResNet` stem and stages (group normalisation, which does not depend
on the batch size of 1-2 volumes) feeding MONAI's :class:`~monai.networks.blocks.FeaturePyramidNetwork` with an
extra max-pooled level. The RPN (:mod:`.rpn`) proposes boxes on every FPN level; the box head (:mod:`.roi_heads`)
pools each proposal with RoIAlign (:mod:`.roi_align`) on the level chosen by its size. ``forward`` returns the
four losses in training mode and per-image detections in eval mode.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from monai.networks.nets.resnet import ResNet
from torch import Tensor, nn

from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork

__all__ = ["ResNetFPNBackbone", "FasterRCNN"]


class ResNetFPNBackbone(nn.Module):
    """ResNet stem and ``len(channels)`` basic-block stages, with an FPN on all stages plus a max-pooled level.

    Strides: the stem convolution has ``stem_stride`` and is followed by a 2x max pooling, every further stage
    halves the resolution, so level ``i`` has stride ``2 * stem_stride * 2 ** i`` and the extra level twice the
    last. ``size_divisible`` is the coarsest stride.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        channels: output channels of each stage (at most 4).
        layers: basic blocks per stage.
        fpn_channels: channels of every FPN output.
        stem_stride: stride of the stem convolution.
        norm: normalisation of the ResNet (MONAI name and arguments).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int] = (16, 32, 64),
        layers: Sequence[int] = (1, 1, 1),
        fpn_channels: int = 32,
        stem_stride: int = 1,
        norm: Any = ("group", {"num_groups": 4}),
    ) -> None:
        super().__init__()
        if not 1 <= len(channels) <= 4 or len(layers) != len(channels):
            raise ValueError("channels and layers need the same length, between 1 and 4.")
        pad = 4 - len(channels)
        resnet = ResNet(
            block="basic",
            layers=list(layers) + [1] * pad,
            block_inplanes=list(channels) + [channels[-1]] * pad,
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=3,
            conv1_t_stride=stem_stride,
            norm=norm,
        )
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.act, resnet.maxpool)
        self.stages = nn.ModuleList([getattr(resnet, f"layer{i + 1}") for i in range(len(channels))])
        self.fpn = FeaturePyramidNetwork(
            spatial_dims, list(channels), fpn_channels, extra_blocks=LastLevelMaxPool(spatial_dims)
        )
        self.out_channels = fpn_channels
        self.num_levels = len(channels) + 1
        self.size_divisible = 2 * stem_stride * 2 ** len(channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, C, *S) -> FPN maps, finest first (``len(channels)`` stage levels, then the pooled level)."""
        x = self.stem(x)
        feats: OrderedDict[str, Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[str(i)] = x
        return list(self.fpn(feats).values())


class FasterRCNN(nn.Module):
    """Two-stage detector: ResNet-FPN backbone, region proposal network, RoIAlign box head.

    Boxes are in MONAI's standard corner mode (``xyxy`` / ``xyzxyz``, axis ``i`` of a box = spatial axis ``i`` of
    the image tensor), in pixel/voxel coordinates. Class labels of the targets are 0-based (``box_label``);
    the box head uses class 0 for background internally and returns 0-based labels.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: object classes (background excluded).
        backbone_channels: ResNet stage channels.
        backbone_layers: basic blocks per stage.
        fpn_channels: FPN width.
        stem_stride: stride of the ResNet stem convolution.
        anchor_shapes: base anchor shapes at the finest level (default ``(4,)*d`` and ``(6,)*d``), scaled by 2 per
            FPN level.
        rpn_fg_iou_threshold / rpn_bg_iou_threshold: RPN anchor matching (Ren et al.: 0.7 / 0.3).
        rpn_batch_size_per_image / rpn_positive_fraction: RPN anchor sampling (Ren et al.: 256 / 0.5).
        rpn_pre_nms_top_n / rpn_post_nms_top_n: proposals kept before/after NMS, ``{"training", "testing"}``.
        rpn_nms_thresh: proposal NMS IoU (0.7).
        roi_output_size: RoIAlign bins per axis.
        roi_sampling_ratio: RoIAlign samples per bin per axis.
        representation_size: box-head FC width.
        box_fg_iou_threshold / box_bg_iou_threshold: proposal matching (0.5 / 0.5).
        box_batch_size_per_image / box_positive_fraction: proposal sampling (128 / 0.25 in Fast R-CNN).
        box_score_thresh / box_nms_thresh / detections_per_img: inference post-processing.
        min_size: smallest box side kept (pixels/voxels).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        backbone_channels: Sequence[int] = (16, 32, 64),
        backbone_layers: Sequence[int] = (1, 1, 1),
        fpn_channels: int = 32,
        stem_stride: int = 1,
        anchor_shapes: Sequence[Sequence[float]] | None = None,
        rpn_fg_iou_threshold: float = 0.7,
        rpn_bg_iou_threshold: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_pre_nms_top_n: dict[str, int] | None = None,
        rpn_post_nms_top_n: dict[str, int] | None = None,
        rpn_nms_thresh: float = 0.7,
        roi_output_size: int = 4,
        roi_sampling_ratio: int = 2,
        representation_size: int = 128,
        box_fg_iou_threshold: float = 0.5,
        box_bg_iou_threshold: float = 0.5,
        box_batch_size_per_image: int = 128,
        box_positive_fraction: float = 0.25,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.3,
        detections_per_img: int = 100,
        min_size: float = 1.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.backbone = ResNetFPNBackbone(
            spatial_dims, in_channels, backbone_channels, backbone_layers, fpn_channels, stem_stride
        )
        if anchor_shapes is None:
            anchor_shapes = ((4.0,) * spatial_dims, (6.0,) * spatial_dims)
        scales = [2.0**i for i in range(self.backbone.num_levels)]
        self.rpn = RegionProposalNetwork(
            spatial_dims,
            fpn_channels,
            anchor_shapes,
            scales,
            fg_iou_threshold=rpn_fg_iou_threshold,
            bg_iou_threshold=rpn_bg_iou_threshold,
            batch_size_per_image=rpn_batch_size_per_image,
            positive_fraction=rpn_positive_fraction,
            pre_nms_top_n=rpn_pre_nms_top_n,
            post_nms_top_n=rpn_post_nms_top_n,
            nms_thresh=rpn_nms_thresh,
            min_size=min_size,
        )
        self.roi_heads = RoIHeads(
            spatial_dims,
            fpn_channels,
            num_classes,
            output_size=roi_output_size,
            sampling_ratio=roi_sampling_ratio,
            representation_size=representation_size,
            fg_iou_threshold=box_fg_iou_threshold,
            bg_iou_threshold=box_bg_iou_threshold,
            batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction,
            score_thresh=box_score_thresh,
            nms_thresh=box_nms_thresh,
            detections_per_img=detections_per_img,
            min_size=min_size,
        )

    @property
    def size_divisible(self) -> int:
        return self.backbone.size_divisible

    def pad(self, images: Tensor) -> Tensor:
        """Zero-pad the spatial axes at their end to a multiple of :attr:`size_divisible` (boxes are unchanged)."""
        d = self.size_divisible
        extra = [(-s) % d for s in images.shape[2:]]
        if not any(extra):
            return images
        padding: list[int] = []
        for e in reversed(extra):
            padding += [0, e]
        return F.pad(images, padding)

    def forward(
        self, images: Tensor, targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Train (losses) or detect (boxes).

        Args:
            images: (B, C, *S) batch of same-size images.
            targets: per image ``{"boxes": (G, 2 * spatial_dims) float, "labels": (G,) int64 0-based}``;
                required in training mode.

        Returns:
            training: ``{"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}``;
            eval: per image ``{"boxes": (D, 2 * spatial_dims), "scores": (D,), "labels": (D,) 0-based}``.
        """
        if images.ndim != self.spatial_dims + 2:
            raise ValueError(f"images must be (B, C, *spatial) with {self.spatial_dims} spatial axes.")
        if self.training and targets is None:
            raise ValueError("targets are required in training mode.")
        image_size = tuple(images.shape[2:])
        padded = self.pad(images)
        features = self.backbone(padded)
        proposals, rpn_losses = self.rpn(padded, features, image_size, targets)
        pooled_levels = features[:-1] if len(features) > 1 else features  # RoIAlign skips the extra pooled level
        detections, head_losses = self.roi_heads(pooled_levels, proposals, tuple(padded.shape[2:]), image_size, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return detections
