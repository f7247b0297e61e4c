"""YOLOv3 anchors by k-means on the training boxes (Redmon & Farhadi 2018, sec. 2.3 "we still use k-means clustering
to determine our bounding box priors"; the distance is YOLO9000's ``d(box, centroid) = 1 - IoU(box, centroid)`` with
the boxes aligned at the origin, so that only their shapes count). Han's thesis sec. 5.2.3 trains YOLOv3 without
naming its anchors; the detection bundle computes them from its training datalist at start unless ``yolo_anchors``
is given (bundles/detection/docs/README.md).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from common.losses.yolo import anchor_shape_iou
from common.utils.errors import UserInputError
from monai.data import load_decathlon_datalist
from monai.data.box_utils import convert_box_to_standard_mode
from torch import Tensor

__all__ = ["AnchorError", "datalist_anchors", "datalist_box_sizes", "kmeans_anchors"]


class AnchorError(UserInputError, ValueError):
    """The training boxes cannot give anchors (a section without boxes, or a box of zero size)."""


def kmeans_anchors(box_sizes: Tensor | np.ndarray, k: int, seed: int = 0, max_iter: int = 300) -> Tensor:
    """k-means of box shapes with the ``1 - IoU`` distance (boxes and centroids aligned at the origin).

    Initialisation by k-means++ (each next centroid drawn with probability proportional to the squared distance to
    the nearest chosen one); then Lloyd iterations, each box joining the centroid of highest IoU and each centroid
    moving to the mean shape of its boxes (a centroid left without boxes stays), until the assignment is stable.

    Args:
        box_sizes: (N, d) box sizes (positive).
        k: number of anchors.
        seed: seed of the initialisation.
        max_iter: most Lloyd iterations.

    Returns:
        (k, d) float32 anchors sorted by increasing area (volume in 3D).

    With fewer than ``k`` distinct box shapes (a phantom's integer boxes) every shape becomes an anchor and the
    others repeat shapes (a warning says so); a repeated anchor is never responsible for a box (ties go to the
    first), so it only learns a low objectness.

    Raises:
        ValueError: no boxes, or a non-positive size.
    """
    sizes = torch.as_tensor(np.asarray(box_sizes, dtype=np.float64))
    if sizes.ndim != 2 or sizes.shape[0] == 0:
        raise ValueError(f"box_sizes must be (N, d) with N > 0, got shape {tuple(sizes.shape)}.")
    if (sizes <= 0).any():
        raise ValueError("box sizes must be positive.")
    distinct = torch.unique(sizes, dim=0).shape[0]
    if distinct < k:
        warnings.warn(
            f"k-means of {k} anchors on {distinct} distinct box shapes: {k - distinct} anchors repeat a shape.",
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    centroids = [sizes[int(rng.integers(sizes.shape[0]))]]
    for _ in range(1, k):
        dist = 1.0 - anchor_shape_iou(sizes, torch.stack(centroids)).max(1).values
        weights = (dist.clamp_min(0) ** 2).numpy()
        if weights.sum() <= 0:  # every shape is a centroid already: repeat one
            centroids.append(sizes[int(rng.integers(sizes.shape[0]))])
            continue
        centroids.append(sizes[int(rng.choice(sizes.shape[0], p=weights / weights.sum()))])
    centres = torch.stack(centroids)
    assignment = None
    for _ in range(max_iter):
        new = anchor_shape_iou(sizes, centres).argmax(1)
        if assignment is not None and torch.equal(new, assignment):
            break
        assignment = new
        for j in range(k):
            members = sizes[assignment == j]
            if members.shape[0]:
                centres[j] = members.mean(0)
    order = torch.argsort(centres.prod(1), stable=True)
    return centres[order].float()


def _image_shape(path: str, spatial_dims: int) -> tuple[int, ...]:
    if path.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return tuple(int(s) for s in nib.load(path).shape[:spatial_dims])
    from monai.transforms import LoadImage

    image = LoadImage(image_only=True, ensure_channel_first=True)(path)
    return tuple(int(s) for s in image.shape[1 : 1 + spatial_dims])


def datalist_box_sizes(
    datalist: str | os.PathLike,
    spatial_dims: int,
    box_mode: str | None = None,
    section: str = "training",
    box_key: str = "box",
    target_size: Sequence[int] | None = None,
) -> Tensor:
    """Sizes of every box of a Decathlon-style detection datalist section.

    Args:
        datalist: the datalist JSON.
        spatial_dims: 2 or 3.
        box_mode: MONAI box mode of the datalist's boxes (None: the standard corner mode).
        section: the section to read.
        box_key: key of the box lists.
        target_size: if given, each box is scaled per axis by ``target_size / image size`` (the image size read
            from the file header: the first ``spatial_dims`` axes), i.e. to a network that resizes its input to
            ``target_size``.

    Returns:
        (N, spatial_dims) float32 sizes.

    Raises:
        AnchorError: the section is missing or has no boxes.
    """
    try:
        entries = load_decathlon_datalist(datalist, True, section)
    except (ValueError, KeyError, IndexError, FileNotFoundError, json.JSONDecodeError) as e:
        raise AnchorError(f"{datalist}: cannot read the boxes of section '{section}' for the anchors: {e}") from e
    sizes = []
    for entry in entries:
        boxes = torch.as_tensor(np.asarray(entry.get(box_key) or [], dtype=np.float64)).reshape(-1, 2 * spatial_dims)
        if boxes.shape[0] == 0:
            continue
        if box_mode is not None:
            boxes = convert_box_to_standard_mode(boxes, mode=box_mode)
        size = boxes[:, spatial_dims:] - boxes[:, :spatial_dims]
        if target_size is not None:
            image = entry["image"][0] if isinstance(entry["image"], (list, tuple)) else entry["image"]
            shape = _image_shape(str(image), spatial_dims)
            size = size * torch.tensor([float(t) / s for t, s in zip(target_size, shape)], dtype=size.dtype)
        sizes.append(size)
    if not sizes:
        raise AnchorError(
            f"{datalist}: section '{section}' has no boxes under '{box_key}' to compute anchors from; give the "
            "anchors explicitly (yolo_anchors)."
        )
    return torch.cat(sizes).float()


def datalist_anchors(
    datalist: str | os.PathLike,
    k: int,
    spatial_dims: int,
    box_mode: str | None = None,
    seed: int = 0,
    section: str = "training",
    box_key: str = "box",
    target_size: Sequence[int] | None = None,
) -> list[list[float]]:
    """Anchors from the training boxes of a datalist: :func:`datalist_box_sizes` then :func:`kmeans_anchors`.

    Args:
        datalist / spatial_dims / box_mode / section / box_key / target_size: see :func:`datalist_box_sizes`.
        k: number of anchors.
        seed: k-means seed.

    Returns:
        k anchors of ``spatial_dims`` sizes each, by increasing area (a plain list, as a config value).

    Raises:
        AnchorError: no boxes.
    """
    sizes = datalist_box_sizes(datalist, spatial_dims, box_mode, section, box_key, target_size)
    try:
        anchors = kmeans_anchors(sizes, k, seed)
    except ValueError as e:
        raise AnchorError(
            f"{datalist}: the {sizes.shape[0]} boxes of section '{section}' cannot give {k} anchors ({e}); give the "
            "anchors explicitly (yolo_anchors)."
        ) from e
    return [[round(float(v), 4) for v in a] for a in anchors]
