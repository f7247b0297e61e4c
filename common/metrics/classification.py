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

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric, compute_roc_auc, get_confusion_matrix
from scipy.stats import rankdata

from common.handlers.utils import atomic_write_json, is_rank0
from common.metrics.evaluation import format_table

__all__ = [
    "CLASSIFICATION_KEYS",
    "ClassificationMetrics",
    "ClassificationMetricsHandler",
    "ClassificationPredictionWriter",
    "classification_metrics",
    "rank_auc",
]

logger = logging.getLogger("common.metrics")

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


class ClassificationMetrics:
    """Accumulates probabilities and labels over batches, then computes :func:`classification_metrics`.

    Args:
        num_classes: number of classes ``C``.
        class_names: optional class names for per-class keys (``C > 2``).
    """

    def __init__(self, num_classes: int = 2, class_names: Sequence[str] | None = None) -> None:
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names else None
        self.reset()

    def reset(self) -> None:
        self._prob: list[torch.Tensor] = []
        self._label: list[torch.Tensor] = []

    def __call__(self, y_prob: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: ``y_prob`` ``(B, C)`` probabilities, ``y`` ``(B,)`` labels or ``(B, C)`` one-hot."""
        y_prob = torch.as_tensor(y_prob).detach().cpu().double().reshape(-1, self.num_classes)
        y = torch.as_tensor(y).detach().cpu()
        y = y.reshape(len(y_prob), -1)
        y = y.argmax(dim=1) if y.shape[1] == self.num_classes and self.num_classes > 1 else y[:, 0]
        self._prob.append(y_prob)
        self._label.append(y.long())

    def aggregate(self) -> dict[str, float]:
        if not self._prob:
            raise RuntimeError("ClassificationMetrics.aggregate called before any batch was added.")
        return classification_metrics(
            torch.cat(self._prob), torch.cat(self._label), self.num_classes, class_names=self.class_names
        )


class ClassificationMetricsHandler:
    """Ignite handler: scores an evaluator's predictions, writes a flat JSON file and prints a table.

    At every iteration it reads ``pred`` (class probabilities ``(C,)``) and ``label`` (class index or one-hot) from
    the (decollated) engine output; when the run completes it writes ``{acc, auc, recall, specificity, precision,
    f1, num_samples}`` plus ``extra`` to ``output_file`` atomically (rank 0; NaN written as null), prints a table,
    and stores the numbers in ``engine.state.metrics``.

    Args:
        output_file: the JSON file (e.g. the bundle's ``@output_dir/metrics.json``).
        num_classes: number of classes.
        extra: descriptive entries added to the file (bundle, variant, split...).
        class_names: optional class names for per-class keys (``C > 2``).
        output_transform: maps the engine output to ``(y_prob, y)`` batches; default stacks ``pred``/``label``.
    """

    def __init__(
        self,
        output_file: str,
        num_classes: int = 2,
        extra: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.output_file = output_file
        self.metrics = ClassificationMetrics(num_classes, class_names)
        self.extra = dict(extra or {})
        self.output_transform = output_transform or self._pred_label
        self.results: dict[str, Any] = {}

    @staticmethod
    def _pred_label(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        items = output if isinstance(output, (list, tuple)) else [output]
        return (
            torch.stack([torch.as_tensor(o["pred"]).reshape(-1) for o in items]),
            torch.stack([torch.as_tensor(o["label"]).reshape(-1) for o in items]),
        )

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.metrics.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _update(self, engine: Any) -> None:
        y_prob, y = self.output_transform(engine.state.output)
        self.metrics(y_prob, y)

    def _complete(self, engine: Any) -> None:
        self.write(self.metrics.aggregate(), engine)

    def write(self, results: Mapping[str, Any], engine: Any | None = None) -> dict[str, Any]:
        """Write ``results`` plus ``extra`` to the JSON file and print them (used by the SVM baseline too)."""
        clash = set(results) & set(self.extra)
        if clash:
            raise ValueError(f"extra entries {sorted(clash)} would overwrite metrics.")
        self.results = {**results, **self.extra}
        if engine is not None:
            engine.state.metrics.update({k: v for k, v in results.items() if isinstance(v, float)})
        if is_rank0():
            atomic_write_json(
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.results.items()},
                self.output_file,
            )
            print(format_table(self.results), flush=True)
            logger.info(f"wrote classification metrics to {self.output_file}")
        return self.results


class ClassificationPredictionWriter:
    """Ignite handler for inference: writes each image's class probabilities and arg-max class to a JSON file.

    Reads ``pred`` (probabilities ``(C,)``) from the decollated engine output and the image file names from
    ``engine.state.batch[path_key]``; writes ``{"predictions": [{"image", "probabilities", "pred"}...]}``
    atomically on completion (rank 0).

    Args:
        output_file: the JSON file.
        path_key: batch key holding each sample's image path.
    """

    def __init__(self, output_file: str, path_key: str = "image_path") -> None:
        self.output_file = output_file
        self.path_key = path_key
        self.predictions: list[dict[str, Any]] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.predictions.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _update(self, engine: Any) -> None:
        items = engine.state.output if isinstance(engine.state.output, (list, tuple)) else [engine.state.output]
        batch = engine.state.batch
        if isinstance(batch, dict):
            paths = batch.get(self.path_key)
        elif isinstance(batch, (list, tuple)):  # MONAI engines decollate the batch too
            paths = [b.get(self.path_key) if isinstance(b, dict) else None for b in batch]
        else:
            paths = None
        for i, item in enumerate(items):
            prob = torch.as_tensor(item["pred"]).detach().float().cpu().reshape(-1)
            self.predictions.append(
                {
                    "image": None if paths is None or paths[i] is None else str(paths[i]),
                    "probabilities": [round(float(v), 6) for v in prob],
                    "pred": int(prob.argmax()),
                }
            )

    def _complete(self, engine: Any) -> None:
        if is_rank0():
            atomic_write_json({"predictions": self.predictions}, self.output_file)
            logger.info(f"wrote {len(self.predictions)} predictions to {self.output_file}")
