"""Bootstrap confidence intervals of a test-set metric, resampling the test cases (or their patients).

A table's metric is a statistic of the test cases: a mean of per-case values (Dice of each image, 0/1 correctness),
an AUC of per-case scores and labels, or a ratio of confusion counts (recall, precision, F1). Its uncertainty due to
the finite test set is estimated by the nonparametric bootstrap (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13, the percentile interval): the test set is drawn with replacement ``B`` times, the statistic
is computed on each draw, and the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the ``B``
values are the interval.

- **Resampling unit**: slices of one patient are not independent (same anatomy, same tumour), so when the cases
  carry a patient (``groups``) the draw is of patients, each drawn patient bringing all its cases (the cluster
  bootstrap, Davison & Hinkley, "Bootstrap Methods and their Application", 1997, sec. 3.8); without ``groups`` every
  case is its own unit. :attr:`BootstrapCI.unit` says which.
- **Several training seeds**: the runs of one method share the fixed test set, so a draw of patients is applied to
  every seed's predictions together (``values`` of shape ``(S, N)``), the statistic is computed per seed and averaged
  over the seeds: the interval is that of the tables' seed-mean under test-set resampling. Pooling the ``S * N``
  predictions as independent cases would shrink the interval by about ``sqrt(S)`` for cases that are in fact the
  same; a mean of per-seed intervals would describe one run, not the seed-mean in the table. The spread due to the
  seeds (training randomness) stays in the tables' ``± err``.
- **Implementation**: a draw is a vector of multiplicities, one per unit (multinomial, ``n_units`` draws with equal
  probabilities), spread to the cases of each unit; the statistics are weighted sums, so all ``B`` draws are
  computed at once in numpy (in chunks). Draws where the statistic is undefined (an AUC without a positive or a
  negative case, a mean without a finite value) are left out and :attr:`BootstrapCI.n_resamples` counts the ones used.
- NaN per-case values are cases the metric leaves out (e.g. Dice of an image with an empty ground truth), with weight
  0; the same in AUC scores (a seed that did not score a case).

Seeded (``numpy.random.default_rng(seed)``): the same inputs and seed give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from common.metrics.detection import CPM_FP_RATES, sensitivity_at_fp_rates

__all__ = [
    "BINARY_METRICS",
    "BootstrapCI",
    "bootstrap_auc_ci",
    "bootstrap_binary_ci",
    "bootstrap_ci",
    "bootstrap_cis",
    "bootstrap_cpm_ci",
    "bootstrap_mean_ci",
    "resample_weights",
]

BINARY_METRICS = ("acc", "recall", "specificity", "precision", "f1")
"""Confusion-count metrics of a binary classifier (:func:`bootstrap_binary_ci`); undefined ratios count 0, as in
:func:`common.metrics.classification_metrics`."""


@dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap confidence interval.

    Attributes:
        estimate: the statistic on the test set as it is (every case once).
        low: lower bound.
        high: upper bound.
        confidence: the interval's level, e.g. 0.95.
        n_resamples: draws used (those where the statistic is defined).
        n_cases: test cases.
        n_units: resampling units (patients, or cases).
        unit: ``"patients"`` (``groups`` given) or ``"cases"``.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_cases: int
    n_units: int
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group_index(n_cases: int, groups: Sequence[Any] | None) -> tuple[np.ndarray, int]:
    """``(index of each case's unit (N,), number of units)``."""
    if groups is None:
        return np.arange(n_cases), n_cases
    if len(groups) != n_cases:
        raise ValueError(f"groups names {len(groups)} cases, the values {n_cases}.")
    _, index = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    return index.reshape(-1), int(index.max()) + 1 if n_cases else 0


def resample_weights(
    n_cases: int, groups: Sequence[Any] | None, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Case weights of ``n_resamples`` bootstrap draws: how often each case's unit was drawn.

    Args:
        n_cases: ``N`` test cases.
        groups: ``(N,)`` unit (patient) of each case, ``None``: each case its own unit.
        n_resamples: ``B`` draws.
        rng: the random generator.

    Returns:
        ``(B, N)`` float weights; each row's unit multiplicities sum to the number of units.
    """
    index, n_units = _group_index(n_cases, groups)
    counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_resamples)
    return counts[:, index].astype(float)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_cases: int,
    groups: Sequence[Any] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
) -> BootstrapCI:
    """Percentile bootstrap interval of a statistic of weighted test cases (see the module docstring).

    Args:
        statistic: maps case weights ``(b, N)`` to ``(b,)`` values (NaN where undefined).
        n_cases: ``N``.
        groups: ``(N,)`` patient of each case (resampled as units), or ``None``.
        n_resamples: ``B`` draws.
        confidence: level of the interval, in ``(0, 1)``.
        seed: seed of the draws.
        chunk: draws computed at once (memory ``chunk * N`` floats per array).

    Returns:
        the interval; ``low = high = NaN`` when no draw gives a defined statistic.

    Raises:
        ValueError: for no cases, ``n_resamples < 1`` or a confidence outside ``(0, 1)``.
    """
    return bootstrap_cis(
        lambda w: np.asarray(statistic(w), dtype=float)[:, None], n_cases, groups, n_resamples, confidence, seed, chunk
    )[0]


def bootstrap_cis(
    statistics: Callable[[np.ndarray], np.ndarray],
    n_cases: int,
    groups: Sequence[Any] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
) -> list[BootstrapCI]:
    """:func:`bootstrap_ci` of ``K`` statistics computed together on the same draws (e.g. the CPM and the
    sensitivity at each of its FP rates).

    Args:
        statistics: maps case weights ``(b, N)`` to ``(b, K)`` values (NaN where undefined).
        n_cases / groups / n_resamples / confidence / seed / chunk: as :func:`bootstrap_ci`.

    Returns:
        ``K`` intervals, in the order of the statistics' columns; each counts its own defined draws.
    """
    if n_cases < 1:
        raise ValueError("the bootstrap needs at least one test case.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    estimates = np.asarray(statistics(np.ones((1, n_cases))), dtype=float)[0]
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_resamples, chunk):
        weights = resample_weights(n_cases, groups, min(chunk, n_resamples - start), rng)
        values.append(np.asarray(statistics(weights), dtype=float).reshape(len(weights), -1))
    table = np.concatenate(values)
    alpha = (1.0 - confidence) / 2.0
    _, n_units = _group_index(n_cases, groups)
    out = []
    for k, estimate in enumerate(estimates):
        stats = table[:, k][np.isfinite(table[:, k])]
        low, high = (float(q) for q in np.quantile(stats, [alpha, 1.0 - alpha])) if stats.size else (np.nan, np.nan)
        out.append(
            BootstrapCI(
                estimate=float(estimate),
                low=low,
                high=high,
                confidence=confidence,
                n_resamples=int(stats.size),
                n_cases=n_cases,
                n_units=n_units,
                unit="cases" if groups is None else "patients",
            )
        )
    return out


def _seeds_by_cases(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be (N,) or (S seeds, N cases), got shape {arr.shape}.")
    return arr


def _mean_over_seeds(per_seed: list[np.ndarray]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.mean(np.stack(per_seed), axis=0)  # NaN when a seed's statistic is undefined


def bootstrap_mean_ci(values: Any, groups: Sequence[Any] | None = None, **kwargs: Any) -> BootstrapCI:
    """Interval of a mean of per-case values (Dice per image, 0/1 correctness), averaged over seeds.

    Args:
        values: ``(N,)`` or ``(S, N)`` (seeds x cases); NaN: a case the metric leaves out.
        groups: ``(N,)`` patient of each case, or ``None``.
        kwargs: :func:`bootstrap_ci`'s ``n_resamples``, ``confidence``, ``seed``, ``chunk``.
    """
    arr = _seeds_by_cases(values, "values")
    finite = np.isfinite(arr)
    filled = np.where(finite, arr, 0.0)

    def statistic(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return _mean_over_seeds([(w @ filled[s]) / (w @ finite[s]) for s in range(arr.shape[0])])

    return bootstrap_ci(statistic, arr.shape[1], groups, **kwargs)


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels, dtype=float).reshape(-1)
    if y.size != n:
        raise ValueError(f"{y.size} labels for {n} cases.")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError(f"labels must be 0 or 1, got {sorted(set(y.tolist()))[:5]}.")
    return y.astype(bool)


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of weighted cases, ``(b,)``: P(score of a positive > score of a negative), ties 1/2."""
    keep = np.isfinite(scores)
    s, pos, w = scores[keep], positive[keep], w[:, keep]
    order = np.argsort(s, kind="stable")
    s, pos, w = s[order], pos[order], w[:, order]
    wp, wn = w * pos, w * ~pos
    # tie groups of equal scores: cumulative weights at each group's end
    ends = np.append(np.flatnonzero(np.diff(s) != 0), s.size - 1)
    cum_n = np.cumsum(wn, axis=1)[:, ends]
    cum_p = np.cumsum(wp, axis=1)[:, ends]
    n_group = np.diff(cum_n, axis=1, prepend=0.0)
    p_group = np.diff(cum_p, axis=1, prepend=0.0)
    n_below = cum_n - n_group
    total_p, total_n = cum_p[:, -1], cum_n[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (p_group * (n_below + 0.5 * n_group)).sum(axis=1) / (total_p * total_n)
    return np.where((total_p > 0) & (total_n > 0), auc, np.nan)


def bootstrap_auc_ci(scores: Any, labels: Any, groups: Sequence[Any] | None = None, **kwargs: Any) -> BootstrapCI:
    """Interval of the AUC (CDA-GAN eq. 14, :func:`common.metrics.rank_auc`), averaged over seeds.

    Args:
        scores: ``(N,)`` or ``(S, N)`` scores of the positive class (higher: more positive); NaN: not scored.
        labels: ``(N,)`` binary labels (1 positive), the same for every seed.
        groups: ``(N,)`` patient of each case, or ``None``.
        kwargs: :func:`bootstrap_ci`'s ``n_resamples``, ``confidence``, ``seed``, ``chunk``.
    """
    arr = _seeds_by_cases(scores, "scores")
    positive = _labels(labels, arr.shape[1])

    def statistic(w: np.ndarray) -> np.ndarray:
        return _mean_over_seeds([_weighted_auc(arr[s], positive, w) for s in range(arr.shape[0])])

    return bootstrap_ci(statistic, arr.shape[1], groups, **kwargs)


def _binary_metric(metric: str, pred: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    keep = np.isfinite(pred)
    p, y, w = pred[keep] > 0.5, positive[keep], w[:, keep]
    tp, fp = w @ (p & y), w @ (p & ~y)
    fn, tn = w @ (~p & y), w @ (~p & ~y)
    total = tp + fp + fn + tn
    num, den = {
        "acc": (tp + tn, total),
        "recall": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "precision": (tp, tp + fp),
        "f1": (2 * tp, 2 * tp + fp + fn),
    }[metric]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)  # undefined ratio: 0, as the metric
    return np.where(total > 0, value, np.nan)


def bootstrap_binary_ci(
    metric: str, predictions: Any, labels: Any, groups: Sequence[Any] | None = None, **kwargs: Any
) -> BootstrapCI:
    """Interval of a confusion-count metric of a binary classifier (:data:`BINARY_METRICS`), averaged over seeds.

    Args:
        metric: one of :data:`BINARY_METRICS`.
        predictions: ``(N,)`` or ``(S, N)``: predicted class (0/1), or the positive-class probability (class 1
            when above 0.5, the arg-max of two probabilities); NaN: not scored.
        labels: ``(N,)`` binary labels.
        groups: ``(N,)`` patient of each case, or ``None``.
        kwargs: :func:`bootstrap_ci`'s ``n_resamples``, ``confidence``, ``seed``, ``chunk``.

    Raises:
        ValueError: for an unknown metric.
    """
    if metric not in BINARY_METRICS:
        raise ValueError(f"metric must be one of {BINARY_METRICS}, got {metric!r}.")
    arr = _seeds_by_cases(predictions, "predictions")
    positive = _labels(labels, arr.shape[1])

    def statistic(w: np.ndarray) -> np.ndarray:
        return _mean_over_seeds([_binary_metric(metric, arr[s], positive, w) for s in range(arr.shape[0])])

    return bootstrap_ci(statistic, arr.shape[1], groups, **kwargs)


def bootstrap_cpm_ci(
    runs: Sequence[Sequence[Mapping[str, Any]]],
    fp_rates: Sequence[float] | None = None,
    mode: str = "luna16",
    groups: Sequence[Any] | None = None,
    **kwargs: Any,
) -> dict[str, BootstrapCI]:
    """Intervals of the CPM and of the sensitivity at each FP rate, averaged over seeds, under resampling of the
    test scans (or slices, or their patients).

    Each run (one seed) gives the per-image matches of the same test images in the same order
    (:func:`common.metrics.detection.froc_matches`). A draw weights each image by how often it was drawn: its
    detections and nodules count that many times and so does the image in the FPs per image, which is the FROC of
    the resampled set (the LUNA16 bootstrap of :func:`common.metrics.detection.cpm_bootstrap`, for several seeds at
    once); the sensitivities are read at ``fp_rates`` per seed (``mode``) and averaged over the seeds, the CPM is
    their mean over the rates. The estimate is the seeds' mean CPM of the test set as it is.

    Args:
        runs: ``S`` runs of ``N`` per-image matches each (``scores``, ``tp``, ``fp``, ``num_gt``).
        fp_rates: the FP rates (the CPM's seven by default).
        mode: ``"luna16"`` or ``"step"`` (:func:`common.metrics.detection.sensitivity_at_fp_rates`).
        groups: ``(N,)`` patient of each image, or ``None`` (each image its own unit).
        kwargs: :func:`bootstrap_ci`'s ``n_resamples``, ``confidence``, ``seed``, ``chunk``.

    Returns:
        ``{"cpm": interval, "sens@<rate>": interval, ...}``; NaN bounds where no draw holds a nodule.

    Raises:
        ValueError: no run, runs of different lengths.
    """
    rates = [float(r) for r in (CPM_FP_RATES if fp_rates is None else fp_rates)]
    if not runs:
        raise ValueError("bootstrap_cpm_ci needs at least one run.")
    n = len(runs[0])
    if any(len(r) != n for r in runs):
        raise ValueError(f"every run must match the same test images: got {[len(r) for r in runs]} images.")
    if n < 1:
        raise ValueError("the bootstrap needs at least one test case.")
    prepared = []
    for run in runs:
        scores, tp, fp = (np.concatenate([np.asarray(m[k], dtype=float) for m in run]) for k in ("scores", "tp", "fp"))
        index = np.repeat(np.arange(n), [len(m["scores"]) for m in run])  # the image of each detection
        order = np.argsort(-scores, kind="stable")
        scores, tp, fp, index = scores[order], tp[order], fp[order], index[order]
        last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
        num_gt = np.asarray([m["num_gt"] for m in run], dtype=float)
        prepared.append((index, tp, fp, last, num_gt))

    def statistics(w: np.ndarray) -> np.ndarray:
        per_seed = []
        for index, tp, fp, last, num_gt in prepared:
            wd = w[:, index]
            ctp, cfp = np.cumsum(wd * tp, 1)[:, last], np.cumsum(wd * fp, 1)[:, last]
            gts, images = w @ num_gt, w.sum(1)
            sens = np.full((len(w), len(rates)), np.nan)
            for b in range(len(w)):
                if gts[b] > 0:
                    curve = np.r_[0.0, ctp[b] / gts[b]]
                    fps = np.r_[0.0, cfp[b] / images[b]]
                    sens[b] = sensitivity_at_fp_rates(fps, curve, rates, mode)
            per_seed.append(sens)
        mean = _mean_over_seeds(per_seed)
        return np.concatenate([mean.mean(1, keepdims=True), mean], 1)

    cis = bootstrap_cis(statistics, n, groups, **kwargs)
    return dict(zip(["cpm"] + [f"sens@{r:g}" for r in rates], cis))
