"""MSD and KiTS19 converters on tiny copies of their releases: 4D images split into channels, labels kept, the
axial axis of KiTS19's axis-first volumes, test cases without labels."""

import json

import nibabel as nib
import numpy as np
import pytest
from common.data import validate_datalist
from common.data.converters import DATALIST_NAME, LayoutError, convert

from tests.data.converters.releases import KITS_AFFINE, MSD_LEVELS, SHAPE, kits19, msd_task01


def test_msd_4d_image_becomes_channels(tmp_path):
    task = msd_task01(tmp_path / "msd")
    out = tmp_path / "out"
    summary = convert("msd", task.parent, out, channels="T1w,t1gd,T2w,FLAIR", split="60:20:20", progress=False)
    assert summary["cases_converted"] == 4 and not summary["skipped"]
    validate_datalist(out / DATALIST_NAME, sections=("training", "validation", "test"), label_key="label",
                      class_key="class", spatial_dims=3, num_channels=4, check_values=True)  # fmt: skip
    datalist = json.loads((out / DATALIST_NAME).read_text())
    assert datalist["name"] == "msd_brats_3d" and datalist["modality"] == {
        "0": "t1w",
        "1": "t1gd",
        "2": "t2w",
        "3": "flair",
    }
    assert datalist["labels"]["3"] == "enhancing tumour"
    entries = {e["case"]: e for s in ("training", "validation", "test") for e in datalist[s]}
    assert sorted(entries) == ["BRATS_001", "BRATS_002", "BRATS_003", "BRATS_004"]  # no ._ file, no imagesTs
    entry = entries["BRATS_001"]
    source = np.asarray(nib.load(task / "imagesTr" / "BRATS_001.nii.gz").dataobj)
    for file, index in zip(entry["image"], (1, 2, 3, 0)):  # T1w, t1gd, T2w, FLAIR from release order FLAIR, T1w...
        channel = nib.load(out / file)
        assert channel.shape == SHAPE and np.array_equal(np.asarray(channel.dataobj), source[..., index])
    assert np.mean(np.asarray(nib.load(out / entry["image"][0]).dataobj)) == pytest.approx(MSD_LEVELS[1] + 0.5, 0.05)
    label = np.asarray(nib.load(out / entry["label"]).dataobj)
    assert np.array_equal(label, np.asarray(nib.load(task / "labelsTr" / "BRATS_001.nii.gz").dataobj))
    assert set(np.unique(label)) == {0, 1, 2, 3} and entry["class"] == 1 and entries["BRATS_002"]["class"] == 0
    with pytest.raises(ValueError, match="not a modality of the task"):
        convert("msd", task, tmp_path / "out2", channels="T1,ADC")
    # a task folder whose dataset.json is not the Decathlon one
    (task / "dataset.json").write_text(json.dumps({"name": "x", "training": "none"}))
    with pytest.raises(LayoutError, match="not a Decathlon dataset.json"):
        convert("msd", task, tmp_path / "out3")


def test_kits19_axial_slices(tmp_path):
    root = kits19(tmp_path / "clone")
    out = tmp_path / "out"
    summary = convert("kits19", root, out, spatial_dims=2, positive_labels=2, split="2:1:0", progress=False)
    assert summary["skipped"] == [
        {"case": "case_00003", "reason": "no segmentation.nii.gz (the KiTS19 test cases 210-299 carry no labels)"}
    ]
    validate_datalist(out / DATALIST_NAME, sections=("training", "validation"), label_key="label", class_key="class",
                      spatial_dims=2, num_channels=1)  # fmt: skip
    datalist = json.loads((out / DATALIST_NAME).read_text())
    entries = [e for s in ("training", "validation") for e in datalist[s]]
    # the axial axis is the first voxel axis of KiTS19 (from the affine): 8 slices of 16 x 16 per case
    assert len(entries) == 3 * SHAPE[2]
    assert {e["slice"]: e["class"] for e in entries if e["case"] == "case_00000"} == {z: int(z == 3) for z in range(8)}
    entry = next(e for e in entries if e["case"] == "case_00001" and e["slice"] == 3)
    image = nib.load(out / entry["image"][0])
    source = np.asarray(nib.load(root / "data" / "case_00001" / "imaging.nii.gz").dataobj)
    assert image.shape == (16, 16) and np.array_equal(np.asarray(image.dataobj), source[3])
    assert image.get_data_dtype() == np.int16
    assert np.allclose(image.affine @ [4, 7, 0, 1], KITS_AFFINE @ [3, 4, 7, 1])
    assert set(np.unique(np.asarray(nib.load(out / entry["label"]).dataobj))) == {0, 1, 2}
