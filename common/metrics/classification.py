"""Classification metrics of CDA-GAN (Xu et al. 2023, sec. 4.2, eq. 11-14): ACC, AUC, recall, F1, plus specificity
and precision.

Inputs are class probabilities ``(N, C)`` (``C >= 2``; a binary ``(N,)`` vector is read as the probability of class
1) and integer labels ``(N,)``. Predictions are the arg-max class. With ``TP, TN, FP, FN`` counted for a class
against the rest (MONAI's :func:`~monai.metrics.get_confusion_matrix` on one-hot predictions and labels):

- ACC (eq. 11) ``= (TP + TN) / (TP + TN + FP + FN)`` in the binary case; for ``C > 2`` the fraction of samples
  whose arg-max is the label (the usual multi-class accuracy, not the mean of per-class one-vs-rest accuracies);
- Recall = sensitivity (eq. 12) ``= TP / (TP + FN)``;
- specificity ``= TN / (TN + FP)``; precision ``= TP / (TP + FP)``;
- F1 (eq. 13) ``= 2 TP / (T + P) = 2 TP / (2 TP + FP + FN)`` (``T``: samples of the class, ``P``: predicted);
- AUC (eq. 14) ``= (sum of the ranks of the positives - M (M + 1) / 2) / (M N)`` (Mann-Whitney form; ``M``
  positives, ``N`` negatives; ties take the average rank, i.e. count one half), computed with MONAI's
  :func:`~monai.metrics.compute_roc_auc` and checked against :func:`rank_auc`, a direct implementation of eq. 14.

Binary: every per-class metric is that of class 1 (the tumour class). Multi-class: **macro one-vs-rest**, the
unweighted mean over classes of each class-vs-rest value (scikit-learn's ``average="macro"``,
``multi_class="ovr"``). Where a denominator is zero the metric is 0 (scikit-learn's ``zero_division=0``); AUC is
NaN when a class has no positive or no negative sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import (
    CumulativeIterationMetric,
    compute_confusion_matrix_metric,
    compute_roc_auc,
    get_confusion_matrix,
)
from scipy.stats import rankdata

__all__ = ["CLASSIFICATION_KEYS", "ClassificationMetrics", "classification_metrics", "rank_auc"]

CLASSIFICATION_KEYS: tuple[str, ...] = ("acc", "auc", "recall", "specificity", "precision", "f1")
"""The metrics written by :func:`classification_metrics` (CDA-GAN Table 2 reports ACC, AUC, Recall, F1)."""


def rank_auc(scores: Sequence[float] | np.ndarray | torch.Tensor, labels: Sequence[int] | np.ndarray) -> float:
    """AUC by eq. 14 of CDA-GAN: ``(sum_{i in positives} rank_i - M (M + 1) / 2) / (M N)``.

    Ranks run from 1 (lowest score) to ``M + N`` (highest); tied scores get their average rank, so a tied
    positive/negative pair counts one half.

    Args:
        scores: ``(n,)`` scores, higher meaning more positive.
        labels: ``(n,)`` binary labels (1 positive).

    Returns:
        the AUC, NaN when there is no positive or no negative.
    """
    s = np.asarray(torch.as_tensor(scores).detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores)
    y = np.asarray(labels).astype(int).ravel()
    s = s.astype(float).ravel()
    m, n = int((y == 1).sum()), int((y != 1).sum())
    if m == 0 or n == 0:
        return float("nan")
    ranks = rankdata(s, method="average")
    return float((ranks[y == 1].sum() - m * (m + 1) / 2.0) / (m * n))


def _as_probabilities(y_prob: Any) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(y_prob) if not isinstance(y_prob, torch.Tensor) else y_prob).detach().cpu()
    p = p.double()
    if p.ndim == 1:
        p = torch.stack([1.0 - p, p], dim=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"y_prob must be (N,) or (N, C) with C >= 2, got shape {tuple(p.shape)}.")
    return p


def classification_metrics(
    y_prob: Any, y: Any, num_classes: int | None = None, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """ACC, AUC, recall, specificity, precision and F1 of CDA-GAN eq. 11-14 (binary, or macro one-vs-rest).

    Args:
        y_prob: ``(N, C)`` class probabilities (or scores; only their order matters for AUC), or ``(N,)`` for the
            probability of class 1 of a binary problem.
        y: ``(N,)`` integer labels in ``[0, C)`` (one-hot ``(N, C)`` is accepted too).
        num_classes: ``C``; default the number of columns of ``y_prob``.
        class_names: with ``C > 2``, per-class keys ``<metric>_<name>`` are added for recall, precision, F1, AUC.

    Returns:
        ``{"acc", "auc", "recall", "specificity", "precision", "f1"}`` as floats (plus per-class keys when asked),
        ``"num_samples"`` as a float.

    Raises:
        ValueError: on inconsistent shapes or labels out of range.
    """
    p = _as_probabilities(y_prob)
    c = int(num_classes or p.shape[1])
    if p.shape[1] != c:
        raise ValueError(f"y_prob has {p.shape[1]} columns but num_classes is {c}.")
    labels = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach().cpu()
    if labels.ndim == 2:
        labels = labels.argmax(dim=1)
    labels = labels.long().reshape(-1)
    if labels.numel() != p.shape[0]:
        raise ValueError(f"{p.shape[0]} predictions but {labels.numel()} labels.")
    if labels.numel() and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must be in [0, {c}), got values {sorted(set(labels.tolist()))}.")
    y_onehot = torch.nn.functional.one_hot(labels, c).double()
    pred_onehot = torch.nn.functional.one_hot(p.argmax(dim=1), c).double()
    # (N, C, 4): TP, FP, TN, FN of each class against the rest, summed over samples
    cm = get_confusion_matrix(pred_onehot, y_onehot, include_background=True).sum(dim=0)
    per_class = {
        name: torch.nan_to_num(compute_confusion_matrix_metric(metric, cm), nan=0.0)
        for name, metric in (
            ("recall", "sensitivity"),
            ("specificity", "specificity"),
            ("precision", "precision"),
            ("f1", "f1 score"),
        )
    }
    aucs = torch.tensor([_safe_auc(p[:, k], y_onehot[:, k]) for k in range(c)], dtype=torch.float64)
    results: dict[str, float] = {"acc": float((pred_onehot.argmax(1) == labels).double().mean())}
    if c == 2:
        results["auc"] = float(aucs[1])
        results.update({k: float(v[1]) for k, v in per_class.items()})
    else:
        results["auc"] = float(aucs.mean())  # NaN if a class has no positive or no negative
        results.update({k: float(v.mean()) for k, v in per_class.items()})
        for k, name in enumerate(class_names or []):
            for key in ("auc", "recall", "precision", "f1"):
                results[f"{key}_{name}"] = float(aucs[k] if key == "auc" else per_class[key][k])
    results = {k: results[k] for k in CLASSIFICATION_KEYS} | {
        k: v for k, v in results.items() if k not in CLASSIFICATION_KEYS
    }
    results["num_samples"] = float(labels.numel())
    return results


def _safe_auc(scores: torch.Tensor, target: torch.Tensor) -> float:
    """One-vs-rest AUC with MONAI, NaN (without MONAI's warning) when only one class is present."""
    if target.numel() == 0 or target.min() == target.max():
        return float("nan")
    return float(compute_roc_auc(scores, target.long()))


class ClassificationMetrics(CumulativeIterationMetric):
    """Accumulates probabilities and labels over batches, then computes :func:`classification_metrics`.

    A MONAI cumulative metric: each call adds a batch to the buffers (gathered across ranks in a distributed run by
    :meth:`get_buffer`), :meth:`aggregate` scores every sample added since the last :meth:`reset`, and MONAI's
    :class:`~monai.handlers.IgniteMetricHandler` can drive it
    (see :class:`common.handlers.ClassificationMetricsHandler`).

    Args:
        num_classes: number of classes ``C``.
        class_names: optional class names for per-class keys (``C > 2``).
    """

    def __init__(self, num_classes: int = 2, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names else None

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> Any:
        """Add a batch: ``y_pred`` ``(B, C)`` probabilities, ``y`` ``(B,)`` labels or ``(B, C)`` one-hot (tensors,
        arrays, or lists of per-sample tensors)."""
        if not isinstance(y_pred, (torch.Tensor, list, tuple)):
            y_pred = torch.as_tensor(np.asarray(y_pred))
        if not isinstance(y, (torch.Tensor, list, tuple)):
            y = torch.as_tensor(np.asarray(y))
        return super().__call__(y_pred, y, **kwargs)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> list[torch.Tensor]:
        """One batch as ``[(B, C) float64 probabilities, (B,) int64 labels]``, the two buffers."""
        if y is None:
            raise ValueError("ClassificationMetrics needs labels.")
        y_prob = y_pred.detach().cpu().double().reshape(-1, self.num_classes)
        labels = y.detach().cpu().reshape(len(y_prob), -1)
        labels = labels.argmax(dim=1) if labels.shape[1] == self.num_classes and self.num_classes > 1 else labels[:, 0]
        return [y_prob, labels.long()]

    def aggregate(self) -> dict[str, float]:  # type: ignore[override]
        """:func:`classification_metrics` of every sample added since the last :meth:`reset`.

        Raises:
            RuntimeError: when no batch was added.
        """
        buffers = self.get_buffer()
        if buffers is None:
            raise RuntimeError("ClassificationMetrics.aggregate called before any batch was added.")
        y_prob, labels = buffers
        return classification_metrics(y_prob, labels, self.num_classes, class_names=self.class_names)
