"""Feature-space outlier filter for synthetic images (Han thesis sec. 4: discarding weird-looking images)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from common.metrics import FeatureOutlierFilter, filter_synthetic_datalist


def blobs(n, seed, size=16):
    """Smooth 'anatomy-like' images: a bright disc at a jittered centre plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        cy, cx = size / 2 + rng.normal(0, 1, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (size / 3) ** 2).astype(np.float32)
        out.append(disc + rng.normal(0, 0.05, (size, size)).astype(np.float32))
    return np.stack(out)[:, None]


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_filter_rejects_planted_noise_images_and_keeps_inliers(method):
    # features: 4x4 average-pooled images (16 dimensions)
    pool = torch.nn.AvgPool2d(4)
    real = pool(torch.from_numpy(blobs(100, 0))).flatten(1)
    inliers = pool(torch.from_numpy(blobs(20, 1))).flatten(1)
    noise = pool(torch.rand(5, 1, 16, 16)).flatten(1)  # weird-looking: uniform noise
    filt = FeatureOutlierFilter(method, k=3, quantile=0.99).fit(real)
    result = filt.filter(torch.cat([inliers, noise]))
    assert set(range(20, 25)) <= set(result.rejected)  # every planted outlier is rejected
    assert len(set(result.kept) & set(range(20))) >= 17  # nearly all inliers are kept (q = 0.99)
    assert result.scores[20:].min() > np.median(result.scores[:20])
    assert result.threshold == pytest.approx(np.quantile(result.reference_scores, 0.99))
    assert sorted(result.kept + result.rejected) == list(range(25))


def test_threshold_quantile_behaviour():
    real = torch.from_numpy(blobs(40, 0)).flatten(1)
    loose = FeatureOutlierFilter("knn", k=2, quantile=1.0).fit(real)
    strict = FeatureOutlierFilter("knn", k=2, quantile=0.5).fit(real)
    assert strict.threshold < loose.threshold
    # against itself (leave-one-out scores), a quantile q keeps about q of the real images
    assert strict.reference_scores.shape == (40,)
    assert (strict.reference_scores <= strict.threshold).mean() == pytest.approx(0.5, abs=0.05)
    test = torch.from_numpy(blobs(30, 5)).flatten(1)
    assert strict.filter(test).rejection_rate >= loose.filter(test).rejection_rate
    fixed = FeatureOutlierFilter("knn", k=2, threshold=0.0).fit(real)
    assert fixed.filter(test).rejection_rate == 1.0
    with pytest.raises(ValueError):
        FeatureOutlierFilter("knn", k=40).fit(real)
    with pytest.raises(ValueError):
        FeatureOutlierFilter("lof")


def write_list(folder, name, images, classes, extra=None):
    entries = []
    for i, (img, c) in enumerate(zip(images, classes)):
        path = folder / f"{name}_{i}.nii.gz"
        nib.save(nib.Nifti1Image(img[0], np.eye(4)), path)
        entries.append({"image": path.name, "class": int(c), **(extra or {})})
    datalist = folder / f"{name}.json"
    datalist.write_text(json.dumps({"training": entries}))
    return datalist


def test_filter_synthetic_datalist_writes_kept_and_rejected(tmp_path):
    real = write_list(tmp_path, "real", blobs(30, 0), [1] * 30)
    fake_imgs = np.concatenate([blobs(10, 3), np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)])
    fake = write_list(tmp_path, "fake", fake_imgs, [1] * 13, {"synthetic": True})
    report = tmp_path / "outliers.json"
    out = tmp_path / "kept.json"
    summary = filter_synthetic_datalist(
        str(fake),
        str(real),
        2,
        16,
        output_datalist=str(out),
        report_file=str(report),
        features="pixels",
        method="knn",
        k=3,
        quantile=0.99,
        real_class=1,
    )
    data = json.loads(out.read_text())
    rejected = {e["image"] for e in data["rejected"]}
    assert {"fake_10.nii.gz", "fake_11.nii.gz", "fake_12.nii.gz"} <= rejected
    assert len(data["training"]) + len(data["rejected"]) == 13 and len(data["training"]) >= 9
    assert all(
        "exceeds the threshold" in e["outlier_reason"] and e["outlier_score"] > e["outlier_threshold"]
        for e in data["rejected"]
    )
    assert summary["feature_space"] == "pixels" and summary["num_rejected"] == len(rejected)
    assert len(json.loads(report.read_text())["scores"]) == 13
    # the named feature extractor path works too (random-init fallback, named in the summary)
    summary = filter_synthetic_datalist(str(fake), str(real), 2, 16, output_datalist=str(out), features="resnet10", k=3)
    assert "fallback" in summary["feature_space"]
