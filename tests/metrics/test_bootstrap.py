"""Bootstrap confidence intervals over test cases: hand-checkable cases, patients as units, seeds, reproducibility."""

import numpy as np
import pytest
from common.metrics import rank_auc
from common.metrics.bootstrap import (
    bootstrap_auc_ci,
    bootstrap_binary_ci,
    bootstrap_ci,
    bootstrap_mean_ci,
    resample_weights,
)


def test_constant_metric_has_a_zero_width_interval():
    ci = bootstrap_mean_ci(np.full(12, 0.7), n_resamples=200)
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((0.7, 0.7, 0.7))
    assert ci.unit == "cases" and ci.n_units == 12 and ci.n_resamples == 200


def test_mean_interval_covers_the_mean_with_the_normal_width():
    """400 draws of N(0.5, 0.1): the interval covers 0.5 and its width is close to 2 * 1.96 * 0.1 / sqrt(400)."""
    values = np.random.default_rng(3).normal(0.5, 0.1, size=400)
    ci = bootstrap_mean_ci(values, n_resamples=2000, seed=1)
    assert ci.low < 0.5 < ci.high and ci.low < ci.estimate < ci.high
    assert ci.estimate == pytest.approx(values.mean())
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * values.std(ddof=1) / 20, rel=0.1)


def test_seeded_reproducibility():
    values = np.random.default_rng(0).random(30)
    a, b = bootstrap_mean_ci(values, seed=5), bootstrap_mean_ci(values, seed=5)
    assert a == b
    assert bootstrap_mean_ci(values, seed=6).low != a.low


def test_perfectly_separable_auc_is_one_one():
    ci = bootstrap_auc_ci([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1], n_resamples=500)
    assert (ci.estimate, ci.low, ci.high) == (1.0, 1.0, 1.0)
    # draws with one class only have no AUC and are left out
    assert 0 < ci.n_resamples < 500


def test_auc_estimate_is_the_rank_auc_with_ties():
    scores = np.array([0.2, 0.4, 0.4, 0.6, 0.4, 0.9, 0.1, 0.6])
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    ci = bootstrap_auc_ci(scores, labels, n_resamples=300)
    assert ci.estimate == pytest.approx(rank_auc(scores, labels))
    assert ci.low <= ci.estimate <= ci.high


def test_patients_are_the_units():
    """10 patients x 4 identical slices: resampling the slices as if independent gives an interval about half as
    wide (1 / sqrt(4)) as resampling the patients, which is the honest one."""
    per_patient = np.random.default_rng(2).normal(0.6, 0.2, size=10)
    values = np.repeat(per_patient, 4)
    groups = [f"P{i}" for i in np.repeat(np.arange(10), 4)]
    by_patient = bootstrap_mean_ci(values, groups, seed=0)
    by_case = bootstrap_mean_ci(values, seed=0)
    assert by_patient.unit == "patients" and by_patient.n_units == 10 and by_patient.n_cases == 40
    assert by_patient.estimate == pytest.approx(by_case.estimate)
    assert (by_case.high - by_case.low) < 0.7 * (by_patient.high - by_patient.low)
    w = resample_weights(40, groups, 50, np.random.default_rng(0))
    assert w.shape == (50, 40) and np.all(w.sum(axis=1) == 40)
    assert np.all(w.reshape(50, 10, 4) == w.reshape(50, 10, 4)[:, :, :1])  # a patient's slices come together


def test_seeds_are_averaged_under_one_draw_of_cases():
    values = np.random.default_rng(4).random((1, 20))
    one = bootstrap_mean_ci(values[0], seed=0)
    assert bootstrap_mean_ci(np.vstack([values, values]), seed=0) == one  # identical seeds: the same interval
    shifted = bootstrap_mean_ci(np.vstack([values, values + 0.2]), seed=0)
    assert (shifted.estimate, shifted.low, shifted.high) == pytest.approx((one.estimate + 0.1, one.low + 0.1,
                                                                           one.high + 0.1))  # fmt: skip


def test_nan_cases_are_left_out():
    ci = bootstrap_mean_ci([0.2, np.nan, 0.4, np.nan], n_resamples=100)
    assert ci.estimate == pytest.approx(0.3) and ci.low == pytest.approx(0.2) and ci.high == pytest.approx(0.4)


def test_binary_metrics_by_hand():
    # TP = 2, FN = 1, FP = 1, TN = 4
    pred = [1, 1, 0, 1, 0, 0, 0, 0]
    labels = [1, 1, 1, 0, 0, 0, 0, 0]
    expected = {"acc": 6 / 8, "recall": 2 / 3, "specificity": 4 / 5, "precision": 2 / 3, "f1": 4 / 6}
    for metric, value in expected.items():
        ci = bootstrap_binary_ci(metric, pred, labels, n_resamples=100)
        assert ci.estimate == pytest.approx(value), metric
        assert 0.0 <= ci.low <= ci.estimate <= ci.high <= 1.0
    # probabilities: class 1 above 0.5, the arg-max of two classes (0.5 is class 0)
    assert bootstrap_binary_ci("acc", [0.9, 0.5, 0.2], [1, 0, 0], n_resamples=10).estimate == 1.0
    # no predicted positive: precision is 0, as in classification_metrics
    assert bootstrap_binary_ci("precision", [0, 0], [1, 0], n_resamples=10).estimate == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="metric must be one of"):
        bootstrap_binary_ci("dice", [1], [1])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        bootstrap_auc_ci([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(lambda w: w.sum(axis=1), 3, confidence=1.5)
    with pytest.raises(ValueError, match="groups names"):
        bootstrap_mean_ci([1.0, 2.0], groups=["a"])


def _detection_images(rng: np.random.Generator, n: int) -> list[dict]:
    """``n`` 2D images with 0-3 ground-truth boxes and noisy detections near some of them, plus false positives;
    scores are rounded so that some are tied across images."""
    images = []
    for i in range(n):
        gt = [[x, x, x + 8, x + 8] for x in rng.integers(0, 80, size=rng.integers(0, 4))]
        pred, scores = [], []
        for box in gt:
            if rng.random() < 0.7:
                pred.append([c + rng.integers(-2, 3) for c in box])
                scores.append(round(float(rng.random()), 1))
        for x in rng.integers(0, 80, size=rng.integers(0, 4)):
            pred.append([x + 100, x, x + 108, x + 8])
            scores.append(round(float(rng.random()), 1))
        images.append({"image": f"img{i}", "gt_boxes": gt, "pred_boxes": pred, "pred_scores": scores})
    return images


@pytest.mark.parametrize("mode", ["luna16", "step"])
def test_cpm_interval_weights_equal_replicated_scans(mode, monkeypatch):
    """A draw that weights image i by w_i gives the CPM of the set holding image i w_i times: checked against
    :func:`cpm` on the replicated set, for two seeds' detections averaged, and the estimate is the seeds' mean CPM."""
    from common.metrics import bootstrap as module
    from common.metrics.detection import cpm, froc_matches

    rng = np.random.default_rng(3)
    seeds = [_detection_images(rng, 12), _detection_images(rng, 12)]
    for s in seeds[1]:  # the second seed predicts the first seed's images (same ground truth)
        s["gt_boxes"] = seeds[0][int(s["image"][3:])]["gt_boxes"]
    runs = [froc_matches(s) for s in seeds]
    cis = module.bootstrap_cpm_ci(runs, mode=mode, n_resamples=50, seed=0)
    assert set(cis) == {"cpm", "sens@0.125", "sens@0.25", "sens@0.5", "sens@1", "sens@2", "sens@4", "sens@8"}
    assert cis["cpm"].estimate == pytest.approx(np.mean([cpm(s, mode=mode)["cpm"] for s in seeds]))
    assert cis["cpm"].low <= cis["cpm"].estimate <= cis["cpm"].high
    assert cis["cpm"].n_resamples == 50 and cis["cpm"].unit == "cases"
    for weights in ([2, 0, 1, 3, 0, 0, 1, 1, 2, 0, 1, 1], [3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], [0] * 11 + [1]):
        replicated = [[img for img, w in zip(s, weights) for _ in range(w)] for s in seeds]
        direct = [cpm(r, mode=mode) for r in replicated]
        # every draw is this weight vector: the interval collapses onto the statistic of the draw
        monkeypatch.setattr(module, "resample_weights", lambda n, g, b, rng, w=weights: np.asarray([w] * b, float))
        got = module.bootstrap_cpm_ci(runs, mode=mode, n_resamples=3, seed=0)
        if not direct[0]["froc"]["num_gt"]:
            assert got["cpm"].n_resamples == 0  # no nodule drawn: undefined, left out
            continue
        assert got["cpm"].low == pytest.approx(np.mean([d["cpm"] for d in direct]))
        assert got["sens@1"].high == pytest.approx(np.mean([d["sensitivities"][1.0] for d in direct]))


def test_cpm_interval_patients_and_bad_runs():
    from common.metrics.bootstrap import bootstrap_cpm_ci
    from common.metrics.detection import froc_matches

    images = _detection_images(np.random.default_rng(0), 8)
    runs = [froc_matches(images)]
    ci = bootstrap_cpm_ci(runs, groups=[i // 2 for i in range(8)], n_resamples=20)["cpm"]
    assert ci.unit == "patients" and ci.n_units == 4 and ci.n_cases == 8
    with pytest.raises(ValueError, match="same test images"):
        bootstrap_cpm_ci([runs[0], runs[0][:-1]])
    with pytest.raises(ValueError, match="at least one run"):
        bootstrap_cpm_ci([])


@pytest.mark.parametrize("duplicates", ["ignore", "fp"])
def test_attribute_matches_give_the_cpm_by_attribute(duplicates):
    """The matches restricted to one size give :func:`cpm_by_attribute`'s CPM of that size (hits on nodules of other
    sizes ignored, false positives kept), so the grid's interval of a size column is around the table's value."""
    from common.metrics.bootstrap import bootstrap_cpm_ci
    from common.metrics.detection import attribute_matches, cpm_by_attribute, froc_matches

    images = _detection_images(np.random.default_rng(5), 16)
    sizes = ["small", "large"]
    for i, img in enumerate(images):
        img["size"] = [sizes[(i + j) % 2] for j in range(len(img["gt_boxes"]))]
        if img["pred_boxes"]:  # a duplicate of the first detection, to exercise both duplicate rules
            img["pred_boxes"] = img["pred_boxes"] + [img["pred_boxes"][0]]
            img["pred_scores"] = img["pred_scores"] + [img["pred_scores"][0]]  # tied: right after the first
    matches = froc_matches(images, duplicates=duplicates, attributes=["size"])
    assert matches[3]["attributes"]["size"] == images[3]["size"]
    expected = cpm_by_attribute(images, "size", duplicates=duplicates, values=sizes)
    for value in sizes:
        restricted = [attribute_matches(m, "size", value) for m in matches]
        assert sum(m["num_gt"] for m in restricted) == sum(s == value for i in images for s in i["size"])
        got = bootstrap_cpm_ci([restricted], n_resamples=10)["cpm"].estimate
        assert got == pytest.approx(expected[value])
    assert expected["small"] != pytest.approx(expected["large"])  # the restriction matters
    with pytest.raises(KeyError, match="attenuation"):
        attribute_matches(matches[0], "attenuation", "solid")
