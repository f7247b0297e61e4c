"""YOLOv3 with a Darknet-53 backbone for 2D (and 3D) images (Han's thesis sec. 5.2.3: "We use the YOLOv3 architecture
with Darknet-53 as a backbone classifier"; Redmon & Farhadi, "YOLOv3: An incremental improvement", 2018).

Backbone (Redmon & Farhadi, Table 1): a 3x3 convolution of ``base_channels``, then five stages, each a stride-2 3x3
convolution doubling the channels followed by ``blocks[i]`` residual blocks (1x1 convolution to half the channels,
3x3 back, identity shortcut): 1-2-8-8-4 blocks and 32 ... 1024 channels at full size (53 convolutions with the
classifier's last layer). Every convolution is convolution - batch norm - LeakyReLU(0.1) (MONAI's
:class:`~monai.networks.blocks.Convolution`).

Head (sec. 2.3 "Predictions Across Scales"): three scales at strides 32, 16 and 8. At stride 32, five convolutions
(1x1 / 3x3 alternating, ``C/2`` and ``C`` channels), a 3x3 convolution and a 1x1 output convolution; the five-layer
output is reduced by a 1x1 convolution, upsampled 2x (nearest) and concatenated with the stride-16 stage, and so on
down to stride 8. Each output has ``A * (2 d + 1 + C)`` channels: per anchor ``t_x`` (d), ``t_w`` (d), objectness
and ``C`` independent class logits (:mod:`common.losses.yolo`).

``forward`` behaves like :class:`~.faster_rcnn.FasterRCNN`: named losses in training mode, per-image detections in
eval mode (score ``sigmoid(t_o) * sigmoid(class logit)`` per class above ``score_thresh``, per-class NMS), boxes in
input pixel coordinates. Input sizes: without ``input_size`` the image is zero-padded at the end of each axis to a
multiple of 32 (boxes unchanged; detections clipped to the image); with ``input_size`` (the thesis's "network
resolution", 416x416 training and 608x608 validation/testing) the image is resized to it (bilinear/trilinear), target
boxes scaled to it and detections scaled back. The anchors are a buffer of the state dict, so a checkpoint carries
the anchors it was trained with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from common.losses.yolo import YOLOv3Loss, decode_yolo_boxes
from monai.networks.blocks import Convolution
from torch import Tensor, nn

from .matching import nms

__all__ = ["DarknetBackbone", "DarknetResidualBlock", "YOLOv3", "YOLOv3Head"]

STRIDES = (8, 16, 32)
"""Strides of the three output scales, finest first."""


def _conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> Convolution:
    """Darknet's convolution - batch norm - LeakyReLU(0.1), "same" padding."""
    return Convolution(
        spatial_dims,
        in_channels,
        out_channels,
        strides=stride,
        kernel_size=kernel_size,
        act=("leakyrelu", {"negative_slope": 0.1}),
        norm="batch",
        bias=False,
    )


class DarknetResidualBlock(nn.Module):
    """1x1 convolution to ``channels // 2``, 3x3 back to ``channels``, plus the input: (B, C, *S) -> (B, C, *S)."""

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(spatial_dims, channels, channels // 2, 1), _conv(spatial_dims, channels // 2, channels, 3)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DarknetBackbone(nn.Module):
    """Darknet-53 without its classifier; returns the stride 8, 16 and 32 stage outputs.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        base_channels: channels of the first convolution (32 in Darknet-53); stage ``i`` has ``base * 2 ** (i + 1)``.
        blocks: residual blocks per stage (five stages; Darknet-53: 1, 2, 8, 8, 4).
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, base_channels: int = 32, blocks: Sequence[int] = (1, 2, 8, 8, 4)
    ) -> None:
        super().__init__()
        if len(blocks) != 5:
            raise ValueError(f"Darknet has five stages (strides 2 ... 32); blocks has {len(blocks)} entries.")
        if base_channels < 2:
            raise ValueError(f"base_channels must be at least 2, got {base_channels}.")
        self.stem = _conv(spatial_dims, in_channels, base_channels, 3)
        stages = []
        channels = base_channels
        for n in blocks:
            layers: list[nn.Module] = [_conv(spatial_dims, channels, 2 * channels, 3, stride=2)]
            channels *= 2
            layers += [DarknetResidualBlock(spatial_dims, channels) for _ in range(int(n))]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_channels = [base_channels * 2**i for i in (3, 4, 5)]

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, C, *S) -> [(B, 8 base, *S/8), (B, 16 base, *S/16), (B, 32 base, *S/32)]."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:
                outs.append(x)
        return outs


class YOLOv3Head(nn.Module):
    """The three-scale head of YOLOv3 (module docstring).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the stride 8, 16 and 32 features.
        out_channels: channels of each output (``A * (2 d + 1 + C)``).
    """

    def __init__(self, spatial_dims: int, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        c8, c16, c32 = in_channels
        self.spatial_dims = spatial_dims
        sets, outputs, laterals = [], [], []
        previous = 0
        for c in (c32, c16, c8):  # coarsest first: each finer scale takes the upsampled coarser one
            half = c // 2
            cin = c + previous
            sets.append(
                nn.Sequential(
                    _conv(spatial_dims, cin, half, 1),
                    _conv(spatial_dims, half, c, 3),
                    _conv(spatial_dims, c, half, 1),
                    _conv(spatial_dims, half, c, 3),
                    _conv(spatial_dims, c, half, 1),
                )
            )
            outputs.append(
                nn.Sequential(
                    _conv(spatial_dims, half, c, 3),
                    Convolution(spatial_dims, c, out_channels, kernel_size=1, conv_only=True, bias=True),
                )
            )
            laterals.append(_conv(spatial_dims, half, half // 2, 1))
            previous = half // 2
        self.sets = nn.ModuleList(sets)
        self.outputs = nn.ModuleList(outputs)
        self.laterals = nn.ModuleList(laterals[:-1])

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Stride 8, 16, 32 features -> raw outputs at strides 8, 16, 32 (B, A * (2 d + 1 + C), *S_l)."""
        outs = []
        x = None
        for i, feat in enumerate(reversed(list(features))):
            if x is not None:
                x = F.interpolate(self.laterals[i - 1](x), size=feat.shape[2:], mode="nearest")
                feat = torch.cat([x, feat], 1)
            x = self.sets[i](feat)
            outs.append(self.outputs[i](x))
        return outs[::-1]


class YOLOv3(nn.Module):
    """YOLOv3 detector (module docstring): Darknet backbone, three-scale head, :class:`~common.losses.YOLOv3Loss`.

    Boxes are MONAI's standard corner mode (``xyxy`` / ``xyzxyz``, box axis ``i`` = spatial axis ``i`` of the
    tensor), labels 0-based, as for :class:`~.faster_rcnn.FasterRCNN`.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: object classes C.
        anchors: ``3 * anchors_per_scale`` anchor sizes (``spatial_dims`` values each) in pixels of the network
            input (after ``input_size`` resizing); sorted here by area, the smallest ``anchors_per_scale`` go to stride 8.
        anchors_per_scale: A (3 in YOLOv3).
        base_channels: width of the Darknet (32: Darknet-53's 32 ... 1024 channels).
        blocks: residual blocks of the five Darknet stages (Darknet-53: 1, 2, 8, 8, 4).
        ignore_thresh: IoU above which a non-responsible prediction is left out of the objectness loss (0.5).
        objectness_loss / class_loss: ``"bce"`` or ``"sse"`` (:mod:`common.losses.yolo`).
        input_size: network resolution ``{"training": [...], "testing": [...]}`` (each a multiple of 32, or None for
            the image's own size padded to a multiple of 32); None: both None.
        score_thresh: smallest score kept (thesis: detection threshold 0.1 %).
        nms_thresh: IoU of the per-class NMS (Darknet's 0.45).
        pre_nms_top_n: highest-scored candidates given to NMS per image (bounds NMS's IoU matrix).
        detections_per_img: detections kept per image.
        objectness_prior: initial objectness probability of every prediction (the output bias), so that the many
            negatives do not dominate the first steps (not in Redmon & Farhadi; RetinaNet's prior, Lin et al. 2017);
            None: PyTorch's default bias initialisation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        anchors: Sequence[Sequence[float]],
        anchors_per_scale: int = 3,
        base_channels: int = 32,
        blocks: Sequence[int] = (1, 2, 8, 8, 4),
        ignore_thresh: float = 0.5,
        objectness_loss: str = "bce",
        class_loss: str = "bce",
        input_size: Mapping[str, Sequence[int] | None] | None = None,
        score_thresh: float = 0.001,
        nms_thresh: float = 0.45,
        pre_nms_top_n: int = 1000,
        detections_per_img: int = 100,
        objectness_prior: float | None = 0.01,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        anchor_tensor = torch.as_tensor(anchors, dtype=torch.float32)
        if anchor_tensor.shape != (len(STRIDES) * anchors_per_scale, spatial_dims):
            raise ValueError(
                f"anchors must be {len(STRIDES) * anchors_per_scale} sizes of {spatial_dims} values "
                f"(3 scales x {anchors_per_scale}), got shape {tuple(anchor_tensor.shape)}."
            )
        if (anchor_tensor <= 0).any():
            raise ValueError("anchor sizes must be positive.")
        self.input_size: dict[str, tuple[int, ...] | None] = {"training": None, "testing": None}
        for mode, size in (input_size or {}).items():
            if mode not in self.input_size:
                raise ValueError(f"input_size keys are 'training' and 'testing', got {mode!r}.")
            if size is not None:
                size = tuple(int(s) for s in size)
                if len(size) != spatial_dims or any(s <= 0 or s % STRIDES[-1] for s in size):
                    raise ValueError(f"input_size['{mode}'] must be {spatial_dims} multiples of 32, got {size}.")
            self.input_size[mode] = size
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.anchors_per_scale = anchors_per_scale
        self.register_buffer("anchors", anchor_tensor[torch.argsort(anchor_tensor.prod(1), stable=True)])
        self.backbone = DarknetBackbone(spatial_dims, in_channels, base_channels, blocks)
        self.head = YOLOv3Head(
            spatial_dims, self.backbone.out_channels, anchors_per_scale * (2 * spatial_dims + 1 + num_classes)
        )
        if objectness_prior is not None:
            if not 0.0 < objectness_prior < 1.0:
                raise ValueError(f"objectness_prior must be in (0, 1), got {objectness_prior}.")
            channels = 2 * spatial_dims + 1 + num_classes
            for output in self.head.outputs:
                with torch.no_grad():
                    bias = output[-1].conv.bias.view(anchors_per_scale, channels)
                    bias[:, 2 * spatial_dims] = -math.log((1.0 - objectness_prior) / objectness_prior)
        self.loss = YOLOv3Loss(num_classes, ignore_thresh, objectness_loss, class_loss)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.pre_nms_top_n = pre_nms_top_n
        self.detections_per_img = detections_per_img

    size_divisible = STRIDES[-1]

    def scale_anchors(self) -> list[Tensor]:
        """The anchors of each scale, finest first: [(A, d)] * 3."""
        return list(self.anchors.split(self.anchors_per_scale))

    def raw_outputs(self, images: Tensor) -> list[Tensor]:
        """Raw predictions of a network-input batch (spatial sizes multiples of 32).

        Args:
            images: (B, C, *S).

        Returns:
            per scale, finest first, (B, A, *S_l, 2 d + 1 + C).
        """
        d = self.spatial_dims
        outs = []
        for out in self.head(self.backbone(images)):
            b, _, *spatial = out.shape
            out = out.reshape(b, self.anchors_per_scale, -1, *spatial)
            outs.append(out.permute(0, 1, *range(3, 3 + d), 2))
        return outs

    def _network_input(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images resized to ``input_size`` of the current mode, or padded to a multiple of 32; and the per-axis
        factor from image to network-input pixels."""
        size = self.input_size["training" if self.training else "testing"]
        spatial = images.shape[2:]
        if size is not None:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            resized = F.interpolate(images, size=size, mode=mode, align_corners=False)
            return resized, torch.tensor([t / s for t, s in zip(size, spatial)], device=images.device)
        extra = [(-s) % self.size_divisible for s in spatial]
        padding: list[int] = []
        for e in reversed(extra):
            padding += [0, e]
        padded = F.pad(images, padding) if any(extra) else images
        return padded, torch.ones(self.spatial_dims, device=images.device)

    def forward(
        self, images: Tensor, targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Train (losses) or detect (boxes).

        Args:
            images: (B, C, *S) batch of same-size images.
            targets: per image ``{"boxes": (G, 2 * spatial_dims) float corner boxes, "labels": (G,) int64
                0-based}``; required in training mode.

        Returns:
            training: ``{"loss_box", "loss_objectness", "loss_class"}``;
            eval: per image ``{"boxes": (D, 2 * spatial_dims), "scores": (D,), "labels": (D,) 0-based}`` in input
            pixel coordinates, by decreasing score.
        """
        if images.ndim != self.spatial_dims + 2:
            raise ValueError(f"images must be (B, C, *spatial) with {self.spatial_dims} spatial axes.")
        if self.training and targets is None:
            raise ValueError("targets are required in training mode.")
        net_input, factor = self._network_input(images)
        outputs = self.raw_outputs(net_input)
        if self.training:
            scale = torch.cat([factor, factor])
            scaled = [{"boxes": t["boxes"].to(factor) * scale, "labels": t["labels"]} for t in targets]
            return self.loss(outputs, self.scale_anchors(), STRIDES, scaled)
        return self.postprocess(outputs, tuple(images.shape[2:]), factor)

    @torch.no_grad()
    def postprocess(
        self, outputs: Sequence[Tensor], image_size: Sequence[int], factor: Tensor
    ) -> list[dict[str, Tensor]]:
        """Decode, threshold, NMS per class; boxes back to image pixels and clipped to the image.

        Args:
            outputs: :meth:`raw_outputs`.
            image_size: spatial size of the input images.
            factor: per-axis factor from image to network-input pixels.

        Returns:
            per image ``{"boxes", "scores", "labels"}``.
        """
        d = self.spatial_dims
        boxes, probs = [], []
        for out, anc, stride in zip(outputs, self.scale_anchors(), STRIDES):
            out = out.float()
            b = out.shape[0]
            boxes.append(decode_yolo_boxes(out, anc, stride).reshape(b, -1, 2 * d))
            probs.append(
                (torch.sigmoid(out[..., 2 * d : 2 * d + 1]) * torch.sigmoid(out[..., 2 * d + 1 :])).reshape(
                    b, -1, self.num_classes
                )
            )
        all_boxes, all_probs = torch.cat(boxes, 1), torch.cat(probs, 1)
        scale = torch.cat([factor, factor]).to(all_boxes)
        upper = torch.tensor(list(image_size) * 2, dtype=all_boxes.dtype, device=all_boxes.device)
        results = []
        for box, prob in zip(all_boxes, all_probs):
            idx, label = torch.nonzero(prob > self.score_thresh, as_tuple=True)
            score = prob[idx, label]
            top = torch.argsort(score, descending=True, stable=True)[: self.pre_nms_top_n]
            idx, label, score = idx[top], label[top], score[top]
            candidate = torch.minimum((box[idx] / scale).clamp_min(0), upper)
            valid = (candidate[:, d:] > candidate[:, :d]).all(1)  # boxes wholly outside the image vanish
            candidate, score, label = candidate[valid], score[valid], label[valid]
            keep = nms(candidate, score, label, self.nms_thresh, self.detections_per_img)
            results.append({"boxes": candidate[keep], "scores": score[keep], "labels": label[keep]})
        return results
