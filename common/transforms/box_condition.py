"""Bounding-box conditioning images and test-time box augmentation of CPGGAN (Han thesis, sec. 5.2.2).

- "Conditioning image: prepare a 256 x 256 black image (i.e., pixel value: 0) with white bounding boxes (i.e., pixel
  value: 255) describing tumor positions/sizes": :func:`boxes_to_condition` / :class:`BoxConditiond` (white is
  ``value``, 1 by default, as the networks work on unit-range data).
- "During testing, as tumor attention images, we use the annotation of training images with a random combination of
  horizontal/vertical flipping, width/height shift up to 10%, and zooming up to 10%": :func:`augment_boxes` and
  :func:`condition_samples`, which draws the test-time conditions (and latents) of a synthesis run.

Boxes are corner boxes in voxel index coordinates, ``[x1, y1, x2, y2]`` (2D) or ``[x1, y1, z1, x2, y2, z2]`` (3D),
start inclusive and end exclusive, axis ``a`` of a box being spatial axis ``a`` of the channel-first image (the data
contract of the project's datalists).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["BoxConditiond", "augment_boxes", "boxes_to_condition", "condition_samples", "scale_boxes"]


def _as_boxes(boxes: Any, spatial_dims: int) -> np.ndarray:
    arr = np.asarray(boxes if boxes is not None else [], dtype=np.float64).reshape(-1, 2 * spatial_dims)
    return arr


def _image_size(entry: Mapping[str, Any], spatial_dims: int) -> list[int]:
    """Spatial size of an entry's (first) image file, from its header."""
    import nibabel as nib

    image = entry["image"][0] if isinstance(entry["image"], (list, tuple)) else entry["image"]
    return [int(s) for s in nib.load(str(image)).shape[:spatial_dims]]


def scale_boxes(boxes: Any, source_size: Sequence[int], target_size: Sequence[int]) -> np.ndarray:
    """Boxes of an image of ``source_size`` expressed in the voxels of the same image resized to ``target_size``.

    Returns:
        float array ``(N, 2 * spatial_dims)``.
    """
    nd = len(target_size)
    factor = np.asarray(target_size, dtype=np.float64) / np.asarray(source_size, dtype=np.float64)
    return _as_boxes(boxes, nd) * np.concatenate([factor, factor])


def boxes_to_condition(boxes: Any, spatial_size: Sequence[int], value: float = 1.0) -> np.ndarray:
    """The conditioning image: zeros with ``value`` inside every box.

    Box corners are rounded to whole voxels (start down, end up), so that a box always covers at least the voxels
    it touches; boxes are clipped to the image.

    Args:
        boxes: ``(N, 2 * spatial_dims)`` corner boxes (voxel coordinates, end exclusive); empty for no box.
        spatial_size: the image size.
        value: the "white" value inside the boxes.

    Returns:
        float32 array ``(1, *spatial_size)``.
    """
    nd = len(spatial_size)
    cond = np.zeros((1, *spatial_size), dtype=np.float32)
    for box in _as_boxes(boxes, nd):
        lo = [int(np.clip(np.floor(box[a]), 0, spatial_size[a])) for a in range(nd)]
        hi = [int(np.clip(np.ceil(box[a + nd]), 0, spatial_size[a])) for a in range(nd)]
        if all(h > lo_ for lo_, h in zip(lo, hi)):
            cond[(0, *[slice(lo_, h) for lo_, h in zip(lo, hi)])] = value
    return cond


def augment_boxes(
    boxes: Any,
    spatial_size: Sequence[int],
    rng: np.random.Generator,
    flip: bool = True,
    shift: float = 0.1,
    zoom: float = 0.1,
    min_size: float = 1.0,
) -> np.ndarray:
    """One random test-time variation of an image's boxes (CPGGAN, sec. 5.2.2).

    The same random transform applies to all boxes of the image: a flip of each axis with probability 1/2, a zoom
    about the image centre by a factor ``U[1 - zoom, 1 + zoom]`` per axis and a shift of up to ``shift`` times the
    image size per axis (the "width/height shift" and "zoom" ranges of the thesis). Boxes are clipped to the image
    and boxes smaller than ``min_size`` voxels on an axis after clipping are dropped.

    Args:
        boxes: ``(N, 2 * spatial_dims)`` corner boxes.
        spatial_size: the image size.
        rng: random generator.
        flip: random flips of each axis.
        shift: maximum shift as a fraction of the image size.
        zoom: maximum zoom change (0.1: factors in [0.9, 1.1]).
        min_size: smallest kept box side in voxels.

    Returns:
        float array ``(M, 2 * spatial_dims)``, ``M <= N``.
    """
    nd = len(spatial_size)
    size = np.asarray(spatial_size, dtype=np.float64)
    b = _as_boxes(boxes, nd).copy()
    lo, hi = b[:, :nd], b[:, nd:]
    for a in range(nd):
        if flip and rng.random() < 0.5:
            lo[:, a], hi[:, a] = size[a] - hi[:, a].copy(), size[a] - lo[:, a].copy()
    factor = rng.uniform(1.0 - zoom, 1.0 + zoom, size=nd)
    offset = rng.uniform(-shift, shift, size=nd) * size
    centre = size / 2.0
    lo = (lo - centre) * factor + centre + offset
    hi = (hi - centre) * factor + centre + offset
    lo, hi = np.clip(lo, 0.0, size), np.clip(hi, 0.0, size)
    keep = np.all(hi - lo >= min_size, axis=1)
    return np.concatenate([lo, hi], axis=1)[keep]


def condition_samples(
    entries: Sequence[Mapping[str, Any]],
    num_samples: int,
    image_size: int | Sequence[int],
    latent_size: int,
    seed: int = 0,
    source_size: int | Sequence[int] | None = None,
    box_key: str = "box",
    flip: bool = True,
    shift: float = 0.1,
    zoom: float = 0.1,
    value: float = 1.0,
) -> list[dict[str, Any]]:
    """Test-time conditions of a CPGGAN synthesis run: augmented boxes of training images, with latents.

    Sample ``i`` takes the boxes of a training entry with at least one box (drawn at random), applies
    :func:`augment_boxes` (redrawn until at least one box survives, at most 20 times, else the unaugmented boxes),
    and renders its conditioning image.

    Args:
        entries: datalist entries with ``box_key`` (boxes in the voxels of ``source_size`` images).
        num_samples: number of conditions.
        image_size: size of the generated images (int: the same on both axes; 2D unless a sequence says otherwise).
        latent_size: latent vector length.
        seed: seed of the draws (entries, augmentations, latents).
        source_size: size of the images the boxes refer to; default: read from each entry's image file header.
        box_key: key of the boxes in the entries.
        flip: random flips; shift: maximum shift fraction; zoom: maximum zoom change; see :func:`augment_boxes`.
        value: the value inside boxes in the conditioning image.

    Returns:
        per-sample dicts ``{"condition": (1, *size) float32, "latent": (latent_size,) float32, "boxes_json": str,
        "source": str}``; ``boxes_json`` holds ``{"box": [...], "box_label": [...], "condition_source": ...}``
        with boxes rounded to whole voxels of the generated image (end exclusive), as written to the datalist.

    Raises:
        ValueError: when no entry has a box.
    """
    size = [int(image_size)] * 2 if isinstance(image_size, (int, np.integer)) else [int(s) for s in image_size]
    fixed_src = (
        None if source_size is None else ([int(source_size)] * len(size) if np.isscalar(source_size) else source_size)
    )
    with_boxes = [e for e in entries if e.get(box_key)]
    if not with_boxes:
        raise ValueError(f"no entry has boxes under '{box_key}': CPGGAN needs boxed training images.")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num_samples):
        entry = with_boxes[int(rng.integers(len(with_boxes)))]
        src = fixed_src if fixed_src is not None else _image_size(entry, len(size))
        base = scale_boxes(entry[box_key], src, size)
        boxes = np.zeros((0, 2 * len(size)))
        for _ in range(20):
            boxes = augment_boxes(base, size, rng, flip=flip, shift=shift, zoom=zoom)
            if len(boxes):
                break
        if not len(boxes):
            boxes = base
        nd = len(size)
        rounded = [
            [int(np.floor(b[a])) for a in range(nd)] + [int(min(np.ceil(b[a + nd]), size[a])) for a in range(nd)]
            for b in boxes
        ]
        rounded = [b for b in rounded if all(b[a + nd] > b[a] for a in range(nd))]
        image = entry.get("image", f"entry {i}")
        source = os.path.basename(str(image[0] if isinstance(image, (list, tuple)) else image))
        info = {"box": rounded, "box_label": [0] * len(rounded), "condition_source": source}
        out.append(
            {
                "condition": boxes_to_condition(rounded, size, value),
                "latent": rng.standard_normal(latent_size).astype(np.float32),
                "boxes_json": json.dumps(info),
                "source": "noise+boxes",
            }
        )
    return out


class BoxConditiond(MapTransform):
    """Dictionary transform adding the conditioning image of an entry's boxes (CPGGAN, sec. 5.2.2).

    Args:
        keys: the box key(s) (``"box"``); the first one is used.
        image_key: key of the (channel-first) image whose spatial size the condition takes; apply this transform
            where the boxes are in that image's voxels (i.e. before any resizing, then resize both keys together).
        condition_key: output key.
        value: the value inside boxes.
        allow_missing_keys: do nothing for entries without boxes (an all-black condition is still added).
    """

    def __init__(
        self,
        keys: KeysCollection = "box",
        image_key: str = "image",
        condition_key: str = "condition",
        value: float = 1.0,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.condition_key = condition_key
        self.value = value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        spatial = [int(s) for s in d[self.image_key].shape[1:]]
        key = self.keys[0]
        boxes = d.get(key) or []
        d[self.condition_key] = boxes_to_condition(boxes, spatial, self.value)
        return d
