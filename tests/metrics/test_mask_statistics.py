"""Tests of the mask realism statistics on hand-drawn label maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from common.metrics import class_area_fractions, class_component_counts, compare_mask_sets, mask_statistics


def _two_squares() -> np.ndarray:
    """8x8 mask: two 2x2 squares of class 1 (apart), one 1x3 bar of class 2, the rest background."""
    mask = np.zeros((8, 8), dtype=np.int64)
    mask[0:2, 0:2] = 1
    mask[5:7, 5:7] = 1
    mask[7, 0:3] = 2
    return mask


def test_area_fractions_and_components_2d():
    mask = _two_squares()
    np.testing.assert_allclose(class_area_fractions(mask, 3, 2), [53 / 64, 8 / 64, 3 / 64])
    np.testing.assert_array_equal(class_component_counts(mask, 3, 2), [1, 2, 1])
    # channel-first (1, H, W), float with integer values and tensors give the same
    np.testing.assert_array_equal(class_component_counts(torch.as_tensor(mask[None]).float(), 3, 2), [1, 2, 1])
    # a class absent from the mask has area 0 and 0 components
    np.testing.assert_array_equal(class_component_counts(mask, 4, 2), [1, 2, 1, 0])


def test_connectivity_joins_diagonal_neighbours():
    mask = np.zeros((4, 4), dtype=np.int64)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = 1  # a diagonal line
    assert class_component_counts(mask, 2, 2, connectivity=1)[1] == 3
    assert class_component_counts(mask, 2, 2, connectivity=2)[1] == 1
    with pytest.raises(ValueError, match="connectivity"):
        class_component_counts(mask, 2, 2, connectivity=3)


def test_3d_components():
    mask = np.zeros((1, 5, 5, 5), dtype=np.uint8)
    mask[0, 0, 0, 0:2] = 1
    mask[0, 4, 4, 4] = 1
    mask[0, 1, 1, 1] = 1  # shares only an edge with (0, 0, 1): joined by connectivity >= 2
    np.testing.assert_array_equal(class_component_counts(mask, 2, 3), [1, 3])
    np.testing.assert_array_equal(class_component_counts(mask, 2, 3, connectivity=2), [1, 2])
    np.testing.assert_allclose(class_area_fractions(mask, 2, 3), [121 / 125, 4 / 125])


def test_bad_label_maps():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_area_fractions(np.full((4, 4), 2), 2, 2)
    with pytest.raises(ValueError, match="integer"):
        class_area_fractions(np.full((4, 4), 0.5), 2, 2)
    with pytest.raises(ValueError, match="2D label map"):
        class_area_fractions(np.zeros((2, 4, 4)), 2, 2)
    with pytest.raises(ValueError, match="mask 1"):
        mask_statistics([np.zeros((4, 4)), -np.ones((4, 4))], 2, 2)


def test_identical_sets_have_zero_distance_and_json_output():
    masks = [_two_squares(), np.zeros((8, 8), dtype=np.int64), np.rot90(_two_squares()).copy()]
    result = compare_mask_sets(masks, list(masks), 3, 2, class_names=["background", "lesion", "organ"])
    assert json.loads(json.dumps(result)) == result
    assert result["num_real"] == result["num_synthetic"] == 3 and result["connectivity"] == 1
    assert result["classes_only_in_synthetic"] == [] and result["classes_missing_in_synthetic"] == []
    lesion = result["classes"]["lesion"]
    assert lesion["components"]["wasserstein"] == 0.0 and lesion["area_fraction"]["wasserstein"] == 0.0
    assert lesion["components"]["real_mean"] == pytest.approx(4 / 3)  # 2, 0, 2 components
    assert lesion["components"]["real_std"] == pytest.approx(np.std([2, 0, 2]))
    assert lesion["present_real"] == lesion["present_synthetic"] == pytest.approx(2 / 3)
    assert result["mean_wasserstein_area_fraction"] == 0.0 and result["mean_wasserstein_components"] == 0.0


def test_synthetic_extra_class_and_shifted_counts():
    real = np.zeros((2, 6, 6), dtype=np.int64)
    real[:, 0:2, 0:2] = 1  # one lesion in each real mask
    synthetic = np.zeros((2, 1, 6, 6), dtype=np.int64)
    synthetic[:, 0, 0:2, 0:2] = 1
    synthetic[:, 0, 4:6, 4:6] = 1  # two lesions in each synthetic mask
    synthetic[1, 0, 3, 0] = 2  # and a class no real mask has
    result = compare_mask_sets(real, synthetic, 3, 2)
    assert result["classes_only_in_synthetic"] == ["2"]
    assert result["classes"]["2"]["present_synthetic"] == 0.5 and result["classes"]["2"]["present_real"] == 0.0
    lesion = result["classes"]["1"]
    assert lesion["components"]["wasserstein"] == pytest.approx(1.0)  # every mask: 1 -> 2 components
    assert lesion["area_fraction"]["wasserstein"] == pytest.approx(4 / 36)  # 4 -> 8 of 36 pixels
    with pytest.raises(ValueError, match="class_names"):
        compare_mask_sets(real, synthetic, 3, 2, class_names=["a", "b"])
    with pytest.raises(ValueError, match="synthetic set: mask 1"):
        compare_mask_sets(real, synthetic, 2, 2)
