"""Friedman / Nemenyi against values computed by hand (Demšar 2006; paper 004 sec. 3.4)."""

import math

import numpy as np
import pytest
from common.metrics.statistics import (
    average_ranks,
    compare_methods,
    friedman_test,
    nemenyi_critical_difference,
    nemenyi_q_alpha,
    nemenyi_test,
    rank_blocks,
)
from scipy import stats

# 3 methods (A, B, C) x 4 data sets, higher is better; data set 3 ties B and C.
TABLE = np.array(
    [
        [0.90, 0.80, 0.70],  # ranks 1, 2, 3
        [0.85, 0.86, 0.70],  # ranks 2, 1, 3
        [0.90, 0.70, 0.70],  # ranks 1, 2.5, 2.5
        [0.95, 0.90, 0.80],  # ranks 1, 2, 3
    ]
)


def test_ranks_with_ties_by_hand():
    np.testing.assert_allclose(rank_blocks(TABLE)[2], [1.0, 2.5, 2.5])
    # rank sums A = 1+2+1+1 = 5, B = 2+1+2.5+2 = 7.5, C = 3+3+2.5+3 = 11.5, over N = 4
    np.testing.assert_allclose(average_ranks(TABLE), [1.25, 1.875, 2.875])
    # lower is better (e.g. HD95): the order reverses
    np.testing.assert_allclose(average_ranks(TABLE, higher_is_better=False), [2.75, 2.125, 1.125])


def test_friedman_by_hand():
    n, k = 4, 3
    res = friedman_test(TABLE)
    # sum R^2 = 1.25^2 + 1.875^2 + 2.875^2 = 13.34375; k (k+1)^2 / 4 = 12
    # chi2 (no tie correction) = 12 N / (k (k+1)) * (13.34375 - 12) = 4 * 1.34375 = 5.375
    # tie correction: one tied pair, t^3 - t = 6: C = 1 - 6 / (N k (k^2 - 1)) = 1 - 6/96 = 0.9375
    chi2 = 5.375 / 0.9375  # 5.7333...
    assert res.statistic == pytest.approx(chi2, rel=1e-9)
    # chi-square with k - 1 = 2 degrees of freedom: sf(x) = exp(-x / 2)
    assert res.pvalue == pytest.approx(math.exp(-chi2 / 2), rel=1e-9)
    # Iman-Davenport F = (N-1) chi2 / (N (k-1) - chi2)
    ff = 3 * chi2 / (8 - chi2)
    assert res.iman_davenport == pytest.approx(ff, rel=1e-9)
    assert res.iman_davenport_pvalue == pytest.approx(stats.f.sf(ff, 2, 6), rel=1e-9)
    assert (res.n_blocks, res.n_methods) == (n, k)
    np.testing.assert_allclose(res.average_ranks, [1.25, 1.875, 2.875])
    # the statistic is the same whichever direction the metric is read in
    assert friedman_test(TABLE, higher_is_better=False).statistic == pytest.approx(chi2)


def test_friedman_two_methods_uses_the_same_formula():
    # 2 methods, 3 blocks, A always best: R = (1, 2); chi2 = 12*3/(2*3) * (1 + 4 - 2*9/4) = 6 * 0.5 = 3
    res = friedman_test([[2.0, 1.0], [3.0, 2.0], [5.0, 4.0]])
    assert res.statistic == pytest.approx(3.0)
    assert res.pvalue == pytest.approx(stats.chi2.sf(3.0, 1))


def test_nemenyi_critical_difference_by_hand():
    # Demšar 2006, Table 5(a): q_0.05 = 2.343 (k = 3), 2.569 (k = 4), 2.728 (k = 5)
    assert nemenyi_q_alpha(3) == pytest.approx(2.343, abs=1e-3)
    assert nemenyi_q_alpha(4) == pytest.approx(2.569, abs=1e-3)
    assert nemenyi_q_alpha(5) == pytest.approx(2.728, abs=1e-3)
    # CD = q sqrt(k (k+1) / (6 N)) = 2.3437 * sqrt(12 / 24)
    assert nemenyi_critical_difference(3, 4) == pytest.approx(nemenyi_q_alpha(3) * math.sqrt(0.5), rel=1e-12)
    assert nemenyi_critical_difference(3, 4) == pytest.approx(1.657, abs=1e-3)


def test_nemenyi_directions_and_scores():
    # 10 blocks, A > B > C always: R = (1, 2, 3), CD = 2.3437 * sqrt(12 / 60) = 1.048
    table = np.array([[3.0 + i, 2.0 + i, 1.0 + i] for i in range(10)])
    res = nemenyi_test(table)
    assert res.critical_difference == pytest.approx(nemenyi_q_alpha(3) * math.sqrt(0.2))
    assert res.critical_difference == pytest.approx(1.048, abs=1e-3)
    # |R_A - R_C| = 2 > CD: significant; |R_A - R_B| = |R_B - R_C| = 1 < CD: not
    assert res.directions == [[0, 0, 1], [0, 0, 0], [-1, 0, 0]]
    assert res.scores == [1, 0, -1]
    p = np.array(res.pvalues)
    assert p[0, 2] < 0.05 < p[0, 1]
    np.testing.assert_allclose(p, p.T)
    # p-value of a difference equal to CD is alpha: the studentized range at q_alpha * sqrt(2)
    z = 1.0 / math.sqrt(0.2) * math.sqrt(2)
    assert p[0, 1] == pytest.approx(stats.studentized_range.sf(z, 3, np.inf))
    # lower is better: the directions flip
    assert nemenyi_test(table, higher_is_better=False).scores == [-1, 0, 1]


def test_compare_methods_drops_incomplete_blocks():
    table = {
        "A": {"d1": 0.9, "d2": 0.85, "d3": 0.9, "d4": 0.95, "d5": 0.5},
        "B": {"d1": 0.8, "d2": 0.86, "d3": 0.7, "d4": 0.9, "d5": float("nan")},
        "C": {"d1": 0.7, "d2": 0.70, "d3": 0.7, "d4": 0.8},
    }
    out = compare_methods(table)
    assert out["blocks"] == ["d1", "d2", "d3", "d4"]
    assert out["dropped_blocks"] == ["d5"]
    assert out["friedman"]["statistic"] == pytest.approx(5.375 / 0.9375)
    assert out["nemenyi"]["average_ranks"] == pytest.approx([1.25, 1.875, 2.875])
    assert "error" in compare_methods({"A": {"d1": 1.0}})
