"""MedMNIST and TCIA LGG converters on tiny copies of their releases: the npz's own split and labels (ChestMNIST's
multi-label matrix, a 3D file), the LGG slices' classes following the masks, listed skips and resume."""

import importlib.util
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from common.data import validate_datalist
from common.data.converters import DATALIST_NAME, LayoutError, convert

from tests.bundles.helpers import REPO
from tests.data.converters.releases import LGG_LEVELS, medmnist_npz, tcia_lgg

SECTIONS = {"train": "training", "val": "validation", "test": "test"}
CS, DU = "TCGA_CS_4941_19960909", "TCGA_DU_5849_19950405"


@pytest.fixture(scope="module")
def prepare_data():
    spec = importlib.util.spec_from_file_location("prepare_data", REPO / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entries(datalist: dict) -> dict[str, dict]:
    return {e["patient"]: {**e, "section": s} for s in SECTIONS.values() for e in datalist[s]}


def test_medmnist_rgb_release_split_classes_and_resume(tmp_path, prepare_data):
    npz = medmnist_npz(tmp_path / "pathmnist_8.npz", sizes=(7, 3, 4), shape=(8, 8, 3), num_classes=9)
    out = tmp_path / "out"
    argv = ["medmnist", str(npz), str(out), "--images_per_case", "3", "--num_workers", "2"]
    assert prepare_data.main(argv) == 0
    validate_datalist(out / DATALIST_NAME, sections=tuple(SECTIONS.values()), class_key="class",
                      required_keys=("patient",), spatial_dims=2, num_channels=3, check_values=True)  # fmt: skip
    datalist = json.loads((out / DATALIST_NAME).read_text())
    assert [datalist[f"num{s.capitalize()}"] for s in SECTIONS.values()] == [7, 3, 4]
    assert datalist["modality"] == {"0": "red", "1": "green", "2": "blue"} and datalist["spatial_dims"] == 2
    entries = _entries(datalist)
    with np.load(npz) as release:
        for split, section in SECTIONS.items():
            images, labels = release[f"{split}_images"], release[f"{split}_labels"]
            for index in range(len(images)):
                entry = entries.pop(f"pathmnist-{split}-{index:06d}")  # each image is its own patient
                assert entry["section"] == section and entry["index"] == index
                assert entry["class"] == int(labels[index, 0])
                for channel, file in enumerate(entry["image"]):
                    assert np.array_equal(np.asarray(nib.load(out / file).dataobj), images[index, ..., channel])
    assert not entries
    # a re-run reuses every block; another block size is another conversion
    summary = convert("medmnist", npz, out, spatial_dims=2, images_per_case=3, progress=False)
    assert summary["cases_found"] == 6 and summary["cases_reused"] == 6 and summary["cases_converted"] == 0
    assert json.loads((out / DATALIST_NAME).read_text())["training"] == datalist["training"]
    with pytest.raises(ValueError, match="other options"):
        convert("medmnist", npz, out, spatial_dims=2, images_per_case=2, progress=False)


def test_medmnist_multi_label_3d_and_bad_files(tmp_path):
    chest = medmnist_npz(tmp_path / "chestmnist.npz", sizes=(6, 2, 3), num_labels=14)
    with pytest.raises(LayoutError, match="multi-label .14 findings per image.: choose label_index"):
        convert("medmnist", chest, tmp_path / "none", spatial_dims=2)
    with pytest.raises(LayoutError, match="label_index 14 out of range"):
        convert("medmnist", chest, tmp_path / "none", spatial_dims=2, label_index=14)
    assert not (tmp_path / "none").exists()
    convert("medmnist", chest, tmp_path / "finding", spatial_dims=2, label_index=2, progress=False)
    convert("medmnist", chest, tmp_path / "vector", spatial_dims=2, multi_label=True, progress=False)
    finding = _entries(json.loads((tmp_path / "finding" / DATALIST_NAME).read_text()))
    vector = _entries(json.loads((tmp_path / "vector" / DATALIST_NAME).read_text()))
    with np.load(chest) as release:
        labels = {split: release[f"{split}_labels"] for split in SECTIONS}
    for split, rows in labels.items():
        for index, row in enumerate(rows):
            patient = f"chestmnist-{split}-{index:06d}"
            assert finding[patient]["class"] == row[2] and "labels" not in finding[patient]
            assert vector[patient]["labels"] == row.tolist() and vector[patient]["class"] == int(row.any())
    # both outcomes occur in the fixture, and "any finding" differs from finding 2
    assert {e["class"] for e in vector.values()} == {e["class"] for e in finding.values()} == {0, 1}
    assert sum(e["class"] for e in vector.values()) > sum(e["class"] for e in finding.values())

    nodule = medmnist_npz(tmp_path / "nodulemnist3d_64.npz", sizes=(3, 1, 2), shape=(4, 5, 6), num_classes=2)
    with pytest.raises(ValueError, match="holds 3D images; convert with spatial_dims=3"):
        convert("medmnist", nodule, tmp_path / "nodule2d", spatial_dims=2, progress=False)
    convert("medmnist", nodule, tmp_path / "nodule", progress=False)
    validate_datalist(tmp_path / "nodule" / DATALIST_NAME, sections=tuple(SECTIONS.values()), class_key="class",
                      spatial_dims=3, num_channels=1, check_values=True)  # fmt: skip
    entry = json.loads((tmp_path / "nodule" / DATALIST_NAME).read_text())["test"][1]
    with np.load(nodule) as release:
        volume = release["test_images"][1]
        assert entry["class"] == int(release["test_labels"][1, 0])
    assert entry["image"] == ["cases/test-00000/000001_grey.nii.gz"]
    assert np.array_equal(np.asarray(nib.load(tmp_path / "nodule" / entry["image"][0]).dataobj), volume)

    np.savez_compressed(tmp_path / "octmnist.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(LayoutError, match="holds no array 'train_labels'"):
        convert("medmnist", tmp_path / "octmnist.npz", tmp_path / "bad", spatial_dims=2)
    shutil.copy(chest, tmp_path / "chest.npz")
    with pytest.raises(LayoutError, match="not a MedMNIST file name"):
        convert("medmnist", tmp_path / "chest.npz", tmp_path / "bad", spatial_dims=2)
    (tmp_path / "breastmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(LayoutError, match="not a readable npz"):
        convert("medmnist", tmp_path / "breastmnist.npz", tmp_path / "bad", spatial_dims=2)
    assert not (tmp_path / "bad").exists()


def test_tcia_lgg_classes_follow_masks_skip_and_resume(tmp_path, prepare_data):
    root = tcia_lgg(tmp_path / "download" / "lgg-mri-segmentation")
    out = tmp_path / "out"
    argv = ["tcia_lgg", str(tmp_path / "download"), str(out), "--channels", "pre,flair,post", "--split", "1:1"]
    assert prepare_data.main(argv) == 0  # found under lgg-mri-segmentation/kaggle_3m
    validate_datalist(out / DATALIST_NAME, sections=("training", "validation"), label_key="label", class_key="class",
                      required_keys=("patient",), spatial_dims=2, num_channels=3, check_values=True)  # fmt: skip
    datalist = json.loads((out / DATALIST_NAME).read_text())
    entries = {(e["patient"], e["slice"]): e for s in ("training", "validation") for e in datalist[s]}
    assert sorted(entries) == [(p, s) for p in (CS, DU) for s in range(4)]
    assert {e["patient"] for e in datalist["training"]} ^ {e["patient"] for e in datalist["validation"]} == {CS, DU}
    for (patient, index), entry in entries.items():
        tumour = patient == CS and index + 1 in (2, 3)  # slices numbered from 1 in the file names
        assert entry["class"] == int(tumour)
        mask = np.asarray(nib.load(out / entry["label"]).dataobj)
        assert mask.shape == (8, 8) and set(np.unique(mask)) == ({0, 1} if tumour else {0})
        assert int(mask.sum()) == (4 if tumour else 0) and (not tumour or mask[2:4, 3:5].all())
        for file, level in zip(entry["image"], LGG_LEVELS):
            assert np.all(np.asarray(nib.load(out / file).dataobj) == level + index + 1)
    # a slice without its mask: that patient is a listed skip naming the file; the other is reused
    (root / "kaggle_3m" / DU / f"{DU}_3_mask.tif").unlink()
    summary = convert("tcia_lgg", root, out, spatial_dims=2, channels="pre,flair,post", split="1:1", progress=False)
    assert summary["cases_reused"] == 2 and summary["cases_converted"] == 0 and not summary["skipped"]
    fresh = convert("tcia_lgg", root / "kaggle_3m", tmp_path / "flair", spatial_dims=2, progress=False)
    assert fresh["skipped"] == [{"case": DU, "reason": f"slice {DU}_3.tif has no mask ({DU}_3_mask.tif missing)"}]
    flair = json.loads((tmp_path / "flair" / DATALIST_NAME).read_text())
    assert flair["modality"] == {"0": "flair"} and {e["patient"] for s in SECTIONS.values() for e in flair[s]} == {CS}
    assert fresh["class_counts"]["training"] == {0: 2, 1: 2}
    with pytest.raises(LayoutError, match="no TCGA_\\* patient folder"):
        convert("tcia_lgg", root / "kaggle_3m" / CS, tmp_path / "bad")
