"""Tests of the deterministic phantom data sets in ``common.data.phantoms``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data.phantoms import BRAIN_MR_CHANNELS, NODULE_ATTENUATIONS, NODULE_SIZES
from common.data.phantoms import brain_mr as brain_mr_phantom
from common.data.phantoms import make_brain_metastases, make_brain_mr, make_chest_ct, prepare_phantom
from common.data.splits import split_counts
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImaged
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("training", "validation", "test")


def _load(path: str | Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float32)


def _entries(datalist: Path) -> list[dict]:
    """All entries of all splits, with absolute paths, each tagged with its split."""
    entries = []
    for split in SPLITS:
        for entry in load_decathlon_datalist(datalist, data_list_key=split):
            entries.append({**entry, "split": split})
    return entries


def _files(entry: dict) -> list[str]:
    images = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
    return images + [entry["label"]]


@pytest.fixture(scope="module")
def brain_2d(tmp_path_factory) -> Path:
    return make_brain_mr(tmp_path_factory.mktemp("brain2d") / "set", num_patients=8, cases_per_patient=2, image_size=64)


@pytest.fixture(scope="module")
def brain_3d(tmp_path_factory) -> Path:
    return make_brain_mr(tmp_path_factory.mktemp("brain3d") / "set", spatial_dims=3, num_patients=6, image_size=40)


@pytest.fixture(scope="module")
def chest(tmp_path_factory) -> Path:
    return make_chest_ct(tmp_path_factory.mktemp("chest") / "set", num_cases=8, image_size=48, nodules_per_case=3)


@pytest.fixture(scope="module")
def metastases(tmp_path_factory) -> Path:
    return make_brain_metastases(
        tmp_path_factory.mktemp("mets") / "set", num_patients=6, cases_per_patient=2, image_size=64, max_lesions=3
    )


# ------------------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (make_brain_mr, {"num_patients": 3, "cases_per_patient": 1, "image_size": 32}),
        (make_brain_mr, {"spatial_dims": 3, "num_patients": 3, "image_size": 24}),
        (make_chest_ct, {"num_cases": 3, "image_size": 32}),
        (make_brain_metastases, {"num_patients": 3, "cases_per_patient": 1, "image_size": 32}),
    ],
)
def test_same_seed_identical_different_seed_different(tmp_path, make, kwargs):
    first = _entries(make(tmp_path / "a", seed=5, **kwargs))
    second = _entries(make(tmp_path / "b", seed=5, **kwargs))
    other = _entries(make(tmp_path / "c", seed=6, **kwargs))
    assert len(first) == len(second) == len(other) == 3
    for a, b in zip(first, second):
        assert {k: v for k, v in a.items() if k not in ("image", "label")} == {
            k: v for k, v in b.items() if k not in ("image", "label")
        }
        for file_a, file_b in zip(_files(a), _files(b)):
            array_a, array_b = _load(file_a), _load(file_b)
            assert array_a.tobytes() == array_b.tobytes()
    images = [np.concatenate([_load(f).ravel() for f in _files(e)]) for e in (first[0], other[0])]
    assert images[0].shape != images[1].shape or not np.array_equal(images[0], images[1])


# ------------------------------------------------------------------------------------------------------------
# datalists
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["brain_2d", "brain_3d", "chest", "metastases"])
def test_datalist_structure_and_patient_splits(name, request):
    datalist = request.getfixturevalue(name)
    content = json.loads(datalist.read_text())
    for key in ("name", "description", "modality", "labels", "seed", "spatial_dims", *SPLITS):
        assert key in content
    assert content["seed"] == 0
    entries = _entries(datalist)
    for entry in entries:
        for file in _files(entry):
            assert Path(file).is_absolute() and Path(file).is_file()
    # paths in the JSON itself are relative to the JSON file
    for entry in content["training"]:
        assert not Path(_files(entry)[-1]).is_absolute()
    splits_of_patient: dict[str, set[str]] = {}
    for entry in entries:
        splits_of_patient.setdefault(entry["patient"], set()).add(entry["split"])
    assert all(len(s) == 1 for s in splits_of_patient.values())
    for split in SPLITS:
        assert any(e["split"] == split for e in entries), f"empty {split} split"
        assert content[f"num{split.capitalize()}"] == len(content[split])
    if "class" in entries[0]:
        for split in SPLITS:
            assert {e["class"] for e in entries if e["split"] == split} == {0, 1}


@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.5, 0.25, 0.25), (0.8, 0.2, 0.0)])
@pytest.mark.parametrize("num", [1, 2, 3, 5, 12, 24, 101])
def test_split_counts(num, fractions):
    counts = split_counts(num, fractions)
    assert sum(counts) == num and min(counts) >= 0
    active = [i for i, f in enumerate(fractions) if f > 0]
    if num >= len(active):
        assert all(counts[i] >= 1 for i in active)
    assert all(counts[i] == 0 for i, f in enumerate(fractions) if f == 0)
    assert counts[0] >= 1
    if num >= 20:
        assert all(abs(c - f * num) <= 1.0 for c, f in zip(counts, fractions))


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="split_fractions"):
        make_brain_mr(tmp_path / "a", split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="spatial_dims"):
        make_brain_mr(tmp_path / "a", spatial_dims=4)
    with pytest.raises(ValueError, match="positive_fraction"):
        make_brain_mr(tmp_path / "a", positive_fraction=1.5)
    with pytest.raises(ValueError, match="image_size"):
        make_chest_ct(tmp_path / "a", image_size=(64, 64))
    assert not (tmp_path / "a").exists()


# ------------------------------------------------------------------------------------------------------------
# brain MR
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, shape", [("brain_2d", (64, 64)), ("brain_3d", (40, 40, 40))])
def test_brain_channels_and_masks(name, shape, request):
    datalist = request.getfixturevalue(name)
    content = json.loads(datalist.read_text())
    assert content["modality"] == {str(i): c for i, c in enumerate(BRAIN_MR_CHANNELS)}
    assert content["spatial_dims"] == len(shape)
    loader = LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True)
    entries = _entries(datalist)
    for entry in entries:
        assert [Path(f).name.rsplit("_", 1)[1] for f in entry["image"]] == [f"{c}.nii.gz" for c in BRAIN_MR_CHANNELS]
        data = loader({"image": entry["image"], "label": entry["label"]})
        assert tuple(data["image"].shape) == (4, *shape)
        assert tuple(data["label"].shape) == (1, *shape)
        assert np.allclose(np.diag(data["image"].affine)[: len(shape)], 1.0)
        image, mask = data["image"].numpy(), data["label"].numpy()
        assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
        assert set(np.unique(mask)) <= {0, 1, 2, 3}
        if entry["class"] == 1:
            assert {1, 2, 3} <= set(np.unique(mask))
        else:
            assert not mask.any()
        head = image[0] > 0
        assert 0.2 < head.mean() < 0.9 and not image[:, ~head].any()


@pytest.mark.parametrize("name", ["brain_2d", "brain_3d"])
def test_brain_tumour_contrast(name, request):
    """Enhancing rim is bright in T1c, oedema bright in FLAIR, compared with the brain around the tumour."""
    t1c, flair = BRAIN_MR_CHANNELS.index("t1c"), BRAIN_MR_CHANNELS.index("flair")
    rim_t1c, ring_t1c, oedema_flair, ring_flair, core_t2, core_t1 = [], [], [], [], [], []
    for entry in _entries(request.getfixturevalue(name)):
        if entry["class"] == 0:
            continue
        image = np.stack([_load(f) for f in entry["image"]])
        mask = _load(entry["label"]).astype(int)
        tumour = mask > 0
        ring = ndimage.binary_dilation(tumour, iterations=4) & ~tumour & (image[0] > 0.3)
        rim_t1c.append(image[t1c][mask == 3].mean())
        ring_t1c.append(image[t1c][ring].mean())
        oedema_flair.append(image[flair][mask == 2].mean())
        ring_flair.append(image[flair][ring].mean())
        core_t2.append(image[BRAIN_MR_CHANNELS.index("t2")][mask == 1].mean())
        core_t1.append(image[BRAIN_MR_CHANNELS.index("t1")][mask == 1].mean())
    assert len(rim_t1c) >= 3
    assert np.all(np.array(rim_t1c) > np.array(ring_t1c) + 0.15)
    assert np.all(np.array(oedema_flair) > np.array(ring_flair) + 0.2)
    assert np.all(np.array(core_t2) > np.array(core_t1) + 0.3)


def test_brain_channel_contrasts_differ(brain_2d):
    """CSF (the brightest T2 voxels) is dark in T1 and FLAIR; T1 and T2 contrasts are inverted in the brain."""
    for entry in _entries(brain_2d):
        if entry["class"] == 1:
            continue
        t1, _, t2, flair = (_load(f) for f in entry["image"])
        head = t1 > 0
        csf = head & (t2 >= np.quantile(t2[head], 0.98))
        assert t2[csf].mean() > 0.75
        assert t1[csf].mean() < 0.35 and flair[csf].mean() < 0.35
        white = head & (t1 >= np.quantile(t1[head], 0.6)) & (t1 < 0.75)  # brightest brain, not the scalp
        assert t2[white].mean() < t1[white].mean() - 0.15


def test_brain_positive_fraction(tmp_path):
    datalist = make_brain_mr(
        tmp_path / "set", num_patients=8, cases_per_patient=2, image_size=32, positive_fraction=0.25
    )
    classes = [e["class"] for e in _entries(datalist)]
    assert len(classes) == 16 and sum(classes) == 4
    per_patient = {}
    for entry in _entries(datalist):
        per_patient.setdefault(entry["patient"], set()).add(entry["class"])
    assert all(len(c) == 1 for c in per_patient.values())


# ------------------------------------------------------------------------------------------------------------
# chest CT
# ------------------------------------------------------------------------------------------------------------


def test_chest_ct(chest):
    content = json.loads(chest.read_text())
    assert content["box_mode"] == "xyzxyz" and content["box_coordinates"] == "voxel"
    hu_by_attenuation = {a: [] for a in NODULE_ATTENUATIONS}
    extent_by_size = {s: [] for s in NODULE_SIZES}
    entries = _entries(chest)
    assert len(entries) == 8
    for entry in entries:
        volume, mask = _load(entry["image"]), _load(entry["label"])
        assert volume.shape == mask.shape == (48, 48, 48)
        assert -1024 <= volume.min() < -950 and volume.max() < 3072
        assert ((volume > -900) & (volume < -800)).mean() > 0.1  # lung parenchyma
        assert 1 <= len(entry["box"]) <= 3
        assert len(entry["box"]) == len(entry["box_label"]) == len(entry["size"]) == len(entry["attenuation"])
        covered = np.zeros(mask.shape, dtype=bool)
        for box, size, attenuation in zip(entry["box"], entry["size"], entry["attenuation"]):
            x1, y1, z1, x2, y2, z2 = box
            assert 0 <= x1 < x2 <= 48 and 0 <= y1 < y2 <= 48 and 0 <= z1 < z2 <= 48
            inside = mask[x1:x2, y1:y2, z1:z2] > 0
            assert inside.any()
            covered[x1:x2, y1:y2, z1:z2] = True
            hu_by_attenuation[attenuation].append(volume[x1:x2, y1:y2, z1:z2][inside].mean())
            extent_by_size[size].append(max(x2 - x1, y2 - y1, z2 - z1))
        assert not (mask.astype(bool) & ~covered).any()
        assert entry["box_label"] == [0] * len(entry["box"])
    assert all(hu_by_attenuation.values()) and all(extent_by_size.values())
    hu = [np.mean(hu_by_attenuation[a]) for a in NODULE_ATTENUATIONS]
    assert hu[0] > hu[1] > hu[2] > -850
    assert hu[0] > -300 and hu[1] - hu[2] > 30
    assert max(extent_by_size["small"]) < min(extent_by_size["medium"])
    assert max(extent_by_size["medium"]) < min(extent_by_size["large"])


# ------------------------------------------------------------------------------------------------------------
# brain metastases
# ------------------------------------------------------------------------------------------------------------


def test_brain_metastases(metastases):
    content = json.loads(metastases.read_text())
    assert content["box_mode"] == "xyxy" and content["box_coordinates"] == "voxel"
    entries = _entries(metastases)
    assert {e["class"] for e in entries} == {0, 1}
    for entry in entries:
        image, mask = _load(entry["image"]), _load(entry["label"])
        assert image.shape == mask.shape == (64, 64)
        assert len(entry["box"]) == len(entry["box_label"])
        if entry["class"] == 0:
            assert entry["box"] == [] and not mask.any()
            continue
        assert 1 <= len(entry["box"]) <= 3
        covered = np.zeros(mask.shape, dtype=bool)
        for x1, y1, x2, y2 in entry["box"]:
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
            lesion = mask[x1:x2, y1:y2] > 0
            assert lesion.any()
            assert image[x1:x2, y1:y2][lesion].max() > 0.8  # enhancing rim, white matter is 0.68
            covered[x1:x2, y1:y2] = True
        assert not (mask.astype(bool) & ~covered).any()
        _, num_components = ndimage.label(mask > 0)
        assert num_components == len(entry["box"])


# ------------------------------------------------------------------------------------------------------------
# prepare_phantom, atomic writes, script
# ------------------------------------------------------------------------------------------------------------


def test_prepare_phantom_generates_once(tmp_path, caplog):
    kwargs = {"num_patients": 3, "cases_per_patient": 1, "image_size": 32}
    with caplog.at_level(logging.INFO, logger="common.data"):
        path = prepare_phantom(tmp_path / "set", "brain_metastases", **kwargs)
    assert isinstance(path, str) and path == str(tmp_path / "set" / "datalist.json")
    assert any(r.name == "common.data" and "brain_metastases" in r.getMessage() for r in caplog.records)
    mtime = Path(path).stat().st_mtime_ns
    image = Path(load_decathlon_datalist(path)[0]["image"])
    image.unlink()  # an existing datalist is trusted: nothing is regenerated
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="common.data"):
        assert prepare_phantom(tmp_path / "set", "brain_metastases", **kwargs) == path
    assert Path(path).stat().st_mtime_ns == mtime and not image.exists()
    assert not caplog.records  # same parameters (image_size 32 is the recorded [32, 32]): no warning
    with caplog.at_level(logging.INFO, logger="common.data"):
        assert prepare_phantom(tmp_path / "set", "brain_metastases", **{**kwargs, "num_patients": 4}) == path
    assert Path(path).stat().st_mtime_ns == mtime  # kept as it is, with a warning naming what differs
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "num_patients=3 (asked: 4)" in warning.getMessage() and "image_size" not in warning.getMessage()


def test_prepare_phantom_kinds(tmp_path):
    with pytest.raises(ValueError, match="Unknown phantom kind"):
        prepare_phantom(tmp_path / "x", "brain_ct")
    with pytest.raises(ValueError, match="spatial_dims"):
        prepare_phantom(tmp_path / "x", "brain_mr_2d", spatial_dims=3)
    assert not (tmp_path / "x").exists()
    path = prepare_phantom(tmp_path / "b3", "brain_mr_3d", num_patients=3, image_size=24)
    assert json.loads(Path(path).read_text())["spatial_dims"] == 3


def test_atomic_generation(tmp_path, monkeypatch):
    target = tmp_path / "set"
    original, calls = brain_mr_phantom._save_nifti, []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("interrupted")
        original(*args, **kwargs)

    monkeypatch.setattr(brain_mr_phantom, "_save_nifti", failing_save)
    with pytest.raises(RuntimeError, match="interrupted"):
        make_brain_mr(target, num_patients=3, cases_per_patient=1, image_size=32)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(brain_mr_phantom, "_save_nifti", original)

    # a previous phantom set is replaced as a whole; an unrelated non-empty directory is refused
    make_brain_mr(target, num_patients=3, cases_per_patient=1, image_size=32, seed=1)
    make_brain_mr(target, num_patients=4, cases_per_patient=1, image_size=32, seed=2)
    assert json.loads((target / "datalist.json").read_text())["seed"] == 2
    assert len(list((target / "labels").iterdir())) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        make_chest_ct(other, num_cases=3, image_size=32)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_script(tmp_path):
    output_dir = tmp_path / "mets"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_phantoms.py"),
            "brain_metastases",
            "--output_dir",
            str(output_dir),
            "--num_patients",
            "3",
            "--cases_per_patient",
            "1",
            "--image_size",
            "32",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == str(output_dir / "datalist.json")
    assert len(_entries(output_dir / "datalist.json")) == 3


@pytest.mark.parametrize("kind", [None, "none", "None", "null", ""])
def test_prepare_phantom_off_generates_nothing(tmp_path, kind):
    assert prepare_phantom(tmp_path / "set", kind, num_patients=2) is None
    assert not (tmp_path / "set").exists()
