"""Test-set sizing against textbook values (Cohen 1988 tables, G*Power's exact t-test sizes; Hanley & McNeil)."""

import math

import pytest
from common.experiments.sizing import (
    auc_minimum_detectable_difference,
    auc_sample_size,
    hanley_mcneil_se,
    minimum_detectable_difference,
    paired_sample_size,
    t_test_power,
    two_sample_size,
)


@pytest.mark.parametrize(
    "effect, paired, n",
    [(0.5, True, 34), (0.2, True, 199), (0.8, True, 15), (0.5, False, 64), (0.8, False, 26), (0.2, False, 394)],
)
def test_t_test_sizes_are_the_textbook_values(effect, paired, n):
    """alpha 0.05 two-sided, power 0.8: d = 0.2 / 0.5 / 0.8 need 394 / 64 / 26 per group (Cohen 1988, Table 2.4.1)
    and d_z = 0.2 / 0.5 / 0.8 need 199 / 34 / 15 pairs (exact noncentral t)."""
    size = paired_sample_size if paired else two_sample_size
    assert size(1.0, effect) == n
    assert size(2.0, 2 * effect) == n  # only delta / sd matters
    assert t_test_power(effect, n, paired) >= 0.8 > t_test_power(effect, n - 1, paired)


def test_minimum_detectable_difference_inverts_the_size():
    assert minimum_detectable_difference(1.0, 34) == pytest.approx(0.495, abs=1e-3)  # just below d_z = 0.5
    assert minimum_detectable_difference(1.0, 64, paired=False) == pytest.approx(0.499, abs=1e-3)
    # large n: the normal approximation (1.96 + 0.8416) sd / sqrt(n)
    assert minimum_detectable_difference(0.1, 1000) == pytest.approx(2.8016 * 0.1 / math.sqrt(1000), rel=2e-3)
    assert minimum_detectable_difference(0.0, 10) == 0.0
    assert t_test_power(minimum_detectable_difference(1.0, 5), 5) == pytest.approx(0.8, abs=1e-6)


def test_hanley_mcneil_standard_error():
    # AUC 0.5: the Mann-Whitney null variance (n_pos + n_neg + 1) / (12 n_pos n_neg)
    assert hanley_mcneil_se(0.5, 10, 20) ** 2 == pytest.approx(31 / (12 * 10 * 20))
    # AUC 0.8, 80 + 80 by hand: Q1 = 0.8 / 1.2, Q2 = 1.28 / 1.8
    q1, q2 = 0.8 / 1.2, 1.28 / 1.8
    var = (0.16 + 79 * (q1 - 0.64) + 79 * (q2 - 0.64)) / 6400
    assert hanley_mcneil_se(0.8, 80, 80) == pytest.approx(math.sqrt(var))
    assert hanley_mcneil_se(1.0, 5, 5) == 0.0


def test_auc_sizes():
    n_pos, n_neg = auc_sample_size(0.8, 0.1)
    assert n_pos == n_neg
    # the size is the smallest that detects 0.1: its minimum detectable difference is at most 0.1, one less is not
    assert auc_minimum_detectable_difference(0.8, n_pos, n_neg) <= 0.1
    assert auc_minimum_detectable_difference(0.8, n_pos - 1, n_neg - 1) > 0.1
    # correlated AUCs (same cases) need fewer cases; twice as many negatives, fewer positives
    assert auc_sample_size(0.8, 0.1, correlation=0.5)[0] < n_pos
    pos2, neg2 = auc_sample_size(0.8, 0.1, negatives_per_positive=2.0)
    assert pos2 < n_pos and neg2 == 2 * pos2
    # 3 + 3 cases cannot show any improvement over 0.8
    assert auc_minimum_detectable_difference(0.8, 3, 3) == math.inf
    with pytest.raises(ValueError, match="auc \\+ delta"):
        auc_sample_size(0.95, 0.1)
