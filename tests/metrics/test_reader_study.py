import math

import numpy as np
import pytest
from common.metrics.reader_study import (
    binomial_accuracy,
    cohen_kappa,
    confusion_counts,
    fleiss_kappa,
    rating_counts,
    score_task,
)


def test_confusion_counts_rows_are_truth_columns_are_answers():
    truth = ["real", "real", "real", "synthetic", "synthetic"]
    answers = ["real", "synthetic", "real", "synthetic", "real"]
    assert confusion_counts(truth, answers, ["real", "synthetic"]).tolist() == [[2, 1], [1, 1]]
    with pytest.raises(ValueError, match="not among the labels"):
        confusion_counts(["real"], ["maybe"], ["real", "synthetic"])
    with pytest.raises(ValueError, match="1 truths but 2 answers"):
        confusion_counts(["real"], ["real", "real"], ["real", "synthetic"])


def test_score_task_reproduces_table_1_row_from_its_counts():
    # Table 1, T1 (DCGAN, 128 x 128): 50 real, 50 synthetic; real as real 52 % (26), synthetic as synthetic 88 % (44)
    truth = ["real"] * 50 + ["synthetic"] * 50
    answers = ["real"] * 26 + ["synthetic"] * 24 + ["real"] * 6 + ["synthetic"] * 44
    s = score_task(truth, answers, ["real", "synthetic"], chance=0.5)
    assert s["counts"] == [[26, 24], [6, 44]]
    assert s["row_percent"] == [[52.0, 48.0], [12.0, 88.0]]
    assert s["accuracy"]["accuracy"] == pytest.approx(0.70)
    assert s["accuracy"]["correct"] == 70 and s["accuracy"]["total"] == 100
    # a truth with no case has no row percentages
    assert score_task(["real"], ["real"], ["real", "synthetic"])["row_percent"] == [[100.0, 0.0], None]


def test_binomial_accuracy_exact_interval_and_test_against_hand_values():
    half = binomial_accuracy(5, 10)
    # Clopper-Pearson for 5/10: the Beta(5, 6) 2.5 % and Beta(6, 5) 97.5 % quantiles (published tables: 0.1871, 0.8129)
    assert half["ci_low"] == pytest.approx(0.187086, abs=1e-6)
    assert half["ci_high"] == pytest.approx(0.812914, abs=1e-6)
    assert half["p_value"] == pytest.approx(1.0)
    # 8/10 against 50 %: P(X >= 8) = (45 + 10 + 1) / 1024, doubled by symmetry
    assert binomial_accuracy(8, 10)["p_value"] == pytest.approx(2 * 56 / 1024)
    # 0/10: the lower bound is 0 and the upper bound solves (1 - p)^10 = 0.025
    zero = binomial_accuracy(0, 10)
    assert zero["ci_low"] == 0.0
    assert zero["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    assert zero["p_value"] == pytest.approx(2 / 1024)
    # a chance other than 50 %: 3/3 against 1/3 has p = (1/3)^3 (two-sided: nothing is as unlikely below)
    assert binomial_accuracy(3, 3, chance=1 / 3)["p_value"] == pytest.approx((1 / 3) ** 3)
    assert half["ci_method"] == "clopper-pearson"
    with pytest.raises(ValueError):
        binomial_accuracy(3, 2)
    with pytest.raises(ValueError):
        binomial_accuracy(0, 0)


def test_cohen_kappa_on_a_hand_computed_table():
    # 2 x 2 agreement table [[20, 5], [10, 15]]: p_o = 35/50 = 0.7, p_e = (25*30 + 25*20) / 50^2 = 0.5, kappa = 0.4
    first = ["real"] * 25 + ["synthetic"] * 25
    second = ["real"] * 20 + ["synthetic"] * 5 + ["real"] * 10 + ["synthetic"] * 15
    assert cohen_kappa(first, second, ["real", "synthetic"]) == pytest.approx(0.4)
    assert cohen_kappa(first, first, ["real", "synthetic"]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["real"] * 4, ["real"] * 4, ["real", "synthetic"]))
    with pytest.raises(ValueError, match="same cases"):
        cohen_kappa(["real"], ["real", "real"], ["real", "synthetic"])


def test_fleiss_kappa_on_hand_computed_and_published_tables():
    # 2 readers, 4 cases: P_i = 1, 1, 0, 1 -> 0.75; p = (5/8, 3/8) -> P_e = 34/64; kappa = (0.75 - P_e) / (1 - P_e)
    table = rating_counts([["a", "b", "a", "a"], ["a", "b", "b", "a"]], ["a", "b"])
    assert table.tolist() == [[2, 0], [0, 2], [1, 1], [2, 0]]
    assert fleiss_kappa(table) == pytest.approx((0.75 - 34 / 64) / (1 - 34 / 64))
    # Fleiss (1971)-style worked example with 14 raters, 10 subjects, 5 categories: kappa = 0.210
    example = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(example) == pytest.approx(0.20993, abs=5e-5)
    assert math.isnan(fleiss_kappa(np.array([[3, 0], [3, 0]])))
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[2, 0], [1, 0]]))
