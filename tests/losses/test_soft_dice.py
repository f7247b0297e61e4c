"""Vu et al. (paper 004) eq. 5 soft Dice loss and eq. 6 DSC against hand-computed values."""

import math

import pytest
import torch
from common.losses import SoftDiceLoss, soft_dice_score
from common.metrics import SegmentationMetrics
from common.metrics.segmentation import dsc_per_image
from monai.losses import DiceLoss

EPS = 1e-5


def logits_for(probabilities):
    """Logits whose softmax over dim 1 is ``probabilities`` (B, K, *S)."""
    return torch.log(torch.as_tensor(probabilities, dtype=torch.float64))


def test_loss_and_dsc_equal_hand_computed_values():
    # one image of 4 pixels, 2 classes; foreground probabilities 0.9, 0.2, 0.6, 0.1; labels 1, 0, 1, 1
    p1 = torch.tensor([0.9, 0.2, 0.6, 0.1], dtype=torch.float64)
    probs = torch.stack([1 - p1, p1]).reshape(1, 2, 2, 2)
    label = torch.tensor([1, 0, 1, 1]).reshape(1, 1, 2, 2)
    # sum m m_hat = probability of the true class: 0.9 + 0.8 + 0.6 + 0.1 = 2.4; sum m = sum m_hat = 4 pixels
    loss = SoftDiceLoss()(logits_for(probs), label)
    assert loss.item() == pytest.approx(-(2 * 2.4 + EPS) / (4 + 4 + EPS), abs=1e-12)  # -0.6000...
    assert loss.item() == pytest.approx(-0.6, abs=1e-6)
    # foreground channel only: sum m m_hat = 0.9 + 0.6 + 0.1 = 1.6, sum m = 3, sum m_hat = 1.8
    fg = SoftDiceLoss(include_background=False)(logits_for(probs), label)
    assert fg.item() == pytest.approx(-(3.2 + EPS) / (4.8 + EPS), abs=1e-12)
    # eq. 6 on the arg-max prediction 1, 0, 1, 0: 3 of 4 pixels right, DSC = 2 * 3 / (4 + 4) = 0.75; foreground:
    # TP = 2, |M| = 3, |M_hat| = 2, DSC = 4 / 5
    pred = torch.stack([1 - (p1 > 0.5).double(), (p1 > 0.5).double()]).reshape(1, 2, 2, 2)
    assert dsc_per_image(pred, label).tolist() == pytest.approx([0.75])
    assert dsc_per_image(pred, label, include_background=False).tolist() == pytest.approx([0.8])
    # one-hot targets give the same values as label maps
    onehot = torch.cat([label == 0, label == 1], 1).double()
    assert SoftDiceLoss()(logits_for(probs), onehot).item() == pytest.approx(loss.item(), abs=1e-12)


def test_sums_run_over_the_whole_batch_and_dsc_is_per_image():
    # image 0: 4 pixels all right (probability 1 of the true class); image 1: 4 pixels all wrong
    good = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    bad = torch.tensor([[0.0, 0, 1, 1], [1, 1, 0, 0]])
    pred = torch.stack([good, bad]).reshape(2, 2, 2, 2)
    label = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]]).reshape(2, 1, 2, 2)
    # one ratio over the batch: (2 * 4 + eps) / (8 + 8 + eps), not the mean of the per-image ratios
    assert soft_dice_score(pred, label).item() == pytest.approx((8 + EPS) / (16 + EPS))
    assert dsc_per_image(pred, label).tolist() == [1.0, 0.0]


def test_eq5_is_not_monais_per_class_mean():
    """MONAI's DiceLoss(batch=True) averages the per-class ratios; eq. 5 forms one ratio over all classes."""
    # 4 pixels, one tumour pixel (index 0), predicted as background everywhere with probability 0.9
    probs = torch.tensor([[0.9] * 4, [0.1] * 4], dtype=torch.float64).reshape(1, 2, 2, 2)
    label = torch.tensor([1, 0, 0, 0]).reshape(1, 1, 2, 2)
    # eq. 5: sum m m_hat = 0.1 + 3 * 0.9 = 2.8 over 4 + 4 -> -0.7
    eq5 = SoftDiceLoss()(logits_for(probs), label).item()
    assert eq5 == pytest.approx(-(5.6 + EPS) / (8 + EPS))
    # per class: background 2 * 2.7 / (3 + 3.6) = 0.818..., tumour 2 * 0.1 / (1 + 0.4) = 0.142...; mean 0.480...
    monai = DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=EPS, smooth_dr=EPS, batch=True)(logits_for(probs), label)
    per_class_mean = ((5.4 + EPS) / (6.6 + EPS) + (0.2 + EPS) / (1.4 + EPS)) / 2
    assert monai.item() == pytest.approx(1 - per_class_mean)
    assert abs((monai.item() - 1) - eq5) > 0.2  # -0.480 vs -0.700: not the same loss, not even up to a constant


def test_empty_mask_and_empty_prediction_score_one():
    label = torch.zeros(2, 1, 3, 3, dtype=torch.long)
    # background predicted everywhere with certainty (logit gap 100: softmax foreground below 1e-43)
    logits = torch.zeros(2, 2, 3, 3)
    logits[:, 0] = 100.0
    assert SoftDiceLoss()(logits, label).item() == pytest.approx(-1.0, abs=1e-7)
    # foreground only: 0 / 0 but for eps, which makes it -(0 + eps) / (0 + eps) = -1 (the paper's reason for eps)
    assert SoftDiceLoss(include_background=False)(logits, label).item() == pytest.approx(-1.0)
    empty = torch.zeros(2, 2, 3, 3)
    empty[:, 0] = 1
    assert dsc_per_image(empty, label).tolist() == [1.0, 1.0]
    assert dsc_per_image(empty, label, include_background=False).tolist() == [1.0, 1.0]
    # a false positive on an empty mask scores 0 on the foreground, 8 / 9 of the pixels on all channels
    fp = empty.clone()
    fp[0, :, 1, 1] = torch.tensor([0.0, 1.0])
    assert dsc_per_image(fp, label, include_background=False).tolist() == [0.0, 1.0]
    assert dsc_per_image(fp, label).tolist() == pytest.approx([8 / 9, 1.0])


def test_gradient_flows_and_lowers_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    label = torch.randint(0, 3, (2, 1, 4, 4))
    loss_fn = SoftDiceLoss()
    loss = loss_fn(logits, label)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = logits - 10.0 * logits.grad
    assert loss_fn(stepped, label).item() < loss.item()


def test_segmentation_metrics_report_the_mean_eq6_dsc():
    pred = torch.zeros(2, 2, 2, 2)
    pred[:, 0] = 1  # background everywhere
    label = torch.zeros(2, 2, 2, 2)
    label[:, 0] = 1
    label[0, :, 0, 0] = torch.tensor([0.0, 1.0])  # image 0: one tumour pixel missed -> 3 / 4; image 1 empty -> 1
    metrics = SegmentationMetrics()
    metrics(pred, label)
    results = metrics.aggregate()
    assert results["dsc_eq6"] == pytest.approx((0.75 + 1.0) / 2)
    assert results["dice"] == 0.0 and math.isfinite(results["dsc_eq6"])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="label map"):
        SoftDiceLoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        dsc_per_image(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 5))
