"""Friedman test and Nemenyi post-hoc test for comparing several methods over several data sets (or seeds).

Vu et al. (paper 004), sec. 3.4 and Tables 2-3: "the Friedman test of equivalence on the evaluated metrics ...
Following Demšar [2006], ... a Nemenyi post-hoc test of pair-wise differences", reported as a direction matrix
(+ ranked significantly higher, - significantly lower, 0 no significant difference) whose row sums score each
method. The procedure (Demšar, "Statistical comparisons of classifiers over multiple data sets", JMLR 2006,
sec. 3.2.2):

- each block (a data set, or a seed of one data set) ranks the ``k`` methods, rank 1 = best, ties get the
  average of the ranks they span; ``R_j`` is the average rank of method ``j`` over the ``N`` blocks;
- Friedman: ``chi2_F = 12 N / (k (k + 1)) * (sum_j R_j^2 - k (k + 1)^2 / 4)``, divided by the tie correction
  ``1 - sum(t^3 - t) / (N k (k^2 - 1))`` (``t``: sizes of the groups of tied values in a block), with ``k - 1``
  degrees of freedom (:func:`scipy.stats.friedmanchisquare`); the Iman-Davenport statistic
  ``F_F = (N - 1) chi2_F / (N (k - 1) - chi2_F)`` with ``(k - 1, (k - 1)(N - 1))`` degrees of freedom is reported
  too (Demšar recommends it as less conservative);
- Nemenyi: two methods differ significantly when ``|R_i - R_j| >= CD = q_alpha sqrt(k (k + 1) / (6 N))``, where
  ``q_alpha`` is the studentized range quantile for ``k`` groups and infinite degrees of freedom divided by
  ``sqrt(2)`` (:data:`scipy.stats.studentized_range`); the pairwise p-value is the studentized range survival
  function at ``sqrt(2) |R_i - R_j| / sqrt(k (k + 1) / (6 N))``.

Metrics where lower is better (HD95, FID, losses) are ranked with ``higher_is_better=False``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

__all__ = [
    "FriedmanResult",
    "NemenyiResult",
    "average_ranks",
    "compare_methods",
    "friedman_test",
    "mean_confidence_interval",
    "nemenyi_critical_difference",
    "nemenyi_q_alpha",
    "nemenyi_test",
    "rank_blocks",
]


def _as_scores(scores: Any) -> np.ndarray:
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"scores must be a 2D table (N blocks, k methods), got shape {arr.shape}.")
    if arr.shape[0] < 1 or arr.shape[1] < 2:
        raise ValueError(f"need at least 1 block and 2 methods, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("scores hold NaN/Inf; drop incomplete blocks first (compare_methods does).")
    return arr


def rank_blocks(scores: Any, higher_is_better: bool = True) -> np.ndarray:
    """Ranks the methods within each block, 1 = best, ties averaged.

    Args:
        scores: table ``(N, k)``: one row per block (data set or seed), one column per method.
        higher_is_better: whether a larger value is better (accuracy, Dice) or worse (HD95, FID).

    Returns:
        ranks ``(N, k)``.
    """
    arr = _as_scores(scores)
    return np.vstack([stats.rankdata(-row if higher_is_better else row, method="average") for row in arr])


def average_ranks(scores: Any, higher_is_better: bool = True) -> np.ndarray:
    """Average rank ``R_j`` of each method over the blocks, shape ``(k,)`` (1 = best)."""
    return rank_blocks(scores, higher_is_better).mean(axis=0)


@dataclass
class FriedmanResult:
    """Result of :func:`friedman_test`.

    Attributes:
        statistic: Friedman ``chi2_F`` (tie-corrected).
        pvalue: its p-value (chi-square, ``k - 1`` degrees of freedom); NaN when every block ties all methods.
        iman_davenport: ``F_F`` statistic, NaN when undefined (``chi2_F == N (k - 1)``).
        iman_davenport_pvalue: its p-value under ``F(k - 1, (k - 1)(N - 1))``.
        average_ranks: ``R_j`` per method (1 = best).
        n_blocks: ``N``.
        n_methods: ``k``.
        higher_is_better: the ranking direction used.
    """

    statistic: float
    pvalue: float
    iman_davenport: float
    iman_davenport_pvalue: float
    average_ranks: list[float]
    n_blocks: int
    n_methods: int
    higher_is_better: bool


def friedman_test(scores: Any, higher_is_better: bool = True) -> FriedmanResult:
    """Friedman test that all methods perform alike (Demšar 2006, sec. 3.2.2; paper 004 sec. 3.4).

    Uses :func:`scipy.stats.friedmanchisquare` for ``k >= 3`` methods; for ``k == 2`` (which scipy refuses) the
    same tie-corrected formula is evaluated here.

    Args:
        scores: table ``(N, k)``: rows are blocks (data sets, or seeds of one data set), columns methods.
        higher_is_better: ranking direction of the metric.

    Returns:
        the statistics, p-values and average ranks.
    """
    arr = _as_scores(scores)
    n, k = arr.shape
    ranks = rank_blocks(arr, higher_is_better)
    mean_ranks = ranks.mean(axis=0)
    oriented = arr if higher_is_better else -arr  # the statistic does not depend on the direction
    if k >= 3 and n >= 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            res = stats.friedmanchisquare(*oriented.T)
        chi2, p = float(res.statistic), float(res.pvalue)
    else:
        ties = sum(float(np.sum(c**3 - c)) for c in (np.unique(r, return_counts=True)[1] for r in ranks))
        correction = 1.0 - ties / (n * k * (k * k - 1))
        raw = 12.0 * n / (k * (k + 1)) * (float(np.sum(mean_ranks**2)) - k * (k + 1) ** 2 / 4.0)
        chi2 = raw / correction if correction > 0 else float("nan")
        p = float(stats.chi2.sf(chi2, k - 1)) if math.isfinite(chi2) else float("nan")
    denom = n * (k - 1) - chi2
    if n > 1 and math.isfinite(chi2) and denom > 0:
        ff = (n - 1) * chi2 / denom
        ff_p = float(stats.f.sf(ff, k - 1, (k - 1) * (n - 1)))
    else:
        ff, ff_p = float("nan"), float("nan")
    return FriedmanResult(
        statistic=chi2,
        pvalue=p,
        iman_davenport=float(ff),
        iman_davenport_pvalue=ff_p,
        average_ranks=[float(r) for r in mean_ranks],
        n_blocks=n,
        n_methods=k,
        higher_is_better=higher_is_better,
    )


def nemenyi_q_alpha(n_methods: int, alpha: float = 0.05) -> float:
    """Nemenyi critical value ``q_alpha``: the studentized range quantile (``k`` groups, infinite degrees of
    freedom) at ``1 - alpha`` divided by ``sqrt(2)`` (Demšar 2006, Table 5a: 2.343 for k = 3, 2.569 for k = 4)."""
    if n_methods < 2:
        raise ValueError(f"need at least 2 methods, got {n_methods}.")
    return float(stats.studentized_range.ppf(1.0 - alpha, n_methods, np.inf) / math.sqrt(2.0))


def nemenyi_critical_difference(n_methods: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Critical difference ``CD = q_alpha sqrt(k (k + 1) / (6 N))`` of average ranks (Demšar 2006, sec. 3.2.2)."""
    if n_blocks < 1:
        raise ValueError(f"need at least 1 block, got {n_blocks}.")
    return nemenyi_q_alpha(n_methods, alpha) * math.sqrt(n_methods * (n_methods + 1) / (6.0 * n_blocks))


@dataclass
class NemenyiResult:
    """Result of :func:`nemenyi_test`.

    Attributes:
        average_ranks: ``R_j`` per method (1 = best).
        critical_difference: ``CD`` at ``alpha``.
        q_alpha: the critical value used.
        pvalues: ``(k, k)`` pairwise p-values (1 on the diagonal).
        directions: ``(k, k)`` matrix, ``+1`` when the row method ranks significantly better than the column
            method, ``-1`` significantly worse, ``0`` otherwise (paper 004, Table 3).
        scores: row sums of ``directions`` (paper 004, Table 2 and the "Score" column of Table 3).
        alpha: significance level.
    """

    average_ranks: list[float]
    critical_difference: float
    q_alpha: float
    pvalues: list[list[float]]
    directions: list[list[int]]
    scores: list[int]
    alpha: float
    n_blocks: int = 0
    n_methods: int = 0


def nemenyi_test(scores: Any, higher_is_better: bool = True, alpha: float = 0.05) -> NemenyiResult:
    """Nemenyi post-hoc test of all pairs of methods on the Friedman ranks (paper 004 sec. 3.4, Tables 2-3).

    Args:
        scores: table ``(N, k)``: rows are blocks, columns methods.
        higher_is_better: ranking direction of the metric.
        alpha: significance level.

    Returns:
        average ranks, critical difference, pairwise p-values, direction matrix and scores.
    """
    arr = _as_scores(scores)
    n, k = arr.shape
    ranks = average_ranks(arr, higher_is_better)
    se = math.sqrt(k * (k + 1) / (6.0 * n))
    diff = ranks[:, None] - ranks[None, :]
    pvalues = stats.studentized_range.sf(np.abs(diff) / se * math.sqrt(2.0), k, np.inf)
    pvalues = np.clip(np.where(diff == 0, 1.0, pvalues), 0.0, 1.0)
    significant = pvalues < alpha
    directions = np.where(significant, np.where(diff < 0, 1, -1), 0).astype(int)  # lower rank = better
    np.fill_diagonal(directions, 0)
    return NemenyiResult(
        average_ranks=[float(r) for r in ranks],
        critical_difference=nemenyi_critical_difference(k, n, alpha),
        q_alpha=nemenyi_q_alpha(k, alpha),
        pvalues=pvalues.tolist(),
        directions=directions.tolist(),
        scores=[int(s) for s in directions.sum(axis=1)],
        alpha=alpha,
        n_blocks=n,
        n_methods=k,
    )


def compare_methods(
    table: Mapping[str, Mapping[str, float]] | Mapping[str, Sequence[float]],
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Friedman + Nemenyi on a ``{method: {block: value}}`` (or ``{method: [values per block]}``) table.

    Blocks where some method has no finite value are dropped (their names are listed under ``dropped_blocks``),
    so every remaining block ranks all methods.

    Args:
        table: metric values per method and block.
        higher_is_better: ranking direction of the metric.
        alpha: significance level of the Nemenyi test.

    Returns:
        a JSON-serialisable dict: ``methods``, ``blocks``, ``dropped_blocks``, ``friedman`` (as
        :class:`FriedmanResult`), ``nemenyi`` (as :class:`NemenyiResult`), or an ``error`` when fewer than two
        methods or no complete block remain.
    """
    methods = list(table)
    as_maps: dict[str, dict[str, float]] = {}
    for m in methods:
        vals = table[m]
        as_maps[m] = (
            {str(b): float(v) for b, v in vals.items()}
            if isinstance(vals, Mapping)
            else {str(i): float(v) for i, v in enumerate(vals)}
        )
    blocks: list[str] = []
    for m in methods:
        blocks.extend(b for b in as_maps[m] if b not in blocks)
    complete = [b for b in blocks if all(math.isfinite(as_maps[m].get(b, float("nan"))) for m in methods)]
    dropped = [b for b in blocks if b not in complete]
    out: dict[str, Any] = {
        "methods": methods,
        "blocks": complete,
        "dropped_blocks": dropped,
        "higher_is_better": higher_is_better,
        "alpha": alpha,
    }
    if len(methods) < 2 or not complete:
        out["error"] = f"need >= 2 methods and >= 1 complete block (methods {len(methods)}, blocks {len(complete)})"
        return out
    scores = np.array([[as_maps[m][b] for m in methods] for b in complete])
    out["friedman"] = asdict(friedman_test(scores, higher_is_better))
    out["nemenyi"] = asdict(nemenyi_test(scores, higher_is_better, alpha))
    return out


def mean_confidence_interval(
    values: Sequence[float] | np.ndarray | torch.Tensor, confidence: float = 0.95
) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean (NaN values are left out).

    Args:
        values: ``(n,)`` per-sample values (e.g. per-image accuracies).
        confidence: the coverage of the interval (0.95: Table II's 95 % interval).

    Returns:
        ``(mean, half_width)``: the interval is ``mean ± half_width``; the half-width is NaN with fewer than two
        values, the mean NaN with none.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    v = torch.as_tensor(values, dtype=torch.float64).flatten().cpu().numpy()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan
    sem = float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * sem)
