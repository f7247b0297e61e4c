"""Segmentation metrics (CDA-GAN eq. 15-20) against hand-computed values and scikit-learn."""

import math

import numpy as np
import pytest
import torch
from common.metrics import SegmentationMetrics, segmentation_metrics
from monai.losses import DiceLoss
from monai.networks.utils import one_hot
from sklearn.metrics import f1_score, jaccard_score


def onehot(labels: np.ndarray, num_classes: int = 2) -> torch.Tensor:
    """``(B, *spatial)`` integer labels -> ``(B, C, *spatial)`` one-hot."""
    return one_hot(torch.as_tensor(labels)[:, None].long(), num_classes)


def test_2d_hand_computed():
    gt = np.zeros((1, 8, 8), int)
    gt[0, 2:6, 2:6] = 1  # 16 pixels
    pred = np.zeros((1, 8, 8), int)
    pred[0, 2:6, 3:7] = 1  # 16 pixels, 12 overlap: TP 12, FP 4, FN 4
    r = segmentation_metrics(onehot(pred), onehot(gt))
    assert r["dice"] == pytest.approx(2 * 12 / (2 * 12 + 4 + 4))
    assert r["sensitivity"] == pytest.approx(12 / 16)
    assert r["miou"] == pytest.approx(12 / 20)
    assert r["dice_global"] == pytest.approx(0.75)
    # boundary of each square: every boundary point of one square is 0 or 1 pixel from the other's boundary
    assert r["hd95"] == pytest.approx(1.0)
    assert r["dice"] == pytest.approx(f1_score(gt.ravel(), pred.ravel()))
    assert r["miou"] == pytest.approx(jaccard_score(gt.ravel(), pred.ravel()))
    assert r["num_images"] == 1 and r["num_scored"] == 1


def test_hd95_is_a_percentile_of_surface_distances():
    gt = np.zeros((1, 32, 32), int)
    gt[0, 10:20, 10:20] = 1
    pred = gt.copy()
    pred[0, 10:20, 20:25] = 1  # the right edge moved 5 pixels
    r = segmentation_metrics(onehot(pred), onehot(gt))
    assert 1.0 < r["hd95"] <= 5.0
    big = pred.copy()
    big[0, 0, 0] = 1  # a far outlier voxel: the maximum moves, the 95th percentile barely
    assert segmentation_metrics(onehot(big), onehot(gt))["hd95"] == pytest.approx(r["hd95"], abs=1.0)


def test_3d_hand_computed_and_sklearn():
    rng = np.random.default_rng(0)
    gt = (rng.random((2, 6, 6, 6)) > 0.6).astype(int)
    pred = (rng.random((2, 6, 6, 6)) > 0.5).astype(int)
    r = segmentation_metrics(onehot(pred), onehot(gt))
    dice = [f1_score(g.ravel(), p.ravel()) for g, p in zip(gt, pred)]
    iou = [jaccard_score(g.ravel(), p.ravel()) for g, p in zip(gt, pred)]
    sens = [(g & p).sum() / g.sum() for g, p in zip(gt, pred)]
    assert r["dice"] == pytest.approx(np.mean(dice), rel=1e-5)
    assert r["miou"] == pytest.approx(np.mean(iou), rel=1e-5)
    assert r["sensitivity"] == pytest.approx(np.mean(sens), rel=1e-5)
    assert r["dice_global"] == pytest.approx(f1_score(gt.ravel(), pred.ravel()), rel=1e-6)
    assert math.isfinite(r["hd95"]) and r["hd95"] > 0


def test_empty_masks():
    gt = np.zeros((3, 8, 8), int)
    pred = np.zeros((3, 8, 8), int)
    gt[0, 1:4, 1:4] = 1  # image 0: tumour missed entirely
    pred[1, 5:7, 5:7] = 1  # image 1: no tumour, a false positive
    # image 2: no tumour, nothing predicted
    r = segmentation_metrics(onehot(pred), onehot(gt))
    assert r["num_images"] == 3 and r["num_scored"] == 1
    assert r["dice"] == 0.0 and r["sensitivity"] == 0.0 and r["miou"] == 0.0
    assert r["hd95"] == pytest.approx(math.hypot(8, 8))  # the image diagonal
    assert r["empty_false_positive_rate"] == pytest.approx(0.5)
    assert r["dice_global"] == 0.0
    # no tumour anywhere: nothing to score
    r = segmentation_metrics(onehot(pred[1:]), onehot(gt[1:]))
    assert math.isnan(r["dice"]) and math.isnan(r["hd95"]) and r["num_scored"] == 0


def test_multi_class_per_class_keys():
    gt = np.zeros((1, 8, 8), int)
    gt[0, :4, :4] = 1
    gt[0, 4:, 4:] = 2
    pred = gt.copy()
    pred[0, 4:, 4:6] = 0  # class 2: TP 8, FN 8
    r = segmentation_metrics(onehot(pred, 3), onehot(gt, 3), class_names=["a", "b"])
    assert r["dice_a"] == 1.0 and r["dice_b"] == pytest.approx(16 / 24)
    assert r["dice"] == pytest.approx((1.0 + 16 / 24) / 2)
    assert r["miou_b"] == pytest.approx(0.5) and r["sensitivity_b"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="class_names"):
        segmentation_metrics(onehot(pred, 3), onehot(gt, 3), class_names=["a"])


def test_accumulates_batches():
    rng = np.random.default_rng(1)
    gt = (rng.random((4, 8, 8)) > 0.5).astype(int)
    pred = (rng.random((4, 8, 8)) > 0.5).astype(int)
    m = SegmentationMetrics()
    m(onehot(pred[:2]), onehot(gt[:2]))
    m(onehot(pred[2:]), onehot(gt[2:]))
    assert m.aggregate() == pytest.approx(segmentation_metrics(onehot(pred), onehot(gt)), nan_ok=True)


@pytest.mark.parametrize("spatial", [(6, 6), (4, 5, 6)])
def test_monai_dice_loss_is_eq5_plus_one(spatial):
    """A per-class reading of Vu et al. eq. 5, L = -(2 sum m m_hat + eps) / (sum m + sum m_hat + eps) for each class
    over the batch, equals MONAI's DiceLoss(smooth_nr=eps, smooth_dr=eps, batch=True) minus 1. Eq. 5 as printed sums
    over all classes at once, which differs (tests/losses/test_soft_dice.py::test_eq5_is_not_monais_per_class_mean)."""
    eps = 1e-5
    torch.manual_seed(0)
    logits = torch.randn(2, 3, *spatial, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, *spatial))
    loss = DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=eps, smooth_dr=eps, batch=True)(logits, labels)
    m_hat = torch.softmax(logits, 1)
    m = one_hot(labels, 3)
    dims = (0, *range(2, m.ndim))
    eq5 = -(2 * (m * m_hat).sum(dims) + eps) / (m.sum(dims) + m_hat.sum(dims) + eps)  # one value per class
    assert loss.item() == pytest.approx(1.0 + eq5.mean().item(), abs=1e-6)
    g1 = torch.autograd.grad(loss, logits)[0]
    g2 = torch.autograd.grad(eq5.mean(), logits)[0]
    torch.testing.assert_close(g1, g2)
    # an all-zero prediction of an empty mask scores 1 (eq. 5's stated reason for eps in the numerator)
    empty = DiceLoss(smooth_nr=eps, smooth_dr=eps, batch=True)(torch.zeros(1, 1, *spatial), torch.zeros(1, 1, *spatial))
    assert empty.item() == pytest.approx(0.0)
