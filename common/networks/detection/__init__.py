"""Faster R-CNN for 2D and 3D images (Han's thesis sec. 6.2.2 and sec. 5): RoIAlign, RPN, box head, matcher,
sampler and sliding-window inference (its training step: ``common.engines.DetectionStep``)."""

from .faster_rcnn import FasterRCNN, ResNetFPNBackbone
from .matching import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, BalancedPositiveNegativeSampler, IoUMatcher, nms
from .roi_align import MultiScaleRoIAlign, RoIAlign, map_levels, roi_align
from .roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead, flatten_head_outputs, remove_small_boxes

__all__ = [
    "BELOW_LOW_THRESHOLD",
    "BETWEEN_THRESHOLDS",
    "BalancedPositiveNegativeSampler",
    "FastRCNNPredictor",
    "FasterRCNN",
    "IoUMatcher",
    "MultiScaleRoIAlign",
    "RPNHead",
    "RegionProposalNetwork",
    "ResNetFPNBackbone",
    "RoIAlign",
    "RoIHeads",
    "TwoMLPHead",
    "flatten_head_outputs",
    "map_levels",
    "nms",
    "remove_small_boxes",
    "roi_align",
]

from .inference import DetectionPredictor, patch_starts, sliding_window_detect, window_slices  # noqa: E402

__all__ += ["DetectionPredictor", "patch_starts", "sliding_window_detect", "window_slices"]

from .anchors import AnchorError, datalist_anchors, datalist_box_sizes, kmeans_anchors  # noqa: E402
from .yolov3 import DarknetBackbone, DarknetResidualBlock, YOLOv3, YOLOv3Head  # noqa: E402

__all__ += ["AnchorError", "datalist_anchors", "datalist_box_sizes", "kmeans_anchors"]
__all__ += ["DarknetBackbone", "DarknetResidualBlock", "YOLOv3", "YOLOv3Head"]
