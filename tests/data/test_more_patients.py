"""More training patients for a phantom set (the upper bound of a grid on few patients): the set's own sections,
new patients only, the same test files; refused for a set that other arguments made."""

import json
from pathlib import Path

import pytest
from common.data import add_training_patients, prepare_phantom
from common.utils.errors import UserInputError

METS = {
    "num_patients": 6,
    "cases_per_patient": 1,
    "image_size": 32,
    "max_lesions": 2,
    "positive_fraction": 1.0,
    "seed": 0,
    "split_fractions": [1 / 3, 0.0, 2 / 3],
    "difficulty": "calibrated_detection",
}


def _patients(entries):
    return {e["patient"] for e in entries}


def _files(entries, base: Path):
    return sorted(str((base / e["image"]).resolve()) for e in entries)


def test_added_patients_are_new_and_the_test_set_is_the_sets(tmp_path):
    source = Path(prepare_phantom(tmp_path / "set", "brain_metastases", **METS))
    out = Path(add_training_patients(source, tmp_path / "upper", "brain_metastases", 4, **METS))
    own, new = json.loads(source.read_text()), json.loads(out.read_text())
    assert _patients(own["training"]) < _patients(new["training"])  # the set's 2 training patients and 4 more
    added = _patients(new["training"]) - _patients(own["training"])
    assert len(_patients(new["training"])) == 6 and added == set(new["added_training_patients"]["patients"])
    assert not added & _patients(own["test"])  # never a test patient
    assert _files(new["test"], out.parent) == _files(own["test"], source.parent)  # the same test files
    assert new["numTraining"] == len(new["training"]) == 6 and new["box_mode"] == own["box_mode"]
    assert all(Path(e["image"]).is_file() and Path(e["label"]).is_file() for e in new["training"])
    # written once: a second call reads nothing and returns the same file
    mtime = out.stat().st_mtime_ns
    assert add_training_patients(source, tmp_path / "upper", "brain_metastases", 4, **METS) == str(out)
    assert out.stat().st_mtime_ns == mtime


def test_chest_ct_counts_cases(tmp_path):
    args = {"num_cases": 3, "image_size": 32, "seed": 0, "split_fractions": [1 / 3, 0.0, 2 / 3]}
    source = prepare_phantom(tmp_path / "set", "chest_ct", **args)
    new = json.loads(Path(add_training_patients(source, tmp_path / "upper", "chest_ct", 2, **args)).read_text())
    assert len(_patients(new["training"])) == 3 and len(new["test"]) == 2


def test_other_arguments_than_the_sets_are_refused(tmp_path):
    source = prepare_phantom(tmp_path / "set", "brain_metastases", **METS)
    with pytest.raises(UserInputError, match="num_patients=6"):
        add_training_patients(source, tmp_path / "a", "brain_metastases", 4, **{**METS, "num_patients": 5})
    with pytest.raises(UserInputError, match="not the image that the same phantom arguments give"):
        add_training_patients(source, tmp_path / "b", "brain_metastases", 4, **{**METS, "seed": 1})
    with pytest.raises(UserInputError, match="missing"):
        add_training_patients(tmp_path / "nothing.json", tmp_path / "c", "brain_metastases", 4, **METS)
    with pytest.raises(ValueError, match="extra_patients"):
        add_training_patients(source, tmp_path / "d", "brain_metastases", 0, **METS)
    assert not (tmp_path / "a" / "datalist.json").exists() and not (tmp_path / "b" / "datalist.json").exists()


def test_brain_mr_channels_and_both_classes(tmp_path):
    """Four channel files per entry are all made absolute; with both classes a patient's class may differ in the
    bigger phantom, and the check compares a patient of the same class."""
    args = {"num_patients": 10, "cases_per_patient": 1, "image_size": 32, "positive_fraction": 0.5, "seed": 0,
            "split_fractions": [0.4, 0.2, 0.4]}  # fmt: skip
    source = Path(prepare_phantom(tmp_path / "set", "brain_mr_2d", **args))
    new = json.loads(Path(add_training_patients(source, tmp_path / "upper", "brain_mr_2d", 6, **args)).read_text())
    assert len(_patients(new["training"])) == 10 and len(new["training"][0]["image"]) == 4
    assert all(Path(f).is_absolute() and Path(f).is_file() for e in new["training"] + new["test"] for f in e["image"])
    own = json.loads(source.read_text())
    assert [e["image"] for e in new["test"]] == [
        [str((source.parent / f).resolve()) for f in e["image"]] for e in own["test"]
    ]
    with pytest.raises(UserInputError, match="pass the arguments the set was generated with"):
        add_training_patients(source, tmp_path / "other", "brain_mr_2d", 6, **{**args, "seed": 3})
