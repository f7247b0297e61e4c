"""N4 bias-field correction (Vu et al., paper 004, sec. 4.4) removes a synthetic multiplicative bias field."""

import numpy as np
import pytest
from common.data.preprocessing import n4_bias_field_correction

FAST = {"num_iterations": (20, 20)}


def biased_phantom(shape, seed=0):
    """A uniform region of value 100 with noise (sd 2) inside a zero background, times a ramp 0.6..1.4 on the last
    axis. Returns the biased image, the unbiased one and the region's slices."""
    rng = np.random.default_rng(seed)
    region = tuple(slice(s // 8, s - s // 8) for s in shape)
    clean = np.zeros(shape, np.float32)
    clean[region] = 100.0
    clean = np.clip(clean + rng.normal(0.0, 2.0, shape).astype(np.float32), 0.0, None)
    ramp = np.linspace(0.6, 1.4, shape[-1], dtype=np.float32)
    return clean * ramp, clean, region


def cv(x):
    return float(x.std() / x.mean())


@pytest.mark.parametrize("shape, shrink", [((16, 32, 32), 2), ((48, 48), 1), ((48, 48), 2)])
def test_n4_removes_a_multiplicative_ramp(shape, shrink):
    biased, clean, region = biased_phantom(shape)
    assert cv(biased[region]) > 0.15  # the ramp dominates: noise alone is cv 0.02
    corrected = n4_bias_field_correction(biased, shrink_factor=shrink, **FAST)
    assert corrected.shape == biased.shape and corrected.dtype == np.float32
    assert np.isfinite(corrected).all()
    assert cv(corrected[region]) < 0.5 * cv(biased[region])
    assert cv(corrected[region]) < 0.04  # close to the noise floor of 0.02
    # the corrected region is flat up to N4's free global scale: its profile along the ramp axis barely moves
    profile = corrected[region].mean(axis=tuple(range(len(shape) - 1)))
    assert profile.max() / profile.min() < 1.1


def test_n4_explicit_mask_and_anisotropic_spacing():
    biased, clean, region = biased_phantom((12, 32, 32), seed=1)
    mask = np.zeros(biased.shape, bool)
    mask[region] = True
    corrected = n4_bias_field_correction(
        biased, mask=mask, spacing=(2.5, 1.0, 1.0), num_control_points=(4, 5, 5), **FAST
    )
    assert cv(corrected[region]) < 0.5 * cv(biased[region])
    # the background is divided by the same field: zeros stay zero
    assert np.all(corrected[biased == 0] == 0)


def test_n4_flat_image_is_left_flat():
    rng = np.random.default_rng(2)
    flat = (100.0 + rng.normal(0.0, 2.0, (40, 40))).astype(np.float32)
    corrected = n4_bias_field_correction(flat, shrink_factor=1, **FAST)
    ratio = corrected / flat
    assert ratio.std() / ratio.mean() < 0.01  # no spurious field


def test_n4_rejects_bad_input():
    image = np.ones((8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="2D or 3D"):
        n4_bias_field_correction(np.ones((2, 8, 8, 8), np.float32))
    with pytest.raises(ValueError, match="mask shape"):
        n4_bias_field_correction(image, mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="spacing"):
        n4_bias_field_correction(image, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="num_control_points"):
        n4_bias_field_correction(image, num_control_points=(4, 4))
    with pytest.raises(ValueError, match="no positive voxel"):
        n4_bias_field_correction(-image)
