"""The converters' preprocessing chain (:class:`common.data.preprocessing.VolumePreprocessing`): geometry follows the
affine, crop/pad keeps the spacing, labels stay integer, intensity normalisations, the lung mask's axial axis."""

import nibabel as nib
import numpy as np
import pytest
from common.data.preprocessing import VolumePreprocessing, lung_mask, normalize_intensity, parse_intensity


def _world(affine: np.ndarray, voxel) -> np.ndarray:
    return nib.affines.apply_affine(affine, np.asarray(voxel, dtype=np.float64))


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


@pytest.fixture()
def case():
    """An LPS-like anisotropic int16 volume (20, 24, 10), a uint8 label cube, and its affine (x, y flipped)."""
    rng = np.random.default_rng(0)
    image = (rng.random((20, 24, 10)) * 100 + 50).astype(np.int16)
    label = np.zeros(image.shape, np.uint8)
    label[4:8, 14:20, 3:6] = 2
    affine = np.diag([-2.0, -1.0, 3.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    return image, label, affine


def test_identity_returns_the_inputs(case):
    image, label, affine = case
    out = VolumePreprocessing()([image], label, affine)
    assert out.channels[0] is image and out.label is label and not out.masks
    assert VolumePreprocessing().is_identity and VolumePreprocessing().as_dict() == {}


def test_orientation_spacing_and_resize_keep_the_world_position(case):
    image, label, affine = case
    pre = VolumePreprocessing(orientation="ras", spacing=(1, 1, 1.5), size=(32, 30))
    out = pre([image, image], label, affine)
    assert pre.orientation == "RAS" and nib.aff2axcodes(out.affine) == ("R", "A", "S")
    assert out.channels[0].shape == out.label.shape and out.label.shape[:2] == (32, 30)
    assert out.channels[0].dtype == np.int16 and out.label.dtype == np.uint8  # no intensity step: dtypes kept
    assert set(np.unique(out.label)) == {0, 2}
    # the labelled cube is where it was in the world (within a voxel of the coarser grid)
    before = _world(affine, _centroid(label > 0))
    after = _world(out.affine, _centroid(out.label > 0))
    assert np.abs(before - after).max() < 1.6
    # resampled intensities stay within the input's range (linear interpolation)
    assert image.min() <= out.channels[0].min() and out.channels[0].max() <= image.max()


def test_crop_pad_keeps_the_spacing_and_pads_with_the_minimum(case):
    image, label, affine = case
    shifted = image.astype(np.int16) - 200
    out = VolumePreprocessing(size=(30, 16), size_mode="crop_pad")([shifted], label, affine)
    assert out.channels[0].shape == (30, 16, 10)
    np.testing.assert_allclose(np.abs(np.diag(out.affine))[:3], [2.0, 1.0, 3.0])
    assert out.channels[0][0, 0, 0] == shifted.min()  # padded x: the channel's minimum, not 0
    np.testing.assert_array_equal(out.channels[0][5:25], shifted[:, 4:20])  # centre crop in y, 5 voxels padded in x
    np.testing.assert_allclose(_world(out.affine, [5, 0, 0]), _world(affine, [0, 4, 0]))


def test_size_uses_the_slice_axis():
    image = np.zeros((8, 6, 5), np.float32)
    out = VolumePreprocessing(size=(4, 3))([image], image.astype(np.uint8), np.eye(4), slice_axis=0)
    assert out.channels[0].shape == (8, 4, 3)


def test_intensity_normalisations():
    rng = np.random.default_rng(1)
    image = np.zeros((2, 10, 10), np.float32)
    image[:, 2:8, 2:8] = rng.normal(100, 20, (2, 6, 6))
    image[1] *= 3
    z = normalize_intensity(image, "zscore")
    for c in range(2):
        inside = z[c][image[c] != 0]
        assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-3
    assert (z[image == 0] == 0).all()  # the skull-stripped background stays 0
    ct = np.linspace(-2000, 2000, 50, dtype=np.float32)[None]
    w = normalize_intensity(ct, "window:-1000:400")
    assert w.min() == 0 and w.max() == 1
    np.testing.assert_allclose(
        w[0][(ct[0] > -1000) & (ct[0] < 400)], (ct[0][(ct[0] > -1000) & (ct[0] < 400)] + 1000) / 1400, atol=1e-6
    )
    r = normalize_intensity(image, "range:-1:1")
    assert np.allclose(r.reshape(2, -1).min(1), -1) and np.allclose(r.reshape(2, -1).max(1), 1)
    p = normalize_intensity(image, "percentile:1:99")
    assert p.min() == 0 and p.max() == 1
    assert parse_intensity("percentile") == ("percentile", (0.5, 99.5))


@pytest.mark.parametrize(
    "spec, message",
    [("zscale", "unknown mode"), ("window", "needs its bounds"), ("window:400:-1000", "below"),
     ("percentile:0:101", "[0, 100]"), ("range:a:b", "numbers"), ("zscore:1", "takes 0")],
)  # fmt: skip
def test_intensity_specs_are_checked(spec, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        VolumePreprocessing(intensity=spec)


@pytest.mark.parametrize(
    "kwargs", [{"orientation": "RAX"}, {"orientation": "RRS"}, {"spacing": (1, 1)}, {"spacing": (1, 0, 1)},
               {"size": (256,)}, {"size": (256.5, 256)}, {"size_mode": "pad"}, {"n4_shrink": 0}],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        VolumePreprocessing(**kwargs)


def _chest(axial_axis: int) -> np.ndarray:
    """Air outside a body (40 HU) holding two lungs (-850 HU) that run through the whole cranio-caudal extent."""
    v = np.full((12, 24, 24), -1000.0)
    v[:, 2:22, 2:22] = 40.0
    v[:, 4:20, 4:9] = -850.0
    v[:, 4:20, 15:20] = -850.0
    return np.moveaxis(v, 0, axial_axis)


@pytest.mark.parametrize("axis", [0, 2])
def test_lung_mask_follows_the_axial_axis(axis):
    mask = lung_mask(_chest(axis), axial_axis=axis)
    lungs = np.moveaxis(mask, axis, 0)
    assert lungs[:, 4:20, 4:9].all() and lungs[:, 4:20, 15:20].all() and not lungs[:, :2].any()
    assert not lungs[:, 8:16, 11:13].any()  # the mediastinum between the lungs
    # the lungs touch the cranio-caudal ends: taken as border there, they vanish
    other = 2 if axis == 0 else 0
    assert not lung_mask(_chest(axis), axial_axis=other).any()
