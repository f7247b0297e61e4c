"""Reading the images of datalist entries into one tensor, resized to a common grid (for feature extraction, outlier
filtering and embeddings).

:func:`read_datalist_images` is the one image reader of these uses: MONAI ``LoadImaged`` (channel first), optional
channel selection, optional per-image and per-channel scaling to ``[0, 1]`` (``ScaleIntensityd``), ``Resized``
with area interpolation, float32 tensors without metadata. Each step acts on every channel separately, so the
result does not depend on when the channels are selected. :func:`draw_per_class` draws at most ``n`` entries per
class, as paper 003 (sec. 4.2.6) draws 300 images per category for its t-SNE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, EnsureTyped, LoadImaged, Resized, ScaleIntensityd, SqueezeDim

__all__ = ["draw_per_class", "read_datalist_images"]


def _select_channels(image: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    n = image.shape[0]
    bad = [i for i in channels if not -n <= i < n]
    if bad:
        raise ValueError(f"channel indices {bad} out of range for an image with {n} channels.")
    return image[list(channels)]


def read_datalist_images(
    entries: Sequence[Mapping[str, Any]],
    spatial_dims: int | None,
    image_size: int | Sequence[int],
    channels: Sequence[int] | None = None,
    image_key: str = "image",
    scale: bool = True,
) -> torch.Tensor:
    """Load datalist entries (absolute paths) as one tensor of images resized to a common grid.

    Args:
        entries: datalist entries (e.g. from ``monai.data.load_decathlon_datalist``); a list of files under
            ``image_key`` is read as channels.
        spatial_dims: 2 or 3; ``None`` takes the number of spatial dimensions of the first image. With 2, trailing
            singleton axes of the files, e.g. ``(H, W, 1)`` NIfTI slices, are dropped.
        image_size: side(s) of the grid every image is resized to (area interpolation).
        channels: channel indices to keep (e.g. ``[1]`` for T1c only), all when ``None``.
        image_key: key of the image file(s).
        scale: scale every image and channel to ``[0, 1]`` (min-max) before resizing.

    Returns:
        ``(N, C, *image_size)`` float32 images.

    Raises:
        ValueError: no entries, channel indices out of range, or images with different channel counts.
    """
    if not entries:
        raise ValueError("no entries to read.")
    load = LoadImaged(keys=image_key, image_only=True, ensure_channel_first=True)
    images = []
    post: Compose | None = None
    for entry in entries:
        item = load({image_key: entry[image_key]})
        if spatial_dims is not None:  # (H, W, 1) slices as most tools write them: drop the trailing singleton axes
            while item[image_key].ndim > int(spatial_dims) + 1 and item[image_key].shape[-1] == 1:
                item[image_key] = SqueezeDim(dim=-1, update_meta=False)(item[image_key])
        if channels is not None:
            item[image_key] = _select_channels(item[image_key], channels)
        if post is None:
            dims = item[image_key].ndim - 1 if spatial_dims is None else int(spatial_dims)
            size = [int(image_size)] * dims if isinstance(image_size, int) else [int(s) for s in image_size]
            steps: list[Any] = [ScaleIntensityd(keys=image_key, minv=0.0, maxv=1.0, channel_wise=True)] if scale else []
            steps += [
                Resized(keys=image_key, spatial_size=size, mode="area"),
                EnsureTyped(keys=image_key, dtype=torch.float32, track_meta=False),
            ]
            post = Compose(steps)
        images.append(post(item)[image_key])
    shapes = {tuple(i.shape) for i in images}
    if len(shapes) != 1:
        raise ValueError(f"images have different channel counts after resizing: {sorted(shapes)}.")
    return torch.stack(images, 0)


def draw_per_class(
    entries: Sequence[Mapping[str, Any]], class_key: str = "class", max_per_class: int | None = None, seed: int = 0
) -> list[Mapping[str, Any]]:
    """At most ``max_per_class`` entries of each class, drawn at random without replacement.

    Entries without ``class_key`` form the class ``None``. Classes come in the order of their string form; within a
    class the drawn entries keep their datalist order.

    Args:
        entries: datalist entries.
        class_key: key of the class label.
        max_per_class: cap per class; ``None`` keeps every entry.
        seed: seed of the draw (``numpy.random.default_rng``).

    Returns:
        the chosen entries, grouped by class.
    """
    by_class: dict[Any, list[Mapping[str, Any]]] = {}
    for e in entries:
        by_class.setdefault(e.get(class_key), []).append(e)
    rng = np.random.default_rng(seed)
    chosen: list[Mapping[str, Any]] = []
    for cls in sorted(by_class, key=str):
        group = by_class[cls]
        if max_per_class is not None and len(group) > max_per_class:
            group = [group[i] for i in sorted(rng.choice(len(group), max_per_class, replace=False))]
        chosen.extend(group)
    return chosen
