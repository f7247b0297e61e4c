"""Classification metrics (CDA-GAN eq. 11-14) against scikit-learn and a hand-computed case."""

import numpy as np
import pytest
import torch
from common.metrics import ClassificationMetrics, classification_metrics, rank_auc
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from tests.builders import random_probabilities


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_equals_sklearn(seed):
    prob, y = random_probabilities(60, 2, seed)
    m = classification_metrics(prob, y)
    pred = prob.argmax(1)
    assert m["acc"] == pytest.approx(accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, prob[:, 1]))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred))
    # a (N,) probability vector gives the same numbers
    assert classification_metrics(prob[:, 1], y) == pytest.approx(m)


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_macro_one_vs_rest_equals_sklearn(seed):
    prob, y = random_probabilities(90, 3, seed)
    m = classification_metrics(torch.as_tensor(prob), torch.as_tensor(y), class_names=["a", "b", "c"])
    pred = prob.argmax(1)
    assert m["acc"] == pytest.approx(accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, prob, multi_class="ovr", average="macro"))
    assert m["recall"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["precision"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["recall_b"] == pytest.approx(recall_score(y, pred, average=None)[1])
    spec = np.mean([recall_score(y != k, pred != k) for k in range(3)])
    assert m["specificity"] == pytest.approx(spec)


def test_hand_computed_case():
    # labels 1 1 1 0 0 0 0, scores with a positive/negative tie at 0.6
    scores = np.array([0.9, 0.6, 0.3, 0.6, 0.2, 0.1, 0.7])
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    # predictions (>0.5): 1 1 0 1 0 0 1 -> TP 2, FN 1, FP 2, TN 2
    m = classification_metrics(scores, y)
    assert m["acc"] == pytest.approx(4 / 7)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * 2 / (3 + 4))  # eq. 13: 2 TP / (T + P)
    # eq. 14: ranks ascending 0.1:1 0.2:2 0.3:3 0.6:4.5 0.6:4.5 0.7:6 0.9:7; positives 7 + 4.5 + 3 = 14.5
    expected = (14.5 - 3 * 4 / 2) / (3 * 4)
    assert rank_auc(scores, y) == pytest.approx(expected)
    assert m["auc"] == pytest.approx(expected)
    assert m["num_samples"] == 7.0


def test_degenerate_cases():
    m = classification_metrics(np.array([0.1, 0.2]), np.array([0, 0]))
    assert np.isnan(m["auc"]) and m["acc"] == 1.0 and m["recall"] == 0.0 and m["precision"] == 0.0
    assert np.isnan(rank_auc([0.3], [1]))
    with pytest.raises(ValueError, match="labels"):
        classification_metrics(np.array([[0.1, 0.9]]), np.array([2]))
    with pytest.raises(ValueError, match="predictions"):
        classification_metrics(np.array([0.1, 0.9]), np.array([1]))


def test_accumulator():
    prob, y = random_probabilities(10, 2, 5)
    batches = [(prob[i : i + 3], y[i : i + 3]) for i in range(0, 10, 3)]
    acc = ClassificationMetrics(2)
    for p, t in batches:
        acc(torch.as_tensor(p), torch.nn.functional.one_hot(torch.as_tensor(t), 2))
    assert acc.aggregate() == pytest.approx(classification_metrics(prob, y))
