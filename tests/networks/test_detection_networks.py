"""Faster R-CNN parts: RoIAlign against hand-computed bilinear/trilinear sampling, matcher, sampler, NMS, and the
detector's training/eval outputs in 2D and 3D."""

import itertools
import math

import numpy as np
import pytest
import torch
from common.networks.detection import (
    BalancedPositiveNegativeSampler,
    FasterRCNN,
    IoUMatcher,
    MultiScaleRoIAlign,
    flatten_head_outputs,
    map_levels,
    nms,
    patch_starts,
    roi_align,
    sliding_window_detect,
    window_slices,
)
from monai.data.box_utils import box_iou


def interp(f: np.ndarray, point) -> float:
    """Bilinear/trilinear value of ``f`` at ``point`` with the RoIAlign border rules (zero beyond [-1, size],
    coordinates clamped to [0, size - 1]), written out corner by corner."""
    for p, s in zip(point, f.shape):
        if p < -1.0 or p > s:
            return 0.0
    point = [min(max(p, 0.0), s - 1.0) for p, s in zip(point, f.shape)]
    low = [int(math.floor(p)) for p in point]
    total = 0.0
    for corner in np.ndindex(*(2,) * f.ndim):
        idx, weight = [], 1.0
        for c, lo, p, s in zip(corner, low, point, f.shape):
            i = min(lo + c, s - 1)
            weight *= (1.0 - (p - lo)) if c == 0 else (p - lo)
            idx.append(i)
        total += weight * f[tuple(idx)]
    return total


def test_roi_align_2d_equals_hand_computed_bilinear():
    f = np.array([[(i * j + i * i) % 7 + 0.5 * j for j in range(5)] for i in range(4)], dtype=np.float64)
    feat = torch.tensor(f, dtype=torch.float32)[None, None]
    # box [x0, y0, x1, y1] = [0.5, 1, 2.5, 3] (x = axis 0), aligned: start (0, 0.5), size (2, 2)
    rois = torch.tensor([[0.0, 0.5, 1.0, 2.5, 3.0]])
    out = roi_align(feat, rois, output_size=(1, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    # axis 0: one bin of 2, samples at 0.5, 1.5; axis 1: two bins of 1, samples 0.75, 1.25 | 1.75, 2.25
    bin0 = np.mean([interp(f, (a, b)) for a in (0.5, 1.5) for b in (0.75, 1.25)])
    bin1 = np.mean([interp(f, (a, b)) for a in (0.5, 1.5) for b in (1.75, 2.25)])
    # the hand values themselves: interp(f, (0.5, 0.75)) from its four neighbours
    v = 0.25 * 0.5 * f[0, 0] + 0.75 * 0.5 * f[0, 1] + 0.25 * 0.5 * f[1, 0] + 0.75 * 0.5 * f[1, 1]
    assert interp(f, (0.5, 0.75)) == pytest.approx(v)
    assert out.shape == (1, 1, 1, 2)
    assert out[0, 0, 0, 0].item() == pytest.approx(bin0, abs=1e-5)
    assert out[0, 0, 0, 1].item() == pytest.approx(bin1, abs=1e-5)


def test_roi_align_2d_border_scale_and_unaligned():
    f = np.arange(16, dtype=np.float64).reshape(4, 4) ** 1.5
    feat = torch.tensor(f, dtype=torch.float32)[None, None].repeat(2, 1, 1, 1)
    feat[1] *= -1
    # box partly outside the image, on a stride-2 map (scale 0.5), batch index 1; sampling ratio 1
    rois = torch.tensor([[1.0, -4.0, 2.0, 4.0, 6.0]])
    out = roi_align(feat, rois, output_size=2, spatial_scale=0.5, sampling_ratio=1, aligned=True)
    # axis 0: start -2.5, size 4, bins of 2 -> samples -1.5 (outside: 0), 0.5; axis 1: start 0.5, size 2 -> 1.0, 2.0
    expected = [[-interp(f, (a, b)) for b in (1.0, 2.0)] for a in (-1.5, 0.5)]
    assert expected[0] == [0.0, 0.0]
    np.testing.assert_allclose(out[0, 0].numpy(), expected, atol=1e-5)
    # aligned=False: no half-cell shift, sizes at least one cell
    rois = torch.tensor([[0.0, 1.0, 1.0, 1.2, 3.0]])
    out = roi_align(feat, rois, output_size=1, spatial_scale=1.0, sampling_ratio=2, aligned=False)
    # axis 0: start 1, size max(0.2, 1) = 1 -> samples 1.25, 1.75; axis 1: start 1, size 2 -> 1.5, 2.5
    expected = np.mean([interp(f, (a, b)) for a in (1.25, 1.75) for b in (1.5, 2.5)])
    assert out.item() == pytest.approx(expected, abs=1e-4)


def test_roi_align_3d_equals_hand_computed_trilinear():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, 4, 5))
    feat = torch.tensor(f, dtype=torch.float32)[None, None].repeat(1, 2, 1, 1, 1)
    feat[:, 1] = feat[:, 1] * 2 + 1
    rois = torch.tensor([[0.0, 0.5, 1.0, 0.0, 2.5, 3.0, 4.0]])
    out = roi_align(feat, rois, output_size=(1, 2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    # axis 0: start 0, size 2, 1 bin -> 0.5, 1.5; axis 1: start 0.5, size 2, 2 bins -> .75 1.25 | 1.75 2.25;
    # axis 2: start -0.5, size 4, 2 bins -> 0 1 | 2 3
    a_s = (0.5, 1.5)
    b_s = ((0.75, 1.25), (1.75, 2.25))
    c_s = ((0.0, 1.0), (2.0, 3.0))
    for j in range(2):
        for k in range(2):
            want = np.mean([interp(f, (a, b, c)) for a in a_s for b in b_s[j] for c in c_s[k]])
            assert out[0, 0, 0, j, k].item() == pytest.approx(want, abs=1e-5)
            assert out[0, 1, 0, j, k].item() == pytest.approx(2 * want + 1, abs=1e-5)


def test_multiscale_roi_align_picks_level_by_size():
    # finest stride 2 (scale 0.5), output 2 -> canonical 4 cells: a box below 16 px goes to level 0
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 40.0, 40.0], [0, 0, 200, 200.0]])
    assert map_levels(boxes, 0.5, 3, 4.0).tolist() == [0, 1, 2, 2]
    # a 3D box uses the cube root of its volume
    assert map_levels(torch.tensor([[0.0, 0, 0, 16, 16, 16]]), 0.5, 3, 4.0).tolist() == [1]
    feats = [torch.full((1, 1, 16, 16), 1.0), torch.full((1, 1, 8, 8), 2.0)]
    pool = MultiScaleRoIAlign(output_size=2, sampling_ratio=1)
    out = pool(feats, [torch.tensor([[2.0, 2.0, 8.0, 8.0], [0.0, 0.0, 30.0, 30.0]])], (32, 32))
    assert out[0].unique().tolist() == [1.0] and out[1].unique().tolist() == [2.0]


def test_iou_matcher_on_hand_made_ious():
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.0, 0.35], [0.2, 0.65, 0.25, 0.05, 0.3]])
    m = IoUMatcher(0.7, 0.3, allow_low_quality_matches=False)(iou)
    # pred 0 -> gt 0 (0.9); pred 1 best 0.65: ignored; pred 2 best 0.25 < 0.3: negative; pred 4 best 0.35: ignored
    assert m.tolist() == [0, -2, -1, -1, -2]
    m = IoUMatcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
    # gt 1's best prediction (1, IoU 0.65) becomes its match
    assert m.tolist() == [0, 1, -1, -1, -2]
    assert IoUMatcher(0.5, 0.5)(torch.zeros((0, 3))).tolist() == [-1, -1, -1]


def test_balanced_sampler_fractions():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    pos, neg = BalancedPositiveNegativeSampler(32, 0.25)([labels], torch.Generator().manual_seed(0))
    assert pos[0].sum() == 8 and neg[0].sum() == 24
    assert (labels[pos[0]] == 1).all() and (labels[neg[0]] == 0).all()
    # few positives: the negatives fill the batch
    labels = torch.tensor([1] * 2 + [0] * 100)
    pos, neg = BalancedPositiveNegativeSampler(32, 0.5)([labels])
    assert pos[0].sum() == 2 and neg[0].sum() == 30


def test_nms_per_group():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [1, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, None, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, torch.tensor([0, 1, 0, 0]), 0.5).tolist() == [3, 1, 2]
    assert nms(boxes, scores, None, 0.5, max_keep=1).tolist() == [3]


def test_nms_matches_a_plain_greedy_pass_over_groups():
    """Per-group NMS (each group's IoU matrix apart) keeps what one greedy pass over all boxes keeps when a box
    only suppresses boxes of its own group, in the same decreasing-score order, also with ties and max_keep."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randint(0, 20, (300, 3), generator=gen).float()
    boxes = torch.cat([start, start + torch.randint(2, 8, (300, 3), generator=gen)], dim=1)
    scores = torch.randint(0, 50, (300,), generator=gen).float() / 50  # many ties
    groups = torch.randint(0, 4, (300,), generator=gen)

    def plain(max_keep):
        order = sorted(range(300), key=lambda i: (-scores[i].item(), i))
        kept = []
        for i in order:
            same = [k for k in kept if groups[k] == groups[i]]
            if same and box_iou(boxes[[i]], boxes[same]).max() > 0.3:
                continue
            kept.append(i)
        return kept[:max_keep] if max_keep > 0 else kept

    for max_keep in (-1, 25):
        assert nms(boxes, scores, groups, 0.3, max_keep).tolist() == plain(max_keep)


def test_flatten_head_outputs_matches_anchor_order():
    # 2 anchors, width 2, 1x3 map: channel a * width + k; the flat order is (location, anchor)
    m = torch.arange(12, dtype=torch.float32).view(1, 4, 1, 3)
    flat = flatten_head_outputs([m], 2, 2)
    assert flat.shape == (1, 6, 2)
    assert flat[0, 0].tolist() == [0.0, 3.0] and flat[0, 1].tolist() == [6.0, 9.0] and flat[0, 2].tolist() == [1, 4]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_faster_rcnn_train_and_eval(spatial_dims):
    torch.manual_seed(0)
    net = FasterRCNN(
        spatial_dims,
        1,
        2,
        backbone_channels=(4, 8),
        backbone_layers=(1, 1),
        fpn_channels=8,
        representation_size=16,
        rpn_batch_size_per_image=32,
        box_batch_size_per_image=16,
    )
    size = (20,) * spatial_dims  # not a multiple of the stride: padded inside
    box = [3.0] * spatial_dims + [9.0] * spatial_dims
    targets = [
        {"boxes": torch.tensor([box]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros((0, 2 * spatial_dims)), "labels": torch.zeros((0,), dtype=torch.int64)},
    ]
    net.train()
    losses = net(torch.randn(2, 1, *size), targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert net.rpn.head.cls_logits.weight.grad.abs().sum() > 0
    assert net.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="targets"):
        net(torch.randn(1, 1, *size))
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
        windowed = sliding_window_detect(net, torch.randn(1, *(24,) * spatial_dims), (16,) * spatial_dims, 0.25)
    d = out[0]
    assert d["boxes"].shape[1] == 2 * spatial_dims and len(d["boxes"]) == len(d["scores"]) == len(d["labels"])
    assert (d["labels"] >= 0).all() and (d["labels"] < 2).all()
    assert (d["boxes"][:, spatial_dims:] <= 20).all() and (d["boxes"] >= 0).all()
    assert (windowed["boxes"][:, spatial_dims:] <= 24).all()


def test_patch_starts():
    assert patch_starts(64, 32, 0.25) == [0, 24, 32]
    assert patch_starts(16, 32, 0.25) == [0]
    assert patch_starts(32, 32, 0.5) == [0]


def _reference_window_starts(spatial, roi, overlap):
    """The windows by their definition: per axis ``range(0, size - roi, step)`` plus ``size - roi``, with ``step =
    round(roi * (1 - overlap))``; the Cartesian product of the axes, the first varying slowest."""
    grids = []
    for size, r in zip(spatial, roi):
        r = min(r, size)
        step = max(1, int(round(r * (1.0 - overlap))))
        grids.append(sorted(set(list(range(0, size - r, step)) + [size - r])))
    return [list(p) for p in itertools.product(*grids)]


@pytest.mark.parametrize(
    "spatial,roi,overlap",
    [
        ((64,), (32,), 0.25),
        ((24, 24), (16, 16), 0.25),
        ((100, 37), (32, 40), 0.5),
        ((64, 64, 48), (32, 32, 32), 0.25),
        ((96, 80, 33), (48, 30, 10), 0.0),
        ((50, 50, 50), (7, 50, 20), 0.9),
        ((10, 30), (10, 10), 1.0),
    ],
)
def test_window_slices_equal_the_definition(spatial, roi, overlap):
    windows = window_slices(spatial, roi, overlap)
    assert [[w.start for w in window] for window in windows] == _reference_window_starts(spatial, roi, overlap)
    assert all(w.stop - w.start == min(r, s) for window in windows for w, r, s in zip(window, roi, spatial))
    with pytest.raises(ValueError, match="overlap"):
        window_slices(spatial, roi, -0.5)
