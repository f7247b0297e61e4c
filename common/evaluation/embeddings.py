"""t-SNE of real vs synthetic images read from two datalists, per class (Han, paper 003, sec. 4.2.6 and Fig. 10).

The pipeline around the pure functions of :mod:`common.metrics.embeddings`: draw the images of each (source, class)
category from the datalists, turn them into features and embed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from common.data.images import draw_per_class, read_datalist_images
from common.metrics.embeddings import image_features, tsne_embedding
from monai.data import load_decathlon_datalist

__all__ = ["tsne_real_vs_synthetic"]


def _read_section(
    datalist: str,
    section: str,
    class_key: str,
    spatial_size: int | Sequence[int],
    channels: Sequence[int] | None,
    max_per_class: int | None,
    seed: int,
) -> tuple[torch.Tensor, list[Any]]:
    """The images ``(N, C, *spatial_size)`` (not rescaled) of one datalist section, at most ``max_per_class`` per
    class drawn with ``seed``, and their classes (``None`` for entries without ``class_key``)."""
    entries = load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=section)
    if not entries:
        raise ValueError(f"{datalist}: section {section!r} is empty.")
    chosen = draw_per_class(entries, class_key, max_per_class, seed)
    try:
        images = read_datalist_images(chosen, None, spatial_size, channels, scale=False)
    except ValueError as e:
        raise ValueError(f"{datalist}: {e}") from e
    return images, [e.get(class_key) for e in chosen]


def tsne_real_vs_synthetic(
    real_datalist: str,
    synthetic_datalist: str,
    real_section: str = "training",
    synthetic_section: str = "training",
    class_key: str = "class",
    per_class: int = 300,
    spatial_size: int = 64,
    channels: Sequence[int] | None = None,
    features: str = "pixels",
    extractor: torch.nn.Module | None = None,
    perplexity: float = 100.0,
    max_iter: int = 1000,
    seed: int = 0,
    synthetic_channels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """t-SNE of real vs synthetic images, per class (paper 003, sec. 4.2.6: 300 images per category, perplexity
    100, 1,000 iterations; the perplexity is lowered for small sets, see :func:`tsne_embedding`).

    Args:
        real_datalist: datalist of the real images.
        synthetic_datalist: datalist written by a generator bundle.
        real_section: section of the real datalist to draw from.
        synthetic_section: section of the synthetic datalist.
        class_key: key of the class label in both datalists.
        per_class: images drawn per (source, class) category.
        spatial_size: common grid the images are resized to before feature extraction.
        channels: channel indices to keep (of both, unless ``synthetic_channels`` is given).
        features: ``"pixels"`` or ``"extractor"`` (see :func:`image_features`).
        extractor: optional extractor for ``"extractor"``.
        perplexity: t-SNE perplexity.
        max_iter: t-SNE iterations.
        seed: seed of the draw, PCA and t-SNE.
        synthetic_channels: channel indices to keep of the synthetic images when their layout differs from the
            real one (e.g. ``[0]`` of a generator's one-channel T1c images beside ``channels=[1]`` of 4-channel
            real slices).

    Returns:
        JSON-serialisable dict: ``coords`` (N x 2 list), ``classes``, ``sources`` (``"real"``/``"synthetic"``),
        ``features`` (the name of the features), ``tsne`` (parameters used) and the datalist paths.
    """
    read = dict(class_key=class_key, spatial_size=spatial_size, channels=channels, max_per_class=per_class, seed=seed)
    real, real_cls = _read_section(real_datalist, real_section, **read)
    if synthetic_channels is not None:
        read["channels"] = synthetic_channels
    syn, syn_cls = _read_section(synthetic_datalist, synthetic_section, **read)
    if real.shape[1:] != syn.shape[1:]:
        raise ValueError(
            f"real images {tuple(real.shape[1:])} and synthetic images {tuple(syn.shape[1:])} differ in shape; "
            "select matching channels with `channels` (and `synthetic_channels`)."
        )
    feats, name = image_features(torch.cat([real, syn]), kind=features, extractor=extractor)
    coords, info = tsne_embedding(feats, perplexity=perplexity, max_iter=max_iter, seed=seed)
    return {
        "coords": coords.tolist(),
        "classes": [c if c is None or isinstance(c, (int, str)) else int(c) for c in real_cls + syn_cls],
        "sources": ["real"] * len(real_cls) + ["synthetic"] * len(syn_cls),
        "features": name,
        "tsne": info,
        "real_datalist": str(real_datalist),
        "synthetic_datalist": str(synthetic_datalist),
    }
