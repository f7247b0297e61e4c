"""Tests of the detection phantoms' difficulty knobs (``common.data.phantoms.detection_difficulty``)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data.phantoms import make_brain_metastases, make_chest_ct, prepare_phantom
from common.data.phantoms.detection_difficulty import (
    BRAIN_METASTASES_PRESETS,
    CHEST_CT_PRESETS,
    BrainMetastasesDifficulty,
    ChestCTDifficulty,
    resolve_brain_metastases_difficulty,
    resolve_chest_ct_difficulty,
)

SPLITS = ("training", "validation", "test")


def _digest(datalist: Path) -> str:
    """SHA-256 of every array of a set (file names, dtypes and bytes) and of its boxes, in the datalist's order."""
    data = json.loads(Path(datalist).read_text())
    h = hashlib.sha256()
    for split in SPLITS:
        for entry in data[split]:
            for f in (entry["image"], entry["label"]):
                a = np.asarray(nib.load(datalist.parent / f).dataobj)
                h.update(f.encode())
                h.update(str(a.dtype).encode())
                h.update(a.tobytes())
    return h.hexdigest()


def _boxes(datalist: Path) -> list[list[list[int]]]:
    data = json.loads(Path(datalist).read_text())
    return [entry["box"] for split in SPLITS for entry in data[split]]


# digests of the sets generated at commit 2f97851, before the detection difficulty knobs existed
@pytest.mark.parametrize(
    "make, kwargs, expected",
    [
        (
            make_chest_ct,
            {"num_cases": 3, "image_size": 32, "seed": 2},
            "7482726c467e635a140ee90e95a14caf48ee9dfa0b3c8ebc7a1e7572e719ec99",
        ),
        (
            make_chest_ct,
            {"num_cases": 2, "image_size": [40, 36, 32], "nodules_per_case": [2, 4], "seed": 7},
            "1bc96d3d2c083e49d592dab3f41a254a14cf81b339fbb495c95b8b45cc55d8be",
        ),
        (
            make_brain_metastases,
            {"num_patients": 4, "cases_per_patient": 2, "image_size": 32, "max_lesions": 3, "seed": 2},
            "5384ecb60322bb9c1d64e3c8ee4c3e715a9b3d74a2e17c1f6a9f3090f799aa4c",
        ),
    ],
)
def test_default_difficulty_is_bit_identical_to_before(tmp_path, make, kwargs, expected):
    if make is make_brain_metastases:
        kwargs = {**kwargs, "positive_fraction": 0.75}
    assert _digest(make(tmp_path / "set", **kwargs)) == expected
    assert _digest(make(tmp_path / "preset", **kwargs, difficulty="default")) == expected
    assert _digest(make(tmp_path / "empty", **kwargs, difficulty={})) == expected


def test_resolve_difficulty():
    assert resolve_chest_ct_difficulty(None) == ChestCTDifficulty() == CHEST_CT_PRESETS["default"]
    assert resolve_chest_ct_difficulty("calibrated_detection") is CHEST_CT_PRESETS["calibrated_detection"]
    knobs = resolve_chest_ct_difficulty({"preset": "calibrated_detection", "noise": 5})
    assert knobs.noise == 5.0 and knobs.nodule_scale == CHEST_CT_PRESETS["calibrated_detection"].nodule_scale
    assert resolve_chest_ct_difficulty({"size_weights": [0, 1, 3]}).size_weights == (0.0, 0.25, 0.75)
    assert resolve_chest_ct_difficulty({"size_weights": [0, 1, 1]}).as_dict()["size_weights"] == [0.0, 0.5, 0.5]
    assert resolve_brain_metastases_difficulty(None) == BRAIN_METASTASES_PRESETS["default"]
    mets = resolve_brain_metastases_difficulty({"lesion_radius": [0.04, 0.06], "lesion_contrast": 0.5})
    assert mets.lesion_radius == (0.04, 0.06) and mets.as_dict()["lesion_radius"] == [0.04, 0.06]
    anatomy = mets.brain_mr_knobs()
    assert anatomy.lesion_contrast == 0.5 and anatomy.noise == BrainMetastasesDifficulty().noise


@pytest.mark.parametrize(
    "resolve, bad",
    [
        (resolve_chest_ct_difficulty, "hard"),
        (resolve_chest_ct_difficulty, {"lesion_contrast": 0.5}),  # a brain knob
        (resolve_chest_ct_difficulty, {"noise": -1.0}),
        (resolve_chest_ct_difficulty, {"nodule_scale": 10.0}),
        (resolve_chest_ct_difficulty, {"size_weights": [1, 1]}),
        (resolve_chest_ct_difficulty, {"size_weights": [0, 0, 0]}),
        (resolve_chest_ct_difficulty, 3),
        (resolve_brain_metastases_difficulty, {"nodule_scale": 1.0}),
        (resolve_brain_metastases_difficulty, {"lesion_radius": [0.1, 0.05]}),
        (resolve_brain_metastases_difficulty, {"texture": -0.1}),
    ],
)
def test_bad_difficulty(resolve, bad):
    with pytest.raises(ValueError):
        resolve(bad)


def test_chest_ct_knobs_change_the_nodules(tmp_path):
    args = {"num_cases": 2, "image_size": 48, "nodules_per_case": 3, "seed": 1, "split_fractions": (0.5, 0.0, 0.5)}
    base = make_chest_ct(tmp_path / "base", **args)
    faint = make_chest_ct(tmp_path / "faint", **args, difficulty={"nodule_contrast": 0.0, "noise": 0.0})
    big = make_chest_ct(tmp_path / "big", **args, difficulty={"nodule_scale": 1.5, "size_weights": [0, 0, 1]})
    # contrast 0 and no noise: the nodule voxels are the lung's attenuation plus their texture only
    data = json.loads(faint.read_text())
    entry = data["training"][0]
    image = np.asarray(nib.load(faint.parent / entry["image"]).dataobj)
    mask = np.asarray(nib.load(faint.parent / entry["label"]).dataobj) > 0
    assert abs(float(np.median(image[mask])) + 850.0) < 60.0
    assert _boxes(base) == _boxes(faint)  # the knobs draw no other numbers: same anatomy and nodules
    base_image = np.asarray(nib.load(base.parent / entry["image"]).dataobj)
    assert float(base_image[mask].mean()) > float(image[mask].mean()) + 150.0
    # the size knobs: only large nodules, 1.5x their default diameter (about 12 voxels at 64^3, 9 at 48^3)
    recorded = json.loads(big.read_text())
    assert all(s == "large" for e in recorded["training"] + recorded["test"] for s in e["size"])
    sides = np.array([b[3] - b[0] for e in recorded["training"] + recorded["test"] for b in e["box"]])
    assert sides.min() >= 8 and sides.max() <= 11
    assert recorded["parameters"]["difficulty"] == {"nodule_scale": 1.5, "size_weights": [0, 0, 1]}
    assert recorded["parameters"]["difficulty_knobs"]["size_weights"] == [0.0, 0.0, 1.0]
    assert json.loads(base.read_text())["parameters"]["difficulty_knobs"] == ChestCTDifficulty().as_dict()


def test_brain_metastases_knobs_change_the_lesions(tmp_path):
    args = {"num_patients": 2, "cases_per_patient": 2, "image_size": 64, "positive_fraction": 1.0, "seed": 4}
    base = make_brain_metastases(tmp_path / "base", **args)
    faint = make_brain_metastases(tmp_path / "faint", **args, difficulty={"lesion_contrast": 0.0})
    small = make_brain_metastases(tmp_path / "small", **args, difficulty={"lesion_radius": [0.04, 0.04]})
    # same anatomy and lesions; contrast 0 paints the lesion tissues as white matter
    assert _boxes(base) == _boxes(faint)
    data = json.loads(base.read_text())
    entry = next(e for s in SPLITS for e in data[s] if e["box"])
    ring = np.asarray(nib.load(base.parent / entry["image"]).dataobj)
    flat = np.asarray(nib.load(faint.parent / entry["image"]).dataobj)
    mask = np.asarray(nib.load(base.parent / entry["label"]).dataobj) > 0
    assert np.abs(ring - flat)[mask].mean() > 5 * np.abs(ring - flat)[~mask].mean()
    # radius 0.04 of the half-width (32 px): 2.5 px after the minimum, boxes of about 5 px
    sides = [b[2] - b[0] for s in SPLITS for e in json.loads(small.read_text())[s] for b in e["box"]]
    assert sides and max(sides) <= 7
    assert json.loads(small.read_text())["parameters"]["difficulty_knobs"]["lesion_radius"] == [0.04, 0.04]


def test_prepare_phantom_passes_the_difficulty_and_warns_on_an_older_set(tmp_path, caplog):
    datalist = prepare_phantom(
        tmp_path / "ct", "chest_ct", num_cases=2, image_size=32, difficulty="calibrated_detection"
    )
    assert json.loads(Path(datalist).read_text())["parameters"]["difficulty"] == "calibrated_detection"
    old = prepare_phantom(tmp_path / "old", "brain_metastases", num_patients=2, cases_per_patient=1, image_size=32)
    recorded = json.loads(Path(old).read_text())
    recorded["parameters"].pop("difficulty")  # as a set written before the knobs existed
    Path(old).write_text(json.dumps(recorded))
    with caplog.at_level(logging.WARNING, logger="common.data"):
        again = prepare_phantom(
            tmp_path / "old",
            "brain_metastases",
            num_patients=2,
            cases_per_patient=1,
            image_size=32,
            difficulty="calibrated_detection",
        )
    assert again == old and "difficulty=None (asked: 'calibrated_detection')" in caplog.text


def test_prepare_phantom_warns_on_a_set_of_an_earlier_version_of_the_preset(tmp_path, caplog):
    datalist = prepare_phantom(
        tmp_path / "ct", "chest_ct", num_cases=2, image_size=32, difficulty="calibrated_detection"
    )
    recorded = json.loads(Path(datalist).read_text())
    assert recorded["parameters"]["difficulty_knobs"] == CHEST_CT_PRESETS["calibrated_detection"].as_dict()
    with caplog.at_level(logging.WARNING, logger="common.data"):  # the same preset and knobs: silent
        prepare_phantom(tmp_path / "ct", "chest_ct", num_cases=2, image_size=32, difficulty="calibrated_detection")
    assert not caplog.records
    del recorded["parameters"]["difficulty_knobs"]["size_weights"]  # as a set made before that knob existed
    Path(datalist).write_text(json.dumps(recorded))
    with caplog.at_level(logging.WARNING, logger="common.data"):
        prepare_phantom(tmp_path / "ct", "chest_ct", num_cases=2, image_size=32, difficulty="calibrated_detection")
    assert not caplog.records
    recorded["parameters"]["difficulty_knobs"]["nodule_contrast"] = 0.123  # as made by an earlier version of the preset
    Path(datalist).write_text(json.dumps(recorded))
    with caplog.at_level(logging.WARNING, logger="common.data"):
        again = prepare_phantom(
            tmp_path / "ct", "chest_ct", num_cases=2, image_size=32, difficulty="calibrated_detection"
        )
    assert again == datalist and "difficulty_knobs=" in caplog.text and "0.123" in caplog.text
