"""Test-set sizing: how many test cases a grid needs to detect a given difference between two methods, and the
smallest difference its actual test set detects.

A grid compares methods on one fixed held-out test set, so the question is that of a two-sided test at level
``alpha`` with power ``power`` (default 0.05 and 0.8, Cohen, "Statistical Power Analysis for the Behavioral
Sciences", 2nd ed., 1988, ch. 2):

- **mean-type metric** (Dice per image, per-patient accuracy), methods scored on the same cases: the paired t-test
  on the per-case differences, whose standard deviation is ``sd_diff``; the power is that of the noncentral t
  distribution with ``n - 1`` degrees of freedom and noncentrality ``delta sqrt(n) / sd_diff``
  (:func:`paired_sample_size`). Without an estimate of ``sd_diff``, :func:`two_sample_size` (independent samples,
  standard deviation ``sd`` in each, ``2 n - 2`` degrees of freedom, noncentrality ``delta / (sd sqrt(2 / n))``)
  is the conservative bound (pairing only helps when the methods' errors are positively correlated).
- **AUC**: Hanley & McNeil (Radiology 143, 1982, eq. 2) give the standard error of an AUC ``A`` from ``n_pos``
  positive and ``n_neg`` negative cases, ``SE^2 = (A (1 - A) + (n_pos - 1) (Q1 - A^2) + (n_neg - 1) (Q2 - A^2)) /
  (n_pos n_neg)`` with ``Q1 = A / (2 - A)``, ``Q2 = 2 A^2 / (1 + A)``; two AUCs ``A`` and ``A + delta`` measured on
  the same cases differ with ``SE_diff^2 = SE_1^2 + SE_2^2 - 2 r SE_1 SE_2`` (Hanley & McNeil, Radiology 148, 1983),
  ``r`` their correlation (0: independent sets, the conservative default), and the z-test detects ``delta`` when
  ``delta >= (z_{1 - alpha/2} + z_power) SE_diff`` (:func:`auc_sample_size`).

Slices of one patient are correlated: ``n`` counts independent units, i.e. patients when the per-case values are
first averaged per patient (what :mod:`common.experiments.report` does for its minimum-detectable-difference line).
"""

from __future__ import annotations

import math

from scipy import optimize, stats

__all__ = [
    "auc_minimum_detectable_difference",
    "auc_sample_size",
    "hanley_mcneil_se",
    "minimum_detectable_difference",
    "paired_sample_size",
    "t_test_power",
    "two_sample_size",
]

_MAX_N = 10**7


def _check(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}.")


def t_test_power(effect: float, n: int, paired: bool = True, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test for a standardised difference ``effect`` (``delta / sd``).

    Args:
        effect: ``delta / sd_diff`` (paired) or ``delta / sd`` (two samples).
        n: cases (paired) or cases per group (two samples), at least 2.
        paired: paired (one-sample t on the differences) or two independent samples of ``n``.
        alpha: significance level.

    Returns:
        the probability of rejecting the null hypothesis when the difference is ``effect``.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}.")
    df = n - 1 if paired else 2 * n - 2
    nc = effect * math.sqrt(n) if paired else effect / math.sqrt(2.0 / n)
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    power = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    return power if math.isfinite(power) else float(abs(nc) > crit)  # scipy's nct is NaN far in the tail


def _smallest_n(effect: float, paired: bool, alpha: float, power: float) -> int:
    _check(alpha, power)
    if not effect > 0 or not math.isfinite(effect):
        raise ValueError(f"the difference and the standard deviation must be positive, got effect {effect}.")
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    n = max(2, math.floor((z / effect) ** 2 * (1 if paired else 2)) - 2)  # the normal approximation, from below
    while t_test_power(effect, n, paired, alpha) < power:
        n += 1
        if n > _MAX_N:
            raise ValueError(f"more than {_MAX_N} cases needed for effect {effect}.")
    return n


def paired_sample_size(sd_diff: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Test cases a paired t-test needs to detect a mean difference ``delta`` (e.g. 0.03 Dice).

    Args:
        sd_diff: standard deviation of the per-case differences between the two methods.
        delta: the difference to detect, in the metric's units.
        alpha: two-sided significance level.
        power: the probability of detecting it.

    Returns:
        the smallest ``n`` whose power reaches ``power`` (Cohen's ``d_z = 0.5``: 34).
    """
    return _smallest_n(delta / sd_diff, True, alpha, power)


def two_sample_size(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Test cases per method a two-sample t-test needs to detect ``delta`` (Cohen's ``d = 0.5``: 64).

    Args:
        sd: standard deviation of the per-case values of each method.
        delta: the difference to detect.
        alpha: two-sided significance level.
        power: the probability of detecting it.
    """
    return _smallest_n(delta / sd, False, alpha, power)


def minimum_detectable_difference(
    sd: float, n: int, paired: bool = True, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest difference the t-test detects with ``n`` cases (the inverse of the sizes above).

    Args:
        sd: ``sd_diff`` (paired) or the per-method ``sd`` (two samples).
        n: cases (paired) or cases per method, at least 2.
        paired: which test.
        alpha: two-sided significance level.
        power: the probability of detecting it.

    Returns:
        ``delta`` in the metric's units; 0 when ``sd`` is 0.
    """
    _check(alpha, power)
    if sd < 0 or n < 2:
        raise ValueError(f"sd must be non-negative and n at least 2, got {sd} and {n}.")
    if sd == 0:
        return 0.0
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    top = 20.0 * z * math.sqrt((1.0 if paired else 2.0) / n)  # far above the normal approximation's effect
    effect = optimize.brentq(lambda e: t_test_power(e, n, paired, alpha) - power, 1e-9, top, xtol=1e-12)
    return float(effect * sd)


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC from ``n_pos`` positive and ``n_neg`` negative cases (Hanley & McNeil 1982, eq. 2).

    At ``auc = 0.5`` it equals the Mann-Whitney null variance ``(n_pos + n_neg + 1) / (12 n_pos n_neg)``.
    """
    if not 0.0 <= auc <= 1.0 or n_pos < 1 or n_neg < 1:
        raise ValueError(f"need 0 <= auc <= 1 and one case of each class, got {auc}, {n_pos}, {n_neg}.")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _auc_se_diff(auc: float, delta: float, n_pos: int, n_neg: int, correlation: float) -> float:
    se1 = hanley_mcneil_se(auc, n_pos, n_neg)
    se2 = hanley_mcneil_se(min(auc + delta, 1.0), n_pos, n_neg)
    return math.sqrt(max(se1**2 + se2**2 - 2.0 * correlation * se1 * se2, 0.0))


def auc_sample_size(
    auc: float,
    delta: float,
    negatives_per_positive: float = 1.0,
    alpha: float = 0.05,
    power: float = 0.8,
    correlation: float = 0.0,
) -> tuple[int, int]:
    """Positive and negative test cases needed to detect an AUC improvement from ``auc`` to ``auc + delta``.

    Args:
        auc: the baseline's AUC.
        delta: the improvement to detect (``auc + delta <= 1``).
        negatives_per_positive: class ratio of the test set.
        alpha: two-sided significance level.
        power: the probability of detecting it.
        correlation: correlation of the two AUCs (same cases: typically 0.3-0.6; 0 is conservative).

    Returns:
        ``(n_pos, n_neg)``.
    """
    _check(alpha, power)
    if not delta > 0 or auc + delta > 1.0:
        raise ValueError(f"need 0 < delta and auc + delta <= 1, got auc {auc}, delta {delta}.")
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)

    def counts(n_pos: int) -> tuple[int, int]:
        return n_pos, max(1, math.ceil(negatives_per_positive * n_pos))

    def detects(n_pos: int) -> bool:
        return z * _auc_se_diff(auc, delta, *counts(n_pos), correlation) <= delta

    low, high = 1, 2
    while not detects(high):
        low, high = high, high * 2
        if high > _MAX_N:
            raise ValueError(f"more than {_MAX_N} positive cases needed for delta {delta}.")
    while high - low > 1:  # the standard error falls with n: bisect
        mid = (low + high) // 2
        low, high = (low, mid) if detects(mid) else (mid, high)
    return counts(high if not detects(low) else low)


def auc_minimum_detectable_difference(
    auc: float, n_pos: int, n_neg: int, alpha: float = 0.05, power: float = 0.8, correlation: float = 0.0
) -> float:
    """The smallest AUC improvement over ``auc`` that ``n_pos`` + ``n_neg`` test cases detect.

    Returns:
        ``delta``; ``inf`` when even an improvement to AUC 1 is not detectable.
    """
    _check(alpha, power)
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)

    def gap(delta: float) -> float:
        return delta - z * _auc_se_diff(auc, delta, n_pos, n_neg, correlation)

    top = 1.0 - auc
    if top <= 0 or gap(top) < 0:
        return math.inf
    if gap(0.0) >= 0:
        return 0.0
    return float(optimize.brentq(gap, 0.0, top, xtol=1e-10))
