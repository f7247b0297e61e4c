"""RoIAlign for 2D and 3D feature maps, and its multi-level (FPN) version.

Faster R-CNN (Ren et al. 2015, ref. [55] of Han's thesis) pools a fixed-size feature for each proposal; RoIAlign
(He et al., Mask R-CNN, 2017) replaces RoI max pooling by bilinear sampling without quantisation. The thesis's
3D Faster R-CNN (sec. 6.2.2) needs the same operation in 3D, which torchvision does not provide; it is written
here on :func:`torch.nn.functional.grid_sample` (bilinear in 2D, trilinear in 3D).

Semantics (the same as torchvision's ``roi_align`` with a fixed positive ``sampling_ratio``):

- a box ``[x0, y0, (z0), x1, y1, (z1)]`` in image coordinates (axis ``i`` of the box is spatial axis ``i`` of
  the tensor, MONAI's ``"ij"`` convention) is scaled by ``spatial_scale``; with ``aligned=True`` half a cell is
  subtracted (``t = x * spatial_scale - 0.5``) so that feature cell ``k`` has its centre at continuous
  coordinate ``k`` and a box edge at pixel border ``k`` lands on ``k - 0.5``; with ``aligned=False`` the box is
  not shifted and its size is forced to be at least one cell (the legacy behaviour);
- the box is split into ``output_size`` bins per axis; each bin is sampled on a regular
  ``sampling_ratio``-per-axis grid at the centres of its sub-cells (``start + bin * (p + (j + 0.5) / r)``);
- each sample is the bilinear/trilinear interpolation of the four/eight neighbouring cells; a sample whose
  coordinate on some axis is below ``-1`` or above the axis size contributes 0, otherwise its coordinate is
  clamped to ``[0, size - 1]`` (``grid_sample`` with ``padding_mode="border"`` clamps the same way);
- the bin value is the mean of its ``sampling_ratio ** spatial_dims`` samples (zeros included).

An adaptive sampling ratio (``sampling_ratio <= 0`` in torchvision, ``ceil(box size / output size)`` per box)
is not supported: a fixed ratio keeps the operation one batched ``grid_sample`` call per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["roi_align", "RoIAlign", "MultiScaleRoIAlign", "map_levels"]


def _as_tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: int | Sequence[int],
    spatial_scale: float | Sequence[float] = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """Pool a fixed-size feature for each box by bilinear (2D) or trilinear (3D) sampling.

    Args:
        features: feature maps, shape (B, C, *S) with ``len(S)`` = 2 or 3.
        rois: boxes with their batch index, shape (K, 1 + 2 * spatial_dims):
            ``[b, x0, y0, (z0), x1, y1, (z1)]`` in image coordinates (MONAI's standard corner mode).
        output_size: bins per axis, an int or one per axis.
        spatial_scale: feature size / image size (e.g. 1/4 for a stride-4 map), a float or one per axis.
        sampling_ratio: samples per bin along each axis (> 0).
        aligned: subtract half a cell after scaling (pixel-centre alignment); see the module docstring.

    Returns:
        pooled features, shape (K, C, *output_size).
    """
    spatial_dims = features.ndim - 2
    if spatial_dims not in (2, 3):
        raise ValueError(f"features must be 4D or 5D (B, C, *spatial), got shape {tuple(features.shape)}.")
    if rois.ndim != 2 or rois.shape[1] != 1 + 2 * spatial_dims:
        raise ValueError(f"rois must have shape (K, {1 + 2 * spatial_dims}), got {tuple(rois.shape)}.")
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be a positive int, got {sampling_ratio}.")
    out = _as_tuple(output_size, spatial_dims)
    scale = (
        (float(spatial_scale),) * spatial_dims
        if isinstance(spatial_scale, (int, float))
        else tuple(float(s) for s in spatial_scale)
    )
    num, channels = rois.shape[0], features.shape[1]
    result = features.new_zeros((num, channels, *out))
    if num == 0:
        return result
    size = features.shape[2:]
    rois = rois.to(features.dtype)
    offset = 0.5 if aligned else 0.0
    coords, masks = [], []
    for axis in range(spatial_dims):
        start = rois[:, 1 + axis] * scale[axis] - offset
        length = rois[:, 1 + spatial_dims + axis] * scale[axis] - offset - start
        if not aligned:
            length = length.clamp(min=1.0)
        bin_size = length / out[axis]
        steps = torch.arange(out[axis] * sampling_ratio, device=features.device, dtype=features.dtype)
        # sample j of bin p sits at start + bin * (p + (j + 0.5) / r) = start + bin * (step + 0.5) / r
        t = start[:, None] + bin_size[:, None] * (steps[None] + 0.5) / sampling_ratio  # (K, out * r)
        masks.append((t >= -1.0) & (t <= size[axis]))
        coords.append((2.0 * t + 1.0) / size[axis] - 1.0)  # grid_sample, align_corners=False
    # broadcast per-axis coordinates into a (K, P0, P1, (P2), spatial_dims) grid, last dim reversed (x = last axis)
    points = [o * sampling_ratio for o in out]
    grids, valid = [], torch.ones((num, *points), dtype=torch.bool, device=features.device)
    for axis in range(spatial_dims):
        view = [num] + [1] * spatial_dims
        view[1 + axis] = points[axis]
        grids.append(coords[axis].view(view).expand(num, *points))
        valid = valid & masks[axis].view(view)
    grid = torch.stack(grids[::-1], dim=-1)
    pool = F.avg_pool2d if spatial_dims == 2 else F.avg_pool3d
    for b in torch.unique(rois[:, 0].long()).tolist():
        idx = (rois[:, 0].long() == b).nonzero(as_tuple=True)[0]
        g = grid[idx].reshape(1, len(idx) * points[0], *points[1:], spatial_dims)
        sampled = F.grid_sample(
            features[b : b + 1], g, mode="bilinear", padding_mode="border", align_corners=False
        )  # (1, C, K_b * P0, P1, (P2))
        sampled = sampled.reshape(channels, len(idx), *points).transpose(0, 1)
        sampled = sampled * valid[idx].unsqueeze(1).to(sampled.dtype)
        result[idx] = pool(sampled, kernel_size=sampling_ratio, stride=sampling_ratio).to(result.dtype)
    return result


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align` for one feature map.

    Args:
        output_size: bins per axis.
        spatial_scale: feature size / image size.
        sampling_ratio: samples per bin along each axis.
        aligned: half-cell alignment (see the module docstring).
    """

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float | Sequence[float] = 1.0,
        sampling_ratio: int = 2,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)


def map_levels(boxes: Tensor, finest_scale: float, num_levels: int, canonical_cells: float) -> Tensor:
    """FPN level of each box: ``floor(log2(s * finest_scale / canonical_cells))`` clamped to ``[0, L - 1]``.

    ``s`` is the box's geometric mean side (square root of the area in 2D, cube root of the volume in 3D). A box
    goes to the finest level until it spans ``2 * canonical_cells`` cells there, then one level coarser per
    doubling of its size. With ``canonical_cells = 2 * output_size`` this is the FPN paper's rule
    ``k = floor(k0 + log2(sqrt(wh) / 224))`` (k0 = 4, finest level 2, output 7) rewritten relative to the finest
    level, so it holds at any image scale and in 3D.

    Args:
        boxes: (K, 2 * spatial_dims) corner boxes in image coordinates.
        finest_scale: feature size / image size of level 0.
        num_levels: number of pooled levels.
        canonical_cells: see above.

    Returns:
        int64 level index per box, shape (K,).
    """
    spatial_dims = boxes.shape[1] // 2
    sides = (boxes[:, spatial_dims:] - boxes[:, :spatial_dims]).clamp(min=1e-6)
    size = sides.log().mean(dim=1).exp()  # geometric mean side
    level = torch.floor(torch.log2(size * finest_scale / canonical_cells) + 1e-6)
    return level.clamp(0, num_levels - 1).long()


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign on the FPN level chosen by box size (:func:`map_levels`).

    The scale of each level is inferred from the feature and image shapes as ``2 ** round(log2(feat / image))``
    (the images are padded to a multiple of the coarsest stride, so the ratio is exact).

    Args:
        output_size: bins per axis.
        sampling_ratio: samples per bin along each axis.
        canonical_cells: level-mapping constant (default ``2 * max(output_size)``).
        aligned: half-cell alignment.
    """

    def __init__(
        self,
        output_size: int | Sequence[int],
        sampling_ratio: int = 2,
        canonical_cells: float | None = None,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        size = output_size if isinstance(output_size, int) else max(output_size)
        self.canonical_cells = float(canonical_cells) if canonical_cells is not None else 2.0 * size
        self.aligned = aligned

    def forward(self, features: Sequence[Tensor], boxes: Sequence[Tensor], image_shape: Sequence[int]) -> Tensor:
        """Pool the boxes of every image.

        Args:
            features: feature maps of the pooled levels, finest first, each (B, C, *S_l).
            boxes: per image, (K_b, 2 * spatial_dims) boxes in image coordinates.
            image_shape: spatial shape of the (padded) input images.

        Returns:
            (sum K_b, C, *output_size), in the order of the images then their boxes.
        """
        scales = [
            [2.0 ** round(math.log2(f.shape[2 + a] / image_shape[a])) for a in range(len(image_shape))]
            for f in features
        ]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)], dim=0)
        spatial_dims = len(image_shape)
        out = _as_tuple(self.output_size, spatial_dims) if isinstance(self.output_size, int) else self.output_size
        result = features[0].new_zeros((rois.shape[0], features[0].shape[1], *out))
        if rois.shape[0] == 0:
            return result
        levels = map_levels(rois[:, 1:], min(scales[0]), len(features), self.canonical_cells)
        for level, (feature, scale) in enumerate(zip(features, scales)):
            idx = (levels == level).nonzero(as_tuple=True)[0]
            if len(idx):
                result[idx] = roi_align(feature, rois[idx], out, scale, self.sampling_ratio, self.aligned)
        return result
