"""Feature-space outlier filter for synthetic images (Han thesis sec. 4: discarding weird-looking images)."""

import numpy as np
import pytest
import torch
from common.metrics import FeatureOutlierFilter

from tests.builders import blobs


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
