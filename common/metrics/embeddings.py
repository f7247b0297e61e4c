"""t-SNE embeddings of real and synthetic images, per class (Han, paper 003, sec. 4.2.6 and Fig. 10).

Paper 003 embeds 300 images per category (real tumour, real non-tumour, synthetic tumour, synthetic non-tumour)
with t-SNE (perplexity 100, 1,000 iterations) into 2D. Here image tensors are turned into feature vectors and
embedded with :class:`sklearn.manifold.TSNE` (reading them from datalists is
:func:`common.evaluation.embeddings.tsne_real_vs_synthetic`). Two feature kinds:

- ``"pixels"``: every image resized (area interpolation) to a small grid, min-max normalised per image and
  flattened; the output names it, e.g. ``"pixels: area-resized to 32x32, per-image min-max, flattened"``;
- ``"extractor"``: pooled features of :func:`common.metrics.features.build_feature_extractor` (a local weights
  file, or its named random-init fallback); the output carries the extractor's name.

Paper 003 does not say which features it embedded; raw pixels is the default because it needs no weights.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common.metrics.features import build_feature_extractor, extract_features

__all__ = ["image_features", "tsne_embedding"]

logger = logging.getLogger("common.metrics")


def tsne_embedding(
    features: np.ndarray | torch.Tensor,
    perplexity: float = 30.0,
    max_iter: int = 1000,
    seed: int = 0,
    pca_components: int | None = 50,
) -> tuple[np.ndarray, dict[str, Any]]:
    """2D t-SNE of feature vectors.

    The features are standardised per dimension and, when they have more than ``pca_components`` dimensions,
    reduced with PCA first (the usual t-SNE practice; it removes noise and speeds the affinities up). The
    perplexity must be below the number of samples: it is lowered to ``(N - 1) / 3`` when larger, and the value
    used is returned.

    Args:
        features: ``(N, F)`` feature vectors, ``N >= 4``.
        perplexity: t-SNE perplexity (paper 003 uses 100 with 1,200 images).
        max_iter: number of optimisation iterations (paper 003: 1,000).
        seed: random state of PCA and t-SNE.
        pca_components: PCA dimensions before t-SNE, ``None`` to skip.

    Returns:
        ``(coords (N, 2), info)`` with ``info`` holding the perplexity, iterations and PCA size used.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 samples, got {n}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("features hold NaN/Inf.")
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    used_pca = None
    if pca_components is not None and x.shape[1] > pca_components and n > pca_components:
        x = PCA(n_components=pca_components, random_state=seed).fit_transform(x)
        used_pca = pca_components
    used_perplexity = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=used_perplexity, max_iter=max_iter, init="pca", random_state=seed)
    coords = tsne.fit_transform(x)
    info = {"perplexity": used_perplexity, "max_iter": max_iter, "pca_components": used_pca, "n_samples": n}
    return coords.astype(np.float64), info


def image_features(
    images: torch.Tensor,
    kind: str = "pixels",
    size: int | None = None,
    extractor: torch.nn.Module | None = None,
    batch_size: int = 16,
) -> tuple[torch.Tensor, str]:
    """Feature vectors of images for :func:`tsne_embedding`, and the name of the features.

    Args:
        images: ``(N, C, *spatial)`` images (2D or 3D).
        kind: ``"pixels"`` (area-resized, per-image min-max, flattened) or ``"extractor"``.
        size: side of the resized grid for ``"pixels"`` (default 32 in 2D, 16 in 3D).
        extractor: for ``"extractor"``, a module ``(B, C, *spatial) -> (B, F)`` with a ``name`` attribute (e.g.
            :func:`common.metrics.features.build_feature_extractor`); built as the random-init fallback
            ResNet-18 when ``None``.
        batch_size: batch size of the extractor.

    Returns:
        ``(features (N, F), name)``.
    """
    spatial_dims = images.ndim - 2
    if spatial_dims not in (2, 3):
        raise ValueError(f"images must be (N, C, H, W) or (N, C, H, W, D), got shape {tuple(images.shape)}.")
    images = images.float()
    if kind == "pixels":
        side = int(size or (32 if spatial_dims == 2 else 16))
        small = F.adaptive_avg_pool2d(images, side) if spatial_dims == 2 else F.adaptive_avg_pool3d(images, side)
        flat = small.reshape(small.shape[0], -1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        flat = (flat - lo) / (hi - lo).clamp_min(1e-8)
        grid = "x".join([str(side)] * spatial_dims)
        return flat, f"pixels: area-resized to {grid}, per-image min-max, flattened"
    if kind == "extractor":
        if extractor is None:
            extractor = build_feature_extractor(spatial_dims, images.shape[1], normalize="minmax")
        feats = extract_features(extractor, images, batch_size=batch_size)
        return feats, f"extractor: {getattr(extractor, 'name', type(extractor).__name__)}"
    raise ValueError(f"unknown feature kind {kind!r}; use 'pixels' or 'extractor'.")
