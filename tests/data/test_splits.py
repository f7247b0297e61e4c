"""Tests of the patient-level split tools (CDA-GAN sec. 4.1 BraTS_s, sec. 5.7 imbalanced set)."""

import json
import os
from collections import Counter

import pytest
from common.data import (
    DatalistError,
    check_patient_disjoint,
    imbalanced_subset,
    make_brain_mr,
    make_split_datalist,
    subsample_patients,
    validate_datalist,
)


def _datalist(num_pos=20, num_neg=28, cases=3, sections=(("training", 0.7), ("validation", 0.15), ("test", 0.15))):
    """A datalist dict of `cases` entries per patient; each section gets its own patients."""
    data, p = {}, 0
    total = num_pos + num_neg
    for name, frac in sections:
        n_pos, n_neg = max(1, round(frac * num_pos)), max(1, round(frac * num_neg))
        entries = []
        for cls, n in ((1, n_pos), (0, n_neg)):
            for _ in range(n):
                for c in range(cases):
                    entries.append({"image": f"images/P{p:03d}_C{c}.nii.gz", "class": cls, "patient": f"P{p:03d}"})
                p += 1
        data[name] = entries
    assert p <= total + 3
    return data


def _patients(entries):
    return {e["patient"] for e in entries}


def _patient_classes(entries):
    return Counter({e["patient"]: e["class"] for e in entries}.values())


def test_check_patient_disjoint_passes_and_names_shared_patients():
    data = _datalist()
    check_patient_disjoint(data)
    bad = json.loads(json.dumps(data))
    bad["test"].append(dict(bad["training"][0]))  # P000 in training and test
    bad["validation"].append(dict(bad["training"][5]))  # P001 in training and validation
    with pytest.raises(ValueError) as err:
        check_patient_disjoint(bad)
    msg = str(err.value)
    assert "'P000' in training, test" in msg
    assert "'P001' in training, validation" in msg
    assert "2 patient(s)" in msg
    # only the named sections are compared
    check_patient_disjoint(bad, sections=("validation", "test"))


def test_subsample_patients_fraction_stratification_and_same_test():
    data = _datalist(num_pos=40, num_neg=56)
    small = subsample_patients(data, fraction=1 / 8, seed=3)
    assert small["test"] == data["test"]
    for section in ("training", "validation"):
        before, after = _patient_classes(data[section]), _patient_classes(small[section])
        for cls in (0, 1):
            assert after[cls] == max(1, round(before[cls] / 8)), (section, cls, before, after)
        # kept patients keep all their entries, and only entries of the source section are kept
        assert _patients(small[section]) <= _patients(data[section])
        for p in _patients(small[section]):
            assert sum(e["patient"] == p for e in small[section]) == 3
    check_patient_disjoint(small)
    # the input is not modified
    assert len(data["training"]) == 3 * (28 + 39)


def test_subsample_patients_keeps_every_class_and_is_seeded():
    data = _datalist(num_pos=3, num_neg=20)
    small = subsample_patients(data, fraction=0.125, seed=0)
    assert set(_patient_classes(small["training"])) == {0, 1}
    assert subsample_patients(data, 0.125, seed=0) == small
    draws = {tuple(sorted(_patients(subsample_patients(data, 0.125, seed=s)["training"]))) for s in range(8)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="fraction"):
        subsample_patients(data, 0.0)


def test_subsample_patients_without_patient_or_class_keys():
    data = {"training": [{"image": f"{i}.nii"} for i in range(16)], "test": [{"image": "t.nii"}]}
    small = subsample_patients(data, fraction=0.25, seed=1, sections=("training",))
    assert len(small["training"]) == 4 and small["test"] == data["test"]


def test_imbalanced_subset_paper_counts_and_scaling():
    entries = [{"image": f"{i}.nii", "class": int(i < 100), "patient": f"P{i}"} for i in range(1000)]
    data = {"training": entries, "validation": entries[:10], "test": entries[:5]}
    imb = imbalanced_subset(data, seed=0)
    counts = Counter(e["class"] for e in imb["training"])
    assert counts == {1: 70, 0: 730}
    assert imb["validation"] == data["validation"] and imb["test"] == data["test"]
    assert imbalanced_subset(data, seed=0) == imb
    assert imbalanced_subset(data, seed=1) != imb
    # a small set is scaled down keeping the 70:730 ratio, with at least one positive
    small = _datalist()
    scaled = imbalanced_subset(small, seed=0)
    counts = Counter(e["class"] for e in scaled["training"])
    negatives = Counter(e["class"] for e in small["training"])[0]
    assert counts[0] == negatives and counts[1] == max(1, round(negatives * 70 / 730))
    with pytest.raises(ValueError, match="asked"):
        imbalanced_subset(small, scale_to_available=False)
    with pytest.raises(ValueError, match="positive and negative"):
        imbalanced_subset({"training": [{"image": "a", "class": 0}]})


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    path = make_brain_mr(root / "set", num_patients=16, cases_per_patient=2, image_size=16, seed=0)
    return str(path)


@pytest.mark.parametrize("mode", ["full", "small", "imbalanced"])
def test_make_split_datalist_writes_a_resolvable_disjoint_datalist(phantom, tmp_path, mode):
    out = make_split_datalist(phantom, tmp_path / "run" / "split.json", mode=mode, seed=0)
    assert out == str(tmp_path / "run" / "split.json")
    assert not [f for f in os.listdir(tmp_path / "run") if f != "split.json"]  # no temporary left
    with open(out) as f:
        data = json.load(f)
    with open(phantom) as f:
        source = json.load(f)
    assert data["split"]["mode"] == mode
    check_patient_disjoint(data)
    assert [e["patient"] for e in data["test"]] == [e["patient"] for e in source["test"]]
    summary = validate_datalist(out, sections=("training", "validation", "test"), class_key="class")
    assert summary["datalist"] == out and summary["source"] == os.path.realpath(phantom)
    assert summary["num_entries"]["test"] == len(source["test"])
    if mode == "full":
        assert summary["num_entries"]["training"] == len(source["training"])
    else:
        assert summary["num_entries"]["training"] < len(source["training"])
    # paths are relative to the new file
    assert not os.path.isabs(data["training"][0]["image"][0])
    absolute = make_split_datalist(phantom, tmp_path / "abs.json", mode=mode, absolute_paths=True)
    with open(absolute) as f:
        assert os.path.isabs(json.load(f)["training"][0]["label"])


def test_make_split_datalist_rejects_bad_input(phantom, tmp_path):
    with pytest.raises(ValueError, match="Unknown split mode"):
        make_split_datalist(phantom, tmp_path / "x.json", mode="tiny")
    with pytest.raises(DatalistError, match="missing.json.*\n.*datalist file not found"):
        make_split_datalist(tmp_path / "missing.json", tmp_path / "x.json")
    with open(phantom) as f:
        data = json.load(f)
    data["test"].append(data["training"][0])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="in training, test"):
        make_split_datalist(bad, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def _user_datalist(phantom: str, folder) -> str:
    """The phantom's datalist written to ``folder`` with absolute image paths and missing relative label paths."""
    with open(phantom) as f:
        data = json.load(f)
    phantom_dir = os.path.dirname(phantom)
    for section in ("training", "validation", "test"):
        for i, entry in enumerate(data[section]):
            entry["image"] = [os.path.join(phantom_dir, p) for p in entry["image"]]
            entry["label"] = f"missing/{section}_{i}.nii.gz"
    folder.mkdir()
    path = folder / "my_datalist.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("mode", ["full", "small"])
def test_split_datalist_problems_name_the_users_datalist_entries_and_paths(phantom, tmp_path, mode):
    user = _user_datalist(phantom, tmp_path / "user")
    out = make_split_datalist(user, tmp_path / "run" / "split.json", mode=mode, seed=0)
    with open(out) as f:
        kept = json.load(f)["split"]["origin"]["training"]
    with pytest.raises(DatalistError) as err:
        validate_datalist(out, sections=("training",), label_key="label")
    message = str(err.value)
    assert message.startswith(f"Datalist '{os.path.realpath(user)}' failed validation with {len(kept)} problems:")
    for i in kept:  # the entry's index in the user's datalist and its path as written, from the user's folder
        assert (
            f"training[{i}] label '{tmp_path / 'user' / 'missing' / f'training_{i}.nii.gz'}': file not found" in message
        )
    assert str(tmp_path / "run") not in message
    assert err.value.datalist_file == os.path.realpath(user)
    if mode == "small":
        assert kept != list(range(len(kept)))  # the indices are the user's, not the split file's


def test_split_datalist_whose_source_changed_is_reported_as_itself(phantom, tmp_path):
    user = _user_datalist(phantom, tmp_path / "user")
    out = make_split_datalist(user, tmp_path / "run" / "split.json")
    with open(user) as f:
        data = json.load(f)
    data["training"] = data["training"][:1]
    with open(user, "w") as f:
        json.dump(data, f)
    with pytest.raises(DatalistError) as err:
        validate_datalist(out, sections=("training",), label_key="label")
    assert err.value.datalist_file == out
    assert f"training[0] label '{tmp_path / 'run' / 'missing' / 'training_0.nii.gz'}'" in str(err.value)
