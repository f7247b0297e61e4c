"""Tests of the brain MR phantom's difficulty knobs (``common.data.phantoms.difficulty``)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data.phantoms import make_brain_metastases, make_brain_mr, prepare_phantom
from common.data.phantoms.difficulty import BRAIN_MR_PRESETS, BrainMRDifficulty, resolve_difficulty
from scipy import ndimage

SPLITS = ("training", "validation", "test")


def _arrays(datalist: Path) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(image (C, ...), mask, class) of every entry, in the datalist's order."""
    data = json.loads(Path(datalist).read_text())
    out = []
    for split in SPLITS:
        for entry in data[split]:
            image = np.stack([np.asarray(nib.load(datalist.parent / f).dataobj) for f in entry["image"]])
            out.append((image, np.asarray(nib.load(datalist.parent / entry["label"]).dataobj), entry["class"]))
    return out


def _digest(datalist: Path) -> str:
    """SHA-256 of every array of a set (file names, dtypes and bytes), in the datalist's order."""
    data = json.loads(Path(datalist).read_text())
    h = hashlib.sha256()
    for split in SPLITS:
        for entry in data[split]:
            files = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
            for f in files + [entry["label"]]:
                a = np.asarray(nib.load(datalist.parent / f).dataobj)
                h.update(f.encode())
                h.update(str(a.dtype).encode())
                h.update(a.tobytes())
    return h.hexdigest()


# digests of the sets generated at commit 994c4e7, before the difficulty knobs existed
@pytest.mark.parametrize(
    "make, kwargs, expected",
    [
        (
            make_brain_mr,
            {"spatial_dims": 2, "num_patients": 4, "cases_per_patient": 2, "image_size": 24, "seed": 3},
            "1e5d5264c661c41b76f2eb045b2e786d0861df7161aec788de36a43af21282bf",
        ),
        (
            make_brain_mr,
            {"spatial_dims": 3, "num_patients": 2, "image_size": 16, "seed": 5},
            "3c8874820779777a823f4b6e3494d247f52b491bd482a577b2b5ced426e79446",
        ),
        (
            make_brain_metastases,
            {"num_patients": 3, "image_size": 32, "seed": 1},
            "fdceffc604d3f73fb65291b22926e38396cdec57e148e671ec1d6128b13ffb16",
        ),
    ],
)
def test_default_difficulty_is_bit_identical_to_before(tmp_path, make, kwargs, expected):
    assert _digest(make(tmp_path / "set", **kwargs)) == expected
    if make is make_brain_mr:  # the "default" preset and an empty mapping are the same phantom
        assert _digest(make(tmp_path / "preset", **kwargs, difficulty="default")) == expected
        assert _digest(make(tmp_path / "empty", **kwargs, difficulty={})) == expected


def test_resolve_difficulty():
    assert resolve_difficulty(None) == BrainMRDifficulty() == BRAIN_MR_PRESETS["default"]
    assert resolve_difficulty("calibrated_segmentation") is BRAIN_MR_PRESETS["calibrated_segmentation"]
    knobs = resolve_difficulty({"preset": "calibrated_segmentation", "noise": 0.1})
    assert knobs.noise == 0.1 and knobs.lesion_contrast == BRAIN_MR_PRESETS["calibrated_segmentation"].lesion_contrast
    assert resolve_difficulty({"lesion_contrast": [1, 0.5, 1, 0.2]}).channel_contrast() == (1.0, 0.5, 1.0, 0.2)
    assert resolve_difficulty({"lesion_radius": [0.05, 0.1]}).as_dict()["lesion_radius"] == [0.05, 0.1]
    with pytest.raises(ValueError, match="Unknown difficulty preset"):
        resolve_difficulty("hard")
    with pytest.raises(ValueError, match="Unknown difficulty knobs"):
        resolve_difficulty({"contrast": 0.5})
    for bad in ({"lesion_contrast": -1}, {"lesion_contrast": [1, 1]}, {"lesion_radius": [0.2, 0.1]}, {"noise": -0.1}):
        with pytest.raises(ValueError):
            resolve_difficulty(bad)


def _pair(tmp_path: Path, a: dict, b: dict, **kwargs) -> tuple[list, list]:
    args = {"num_patients": 4, "cases_per_patient": 2, "image_size": 48, "positive_fraction": 1.0, **kwargs}
    return _arrays(make_brain_mr(tmp_path / "a", **args, difficulty=a)), _arrays(
        make_brain_mr(tmp_path / "b", **args, difficulty=b)
    )


def test_lesion_contrast_changes_the_tumour_only(tmp_path):
    full, low = _pair(tmp_path, {}, {"lesion_contrast": 0.25})
    for (image, mask, _), (image_low, mask_low, _) in zip(full, low):
        np.testing.assert_array_equal(mask, mask_low)  # same draws, same anatomy and tumour
        near = ndimage.binary_dilation(mask > 0, iterations=3)
        np.testing.assert_allclose(image[:, ~near], image_low[:, ~near], atol=1e-6)  # float rounding of the blur
        flair = 3
        tumour, normal = mask > 0, ~near & (image[flair] > 0)
        contrast = image[flair][tumour].mean() - np.median(image[flair][normal])
        contrast_low = image_low[flair][tumour].mean() - np.median(image_low[flair][normal])
        assert contrast > 0.2 and 0.1 * contrast < contrast_low < 0.5 * contrast


def test_lesion_radius_and_noise(tmp_path):
    big, small = _pair(tmp_path, {}, {"lesion_radius": [0.06, 0.08]})
    assert np.mean([(m > 0).sum() for _, m, _ in small]) < 0.5 * np.mean([(m > 0).sum() for _, m, _ in big])
    quiet, noisy = _pair(tmp_path / "noise", {"noise": 0.0, "texture": 0.0}, {"noise": 0.05, "texture": 0.0})
    for (image, _, _), (image_noisy, _, _) in zip(quiet, noisy):
        inside = (image > 0.1) & (image < 0.9)  # away from the clipping at 0 and 1
        assert 0.04 < float((image_noisy - image)[inside].std()) < 0.06


def test_anatomy_spread(tmp_path):
    # 3D: the head's footprint depends on the anatomy only (a 2D slice's also on its height)
    kwargs = {"spatial_dims": 3, "num_patients": 4, "image_size": 20, "positive_fraction": 0.0}
    fixed = _arrays(make_brain_mr(tmp_path / "fixed", **kwargs, difficulty={"anatomy_spread": 0.0}))
    heads = [image.sum(0) > 0 for image, _, _ in fixed]
    assert all(np.array_equal(heads[0], h) for h in heads[1:])  # one head shape for every patient
    default = _arrays(make_brain_mr(tmp_path / "default", **kwargs))
    heads = [image.sum(0) > 0 for image, _, _ in default]
    assert not all(np.array_equal(heads[0], h) for h in heads[1:])


def test_difficulty_recorded_and_prepare_phantom_warns(tmp_path, caplog):
    kwargs = {"num_patients": 2, "cases_per_patient": 1, "image_size": 16}
    datalist = Path(prepare_phantom(tmp_path / "set", "brain_mr_2d", **kwargs, difficulty="calibrated_segmentation"))
    parameters = json.loads(datalist.read_text())["parameters"]
    assert parameters["difficulty"] == "calibrated_segmentation"
    assert parameters["difficulty_knobs"] == BRAIN_MR_PRESETS["calibrated_segmentation"].as_dict()
    default = json.loads(make_brain_mr(tmp_path / "default", **kwargs).read_text())["parameters"]
    assert default["difficulty"] is None and default["difficulty_knobs"] == BrainMRDifficulty().as_dict()
    with caplog.at_level(logging.INFO, logger="common.data"):
        prepare_phantom(tmp_path / "set", "brain_mr_2d", **kwargs, difficulty="calibrated_segmentation")
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        prepare_phantom(tmp_path / "set", "brain_mr_2d", **kwargs, difficulty=None)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "difficulty='calibrated_segmentation' (asked: None)" in warning.getMessage()


def test_a_set_written_before_the_difficulty_setting_counts_as_the_default(tmp_path, caplog):
    """A datalist without ``difficulty`` in its parameters (written by an earlier version) was generated at the default
    difficulty: asking for a calibrated one warns that the existing set is kept."""
    kwargs = {"num_patients": 2, "cases_per_patient": 1, "image_size": 16}
    datalist = Path(prepare_phantom(tmp_path / "set", "brain_mr_2d", **kwargs))
    data = json.loads(datalist.read_text())
    del data["parameters"]["difficulty"], data["parameters"]["difficulty_knobs"]
    datalist.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="common.data"):
        prepare_phantom(tmp_path / "set", "brain_mr_2d", **kwargs)  # default asked: nothing to say
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        prepare_phantom(tmp_path / "set", "brain_mr_2d", **kwargs, difficulty="calibrated_classification")
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "difficulty=None (asked: 'calibrated_classification')" in warning.getMessage()
