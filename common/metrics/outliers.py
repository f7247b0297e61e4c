"""Feature-space outlier filter for synthetic images: discard weird-looking samples before augmentation.

Han's thesis (sec. 4, contributions and Table 2, setup 5 "w/o clustering/discarding") discards weird-looking
synthetic images before using them for augmentation but does not say how. Here a synthetic image is rejected when
it lies far from the real images in a feature space:

- features: a named extractor from :func:`common.metrics.features.build_feature_extractor` (a local weights file,
  or the named random-init fallback) or the raw pixels (``features="pixels"``);
- score: the distance to the real distribution, either the distance to the ``k``-th nearest real image
  (``method="knn"``, features standardised with the real mean and standard deviation) or the Mahalanobis distance
  to the real mean under a Ledoit-Wolf shrunk covariance (``method="mahalanobis"``);
- threshold: the ``quantile`` of the real-vs-real scores (kNN: each real image against the *other* real images;
  Mahalanobis: cross-fitted, each real image against a covariance fitted on the other folds), so that about
  ``1 - quantile`` of real images would be rejected. A synthetic image with a score above the threshold is rejected.

:func:`common.evaluation.filter_synthetic_datalist` applies the filter to a synthetic datalist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from common.metrics.features import build_feature_extractor, extract_features

__all__ = ["OUTLIER_METHODS", "FeatureOutlierFilter", "OutlierResult", "image_feature_vectors"]

OUTLIER_METHODS = ("knn", "mahalanobis")


@dataclass
class OutlierResult:
    """Result of :meth:`FeatureOutlierFilter.filter`.

    Attributes:
        scores: distance of every tested sample to the real distribution ``(N,)``.
        threshold: the rejection threshold (scores above it are rejected).
        kept: indices of the kept samples.
        rejected: indices of the rejected samples.
        reference_scores: the real-vs-real scores the threshold was taken from.
        method, quantile, k: the filter's settings.
    """

    scores: np.ndarray
    threshold: float
    kept: list[int]
    rejected: list[int]
    reference_scores: np.ndarray
    method: str
    quantile: float
    k: int
    extra: dict = field(default_factory=dict)

    @property
    def rejection_rate(self) -> float:
        n = len(self.kept) + len(self.rejected)
        return len(self.rejected) / n if n else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary (without per-sample scores)."""
        return {
            "method": self.method,
            "k": self.k,
            "quantile": self.quantile,
            "threshold": float(self.threshold),
            "num_tested": len(self.kept) + len(self.rejected),
            "num_kept": len(self.kept),
            "num_rejected": len(self.rejected),
            "rejection_rate": self.rejection_rate,
            "real_score_median": float(np.median(self.reference_scores)),
            **self.extra,
        }


class FeatureOutlierFilter:
    """Distance-to-the-real-distribution outlier filter with a real-vs-real quantile threshold.

    Args:
        method: ``"knn"`` (distance to the ``k``-th nearest real sample) or ``"mahalanobis"``.
        k: neighbour rank for ``"knn"`` (must be smaller than the number of real samples).
        quantile: quantile of the real-vs-real scores used as the threshold, in ``(0, 1]``.
        threshold: a fixed threshold instead of the quantile (``None``: use the quantile).
        folds: folds of the cross-fitted real-vs-real Mahalanobis scores (each real image scored by a covariance
            fitted on the other folds).

    Example::

        filt = FeatureOutlierFilter("knn", k=5, quantile=0.95).fit(real_features)
        result = filt.filter(synthetic_features)  # result.kept, result.rejected, result.scores
    """

    def __init__(
        self, method: str = "knn", k: int = 5, quantile: float = 0.95, threshold: float | None = None, folds: int = 5
    ) -> None:
        if method not in OUTLIER_METHODS:
            raise ValueError(f"method must be one of {OUTLIER_METHODS}, got {method!r}.")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}.")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        self.method, self.k, self.quantile, self.fixed_threshold = method, int(k), float(quantile), threshold
        self.folds = max(int(folds), 2)
        self.real: np.ndarray | None = None
        self.reference_scores: np.ndarray | None = None
        self.threshold: float | None = None

    @staticmethod
    def _as_array(features: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        arr = np.asarray(features, dtype=np.float64)
        if arr.ndim != 2:
            arr = arr.reshape(arr.shape[0], -1)
        if not np.isfinite(arr).all():
            raise ValueError("features contain NaN or Inf.")
        return arr

    def fit(self, real_features: torch.Tensor | np.ndarray) -> FeatureOutlierFilter:
        """Store the real distribution and set the threshold from the real-vs-real scores.

        Args:
            real_features: ``(N, F)`` features of real images.
        """
        real = self._as_array(real_features)
        if self.method == "knn":
            if real.shape[0] <= self.k:
                raise ValueError(f"knn with k={self.k} needs more than {self.k} real samples, got {real.shape[0]}.")
            self.mean = real.mean(0)
            self.std = np.where(real.std(0) > 1e-8, real.std(0), 1.0)
            self.real = (real - self.mean) / self.std
            dist = _pairwise(self.real, self.real)
            np.fill_diagonal(dist, np.inf)  # leave-one-out: a real image is not its own neighbour
            self.reference_scores = np.sort(dist, 1)[:, self.k - 1]
        else:
            from sklearn.covariance import LedoitWolf

            if real.shape[0] < 2:
                raise ValueError("mahalanobis needs at least 2 real samples.")
            # cross-fitted reference scores: each real image is scored by a model fitted without its fold, since
            # in-sample Mahalanobis distances are biased low in high dimensions
            folds = np.arange(real.shape[0]) % min(self.folds, real.shape[0])
            reference = np.zeros(real.shape[0])
            for f in np.unique(folds):
                train = real[folds != f] if (folds != f).sum() >= 2 else real
                reference[folds == f] = np.sqrt(LedoitWolf().fit(train).mahalanobis(real[folds == f]))
            self.covariance = LedoitWolf().fit(real)
            self.real = real
            self.reference_scores = reference
        q = float(np.quantile(self.reference_scores, self.quantile))
        self.threshold = float(self.fixed_threshold) if self.fixed_threshold is not None else q
        return self

    def score(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """Distances ``(M,)`` of samples ``(M, F)`` to the real distribution."""
        if self.real is None:
            raise RuntimeError("call fit(real_features) first.")
        x = self._as_array(features)
        if x.shape[1] != self.real.shape[1]:
            raise ValueError(f"features have {x.shape[1]} dimensions, the real ones {self.real.shape[1]}.")
        if self.method == "knn":
            dist = _pairwise((x - self.mean) / self.std, self.real)
            return np.sort(dist, 1)[:, self.k - 1]
        return np.sqrt(self.covariance.mahalanobis(x))

    def filter(self, features: torch.Tensor | np.ndarray) -> OutlierResult:
        """Score samples and split them into kept (score <= threshold) and rejected indices."""
        scores = self.score(features)
        assert self.threshold is not None and self.reference_scores is not None
        rejected = [int(i) for i in np.flatnonzero(scores > self.threshold)]
        kept = [int(i) for i in np.flatnonzero(scores <= self.threshold)]
        return OutlierResult(
            scores, self.threshold, kept, rejected, self.reference_scores, self.method, self.quantile, self.k
        )


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None))


def image_feature_vectors(
    images: torch.Tensor,
    features: str = "resnet18",
    weights_path: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    batch_size: int = 16,
) -> tuple[torch.Tensor, str]:
    """Features ``(N, F)`` of images ``(N, C, *spatial)`` and the feature space's name.

    Args:
        images: the images.
        features: ``"pixels"`` (flattened images) or a MONAI ResNet name or ``"inception_v3_fid"`` for
            :func:`common.metrics.features.build_feature_extractor`.
        weights_path: local weights of the extractor (``None``: the named random-init fallback).
        device: device of the extractor.
        seed: seed of the fallback initialisation.
        batch_size: extractor batch size.
    """
    if features == "pixels":
        return images.reshape(images.shape[0], -1).float(), "pixels"
    spatial_dims = images.ndim - 2
    extractor = build_feature_extractor(
        spatial_dims, images.shape[1], weights_path=weights_path, arch=features, seed=seed
    )
    feats = extract_features(extractor, images, batch_size=batch_size, device=device)
    return feats, str(extractor.name)  # type: ignore[union-attr]
