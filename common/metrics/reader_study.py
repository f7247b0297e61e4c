"""Scores of a reader study such as the Visual Turing Test of paper 003 (Han, thesis sec. 3.2.3 and 4.2.5, Tables 1
and 3): confusion matrices, accuracy with a binomial confidence interval and a test against chance, and agreement
between readers.

- :func:`confusion_counts`: the ``K x K`` matrix of counts, rows the truth, columns the answer (Table 1: real as
  real, real as synthetic, synthetic as real, synthetic as synthetic);
- :func:`binomial_accuracy`: the share of correct answers with its exact (Clopper-Pearson) confidence interval and
  the exact two-sided binomial test against the chance rate (:func:`scipy.stats.binomtest`);
- :func:`score_task`: both of them for one question of one reader (or of several readers pooled), with the rows of
  the matrix as percentages of their truth, as the thesis' tables give them;
- :func:`cohen_kappa` (two readers, :func:`sklearn.metrics.cohen_kappa_score`) and :func:`fleiss_kappa` (any number
  of readers, Fleiss 1971, computed here: scikit-learn has none).

Pure functions: no file I/O. Reading the answer files and writing the report is
:mod:`common.evaluation.visual_turing_score`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import cohen_kappa_score

__all__ = [
    "CI_METHOD",
    "binomial_accuracy",
    "cohen_kappa",
    "confusion_counts",
    "fleiss_kappa",
    "rating_counts",
    "score_task",
]

CI_METHOD = "clopper-pearson"
"""The binomial confidence interval of :func:`binomial_accuracy`: the exact (Clopper-Pearson) interval, which never
undercovers (it is conservative for small ``n``)."""


def confusion_counts(truth: Sequence[Hashable], answers: Sequence[Hashable], labels: Sequence[Hashable]) -> np.ndarray:
    """Counts of (truth, answer) pairs.

    Args:
        truth: the true label of each case, length ``N``.
        answers: the reader's answer for each case, length ``N``.
        labels: the ``K`` labels, in the order of the rows and columns.

    Returns:
        ``(K, K)`` int64 array; ``[i, j]`` counts the cases of truth ``labels[i]`` answered ``labels[j]``.

    Raises:
        ValueError: different lengths, or a truth or answer not in ``labels``.
    """
    if len(truth) != len(answers):
        raise ValueError(f"{len(truth)} truths but {len(answers)} answers.")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(v) for v in list(truth) + list(answers) if v not in index})
    if unknown:
        raise ValueError(f"values {unknown} are not among the labels {list(labels)}.")
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, a in zip(truth, answers):
        counts[index[t], index[a]] += 1
    return counts


def binomial_accuracy(correct: int, total: int, chance: float = 0.5, confidence: float = 0.95) -> dict[str, Any]:
    """Accuracy ``correct / total`` with its exact confidence interval and the exact binomial test against chance.

    Args:
        correct: number of correct answers.
        total: number of answers (> 0).
        chance: the accuracy of guessing, the null hypothesis of the test (0.5 for real vs synthetic).
        confidence: level of the interval.

    Returns:
        ``{"correct", "total", "accuracy", "ci_low", "ci_high", "ci_method", "confidence", "chance", "p_value"}``;
        the accuracy and the bounds are fractions in [0, 1], ``p_value`` is two-sided.

    Raises:
        ValueError: ``total`` not positive or ``correct`` outside ``[0, total]``.
    """
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0, got correct={correct}, total={total}.")
    test = stats.binomtest(int(correct), int(total), p=chance, alternative="two-sided")
    ci = test.proportion_ci(confidence_level=confidence, method="exact")
    return {
        "correct": int(correct),
        "total": int(total),
        "accuracy": correct / total,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "ci_method": CI_METHOD,
        "confidence": confidence,
        "chance": chance,
        "p_value": float(test.pvalue),
    }


def score_task(
    truth: Sequence[Hashable],
    answers: Sequence[Hashable],
    labels: Sequence[Hashable],
    chance: float | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Confusion matrix, row percentages and accuracy of one question (e.g. real vs synthetic).

    Args:
        truth: the true label of each case.
        answers: the answer for each case (the answers of several readers concatenated give the pooled score).
        labels: the labels, in the order of the matrix.
        chance: accuracy of guessing; ``1 / len(labels)`` when None.
        confidence: level of the interval.

    Returns:
        ``{"labels", "counts" (K x K list, rows truth), "row_percent" (K x K list: each row in % of its truth,
        None for a truth with no case), "accuracy": binomial_accuracy(...)}``.
    """
    counts = confusion_counts(truth, answers, labels)
    rows = counts.sum(axis=1)
    row_percent = [[100.0 * c / r for c in row] if r else None for row, r in zip(counts.tolist(), rows.tolist())]
    chance = 1.0 / len(labels) if chance is None else chance
    accuracy = binomial_accuracy(int(np.trace(counts)), int(counts.sum()), chance, confidence)
    return {"labels": list(labels), "counts": counts.tolist(), "row_percent": row_percent, "accuracy": accuracy}


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Cohen's kappa between two readers' answers to the same cases, ``(p_o - p_e) / (1 - p_e)``.

    Args:
        first: the first reader's answers, length ``N``.
        second: the second reader's answers, same cases in the same order.
        labels: the possible answers.

    Returns:
        kappa; NaN when the chance agreement ``p_e`` is 1 (both readers always gave the same single answer).
    """
    if len(first) != len(second):
        raise ValueError(f"{len(first)} and {len(second)} answers: the readers must answer the same cases.")
    counts = confusion_counts(first, second, labels)  # also checks that every answer is a label
    p_e = float(np.dot(counts.sum(axis=1), counts.sum(axis=0))) / float(counts.sum()) ** 2
    if math.isclose(p_e, 1.0):
        return math.nan
    return float(cohen_kappa_score(list(first), list(second), labels=list(labels)))


def rating_counts(answers: Sequence[Sequence[Hashable]], labels: Sequence[Hashable]) -> np.ndarray:
    """The ``(N cases, K labels)`` table of how many readers gave each answer to each case.

    Args:
        answers: one sequence of ``N`` answers per reader.
        labels: the ``K`` possible answers.

    Returns:
        ``(N, K)`` int64 counts; every row sums to the number of readers.
    """
    if not answers:
        raise ValueError("no readers.")
    n = len(answers[0])
    if any(len(a) != n for a in answers):
        raise ValueError("the readers must answer the same cases.")
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((n, len(labels)), dtype=np.int64)
    for reader in answers:
        for case, answer in enumerate(reader):
            if answer not in index:
                raise ValueError(f"answer {answer!r} is not among the labels {list(labels)}.")
            table[case, index[answer]] += 1
    return table


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa of ``n`` readers who each rated every case (Fleiss, Psychol. Bull. 1971).

    ``P_i = (sum_j n_ij^2 - n) / (n (n - 1))``, ``P_bar`` their mean, ``p_j`` the share of all ratings in category
    ``j``, ``P_e = sum_j p_j^2``, ``kappa = (P_bar - P_e) / (1 - P_e)``.

    Args:
        table: ``(N cases, K categories)`` counts (e.g. :func:`rating_counts`), every row summing to ``n >= 2``.

    Returns:
        kappa; NaN when ``P_e`` is 1 (every rating in one category).

    Raises:
        ValueError: rows with different sums, or fewer than two ratings per case.
    """
    table = np.asarray(table, dtype=np.float64)
    sums = table.sum(axis=1)
    if table.ndim != 2 or table.shape[0] == 0 or not np.all(sums == sums[0]) or sums[0] < 2:
        raise ValueError("each case needs the same number (>= 2) of ratings.")
    n = sums[0]
    p_i = ((table**2).sum(axis=1) - n) / (n * (n - 1))
    p_j = table.sum(axis=0) / table.sum()
    p_e = float((p_j**2).sum())
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_i.mean() - p_e) / (1.0 - p_e))
