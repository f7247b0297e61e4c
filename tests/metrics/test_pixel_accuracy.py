"""Tests of PA, the per-pixel accuracy of paper 002 (sec. III-A; the FCN-score of pix2pix), on hand-computed cases."""

import math

import pytest
import torch
from common.metrics import PixelAccuracyMetric, mean_confidence_interval, pixel_accuracy


def one_hot_scores(indices, k):
    """Scores ``(B, K, *spatial)`` whose arg-max is ``indices (B, *spatial)``."""
    return torch.nn.functional.one_hot(indices, k).movedim(-1, 1).float()


def test_label_maps_fcn_score():
    target = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [0, 2]]])
    pred = torch.tensor([[[0, 1], [2, 0]], [[2, 2], [0, 1]]])  # 3 of 4 right, then 1 of 4
    acc = pixel_accuracy(one_hot_scores(pred, 3), target)
    assert acc.tolist() == [0.75, 0.25]
    assert pixel_accuracy(pred, target[:, None]).tolist() == [0.75, 0.25]  # indices; MONAI (B, 1, H, W) labels
    # pixels of class 2 not counted: image 0 has 2 of 2 right, image 1 has 1 of 3 right
    assert pixel_accuracy(pred, target, ignore_index=2).tolist() == pytest.approx([1.0, 1 / 3])


def test_image_classes_reduce_to_classification_accuracy():
    logits = torch.tensor([[2.0, 0.1, 0.3], [0.0, 1.0, -1.0], [0.5, 0.2, 0.9], [3.0, 0.0, 0.0]])
    classes = torch.tensor([0, 1, 1, 0])  # the third is predicted 2
    assert pixel_accuracy(logits, classes).tolist() == [1.0, 1.0, 0.0, 1.0]
    # a dense evaluator scored against each image's class at every pixel: 2x2 maps with 4, 2, 0 pixels right
    pred = torch.tensor([[[1, 1], [1, 1]], [[0, 1], [1, 0]], [[2, 2], [2, 2]]])
    assert pixel_accuracy(one_hot_scores(pred, 3), torch.tensor([1, 1, 0])).tolist() == [1.0, 0.5, 0.0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="do not match"):
        pixel_accuracy(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        pixel_accuracy(torch.zeros(2, 3), torch.tensor([0.5, 1.0]))


def test_confidence_interval_by_hand():
    mean, half = mean_confidence_interval([0.0, 1.0, 1.0, 1.0, float("nan")])
    # mean 0.75, sample sd 0.5, n 4: t_{0.975, 3} = 3.182446305 times 0.5 / 2
    assert mean == pytest.approx(0.75) and half == pytest.approx(3.182446305 * 0.25, rel=1e-8)
    assert math.isnan(mean_confidence_interval([0.4])[1]) and mean_confidence_interval([0.4])[0] == 0.4
    assert mean_confidence_interval([0.0, 1.0, 1.0, 1.0], 0.5)[1] < half


def test_cumulative_metric_over_batches():
    metric = PixelAccuracyMetric()
    assert math.isnan(metric.aggregate().item())
    metric(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))  # right, wrong
    metric([torch.tensor([0.0, 3.0]), torch.tensor([1.0, 0.0])], [torch.tensor(1), torch.tensor(0)])  # decollated
    assert metric.aggregate().item() == pytest.approx(0.75)
    assert metric.confidence_interval() == pytest.approx(mean_confidence_interval([1.0, 0.0, 1.0, 1.0]))
    metric.reset()
    metric(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert metric.aggregate().item() == 1.0
