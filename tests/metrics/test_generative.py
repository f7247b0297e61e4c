"""Tests of FID, KID, MMD and SSIM diversity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from common.metrics import build_feature_extractor, extract_features, fid, kid, mmd, ssim_diversity


def _smooth(n: int, seed: int, size: int = 32, spatial_dims: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, *([4] * spatial_dims), generator=g)
    mode = "bilinear" if spatial_dims == 2 else "trilinear"
    return F.interpolate(low, size=(size,) * spatial_dims, mode=mode, align_corners=False)


@pytest.fixture(scope="module")
def feature_sets() -> dict[str, torch.Tensor]:
    ext = build_feature_extractor(2, 1, arch="resnet10", input_size=32)
    noise = torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    return {
        "a": extract_features(ext, _smooth(32, 0)),
        "b": extract_features(ext, _smooth(32, 1)),
        "noise": extract_features(ext, noise),
    }


def test_fid_self_same_distribution_and_noise(feature_sets):
    # the first 64 of the 512 features keep scipy's sqrtm (inside FIDMetric) fast
    a, b, noise = (feature_sets[k][:, :64] for k in ("a", "b", "noise"))
    scale = float(torch.cov(a.T.double()).trace())
    assert abs(fid(a, a)) < 1e-3 * scale
    same, far = fid(a, b), fid(a, noise)
    assert same > 0 and far > 5 * same


def test_fid_matches_numpy_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = rng.normal(loc=0.5, scale=1.5, size=(30, 4)) @ rng.normal(size=(4, 4))
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(expected, rel=1e-4)
    assert fid(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(fid(torch.from_numpy(y), torch.from_numpy(x)))
    with pytest.raises(ValueError, match="feature sizes"):
        fid(torch.zeros(4, 3), torch.zeros(4, 2))


def test_kid_self_and_noise(feature_sets):
    a, b, noise = feature_sets["a"], feature_sets["b"], feature_sets["noise"]
    far, far_std = kid(a, noise, num_subsets=10, subset_size=16)
    assert far > 0 and far_std >= 0
    assert abs(kid(a, a, num_subsets=10, subset_size=16)[0]) < 0.1 * far
    assert abs(kid(a, b, num_subsets=10, subset_size=16)[0]) < 0.2 * far
    assert kid(a, noise, num_subsets=10, subset_size=16) == (far, far_std)  # seeded


def test_kid_unbiased_estimator_by_hand():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)

    def k(u, v):
        return (float(u @ v) / 3 + 1) ** 3

    m = 5
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    # subset_size is clipped to 5, so the single subset holds every sample (order does not matter)
    mean, std = kid(x, y, num_subsets=1, subset_size=1000)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    assert std == 0.0
    mean3, std3 = kid(x, y, num_subsets=3, subset_size=1000)
    assert mean3 == pytest.approx(mean, rel=1e-10) and std3 == pytest.approx(0.0, abs=1e-12)


def test_mmd_matches_formula_and_trims():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(6, 1, 8, 8, generator=g), torch.rand(4, 1, 8, 8, generator=g) + 0.3
    x, y = real[:4].reshape(4, -1).double(), fake.reshape(4, -1).double()
    n = 4
    off = (x @ x.T).sum() - (x @ x.T).trace()
    off_y = (y @ y.T).sum() - (y @ y.T).trace()
    expected = off / (n * (n - 1)) + off_y / (n * (n - 1)) - 2 * (x @ y.T).sum() / n**2
    assert mmd(real, fake) == pytest.approx(float(expected), rel=1e-4)
    assert mmd(real, real + 0.5) > mmd(real, real + 0.1)
    with pytest.raises(ValueError, match="same channels and spatial size"):
        mmd(real, torch.rand(4, 1, 8, 9))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ssim_diversity_identical_and_noise(spatial_dims):
    size = 24 if spatial_dims == 2 else 16
    one = _smooth(1, 0, size=size, spatial_dims=spatial_dims)
    identical = one.repeat(4, *([1] * (spatial_dims + 1)))
    assert ssim_diversity(identical, spatial_dims=spatial_dims) == pytest.approx(1.0, abs=1e-4)
    noise = torch.rand(4, 1, *([size] * spatial_dims), generator=torch.Generator().manual_seed(1))
    low = ssim_diversity(noise, spatial_dims=spatial_dims, num_pairs=6)
    assert low < 0.1
    near = identical + 0.05 * noise
    assert 0.3 < ssim_diversity(near, spatial_dims=spatial_dims) < 1.0


def test_ssim_diversity_multiscale_and_pairs():
    one = _smooth(1, 0, size=64)
    assert ssim_diversity(one.repeat(3, 1, 1, 1), multiscale=True) == pytest.approx(1.0, abs=1e-4)
    noise = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    assert ssim_diversity(noise, multiscale=True) < 0.2
    with pytest.raises(ValueError, match="too small for multi-scale SSIM"):
        ssim_diversity(torch.rand(3, 1, 16, 16), multiscale=True)
    with pytest.raises(ValueError, match="at least 2"):
        ssim_diversity(torch.rand(1, 1, 16, 16))
    # 10 images, 5 pairs sampled with a seed: deterministic
    imgs = _smooth(10, 4, size=16)
    assert ssim_diversity(imgs, num_pairs=5, seed=3) == ssim_diversity(imgs, num_pairs=5, seed=3)
