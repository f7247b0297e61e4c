"""BraTS converter on tiny copies of the 2018, 2020 and 2023 releases: slices, classes, channels, labels, grades,
patient splits, and bad cases (missing modality, corrupt file, image/label geometry mismatch)."""

import json
import shutil
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data import check_patient_disjoint, validate_datalist
from common.data.converters import CASES_DIR, DATALIST_NAME, convert

from tests.data.converters.releases import (
    BRATS_AFFINE,
    MHA_DIRECTION,
    MHA_ORIGIN,
    MHA_SPACING,
    SHAPE,
    brats2015_case,
    brats_case,
    corrupt,
    save,
    tumour_mask,
)


def _datalist(out: Path) -> dict:
    return json.loads((out / DATALIST_NAME).read_text())


def _entries(datalist: dict) -> list[dict]:
    return [e for s in ("training", "validation", "test") for e in datalist[s]]


def test_brats2020_slices(brats2020_release, tmp_path):
    out = tmp_path / "brats_2d"
    summary = convert("brats", brats2020_release, out, spatial_dims=2, slices="1:7", min_area=3, progress=False)
    datalist = _datalist(out)
    check = validate_datalist(
        out / DATALIST_NAME,
        sections=("training", "validation", "test"),
        label_key="label",
        class_key="class",
        spatial_dims=2,
        num_channels=4,
    )
    assert check["class_counts"] == summary["class_counts"]
    entries = _entries(datalist)
    by_case = defaultdict(dict)
    for e in entries:
        by_case[e["case"]][e["slice"]] = e
    assert len(by_case) == 10 and summary["cases_converted"] == 10 and not summary["skipped"]
    for case, slices in by_case.items():
        folder = brats2020_release / case
        seg = next(p for p in folder.iterdir() if "seg" in p.name.lower())
        mask = np.asarray(nib.load(seg).dataobj)
        areas = [int((mask[:, :, z] > 0).sum()) for z in range(SHAPE[2])]
        expected = {z: int(areas[z] >= 3) for z in range(1, 7) if areas[z] >= 3 or areas[z] == 0}
        assert {z: e["class"] for z, e in slices.items()} == expected, case  # range kept, classes follow the mask
    assert set(by_case["BraTS20_Training_001"]) == set(range(1, 7))  # the empty mask: every slice, class 0
    assert {e["class"] for e in by_case["BraTS20_Training_001"].values()} == {0}
    assert 2 not in by_case["BraTS20_Training_002"] and summary["ambiguous_entries"] == 1  # 1 voxel < min_area 3
    assert "BraTS20_Training_355" in by_case  # its segmentation is W39_1998.09.19_Segm.nii
    assert {e["grade"] for c, s in by_case.items() for e in s.values()} == {"HGG", "LGG"}
    assert by_case["BraTS20_Training_001"][1]["grade"] == "LGG"

    # channels in the order T1, T1c, T2, FLAIR (release levels 100..400), labels 1, 2, 4 -> 1, 2, 3, geometry kept
    entry = by_case["BraTS20_Training_003"][3]
    levels = [float(np.asarray(nib.load(out / f).dataobj).mean()) for f in entry["image"]]
    assert [round(v, -2) for v in levels] == [100, 200, 300, 400]
    assert [Path(f).name for f in entry["image"]] == [f"s003_{c}.nii.gz" for c in ("t1", "t1c", "t2", "flair")]
    written = nib.load(out / entry["label"])
    release = np.asarray(
        nib.load(brats2020_release / "BraTS20_Training_003" / "BraTS20_Training_003_seg.nii.gz").dataobj
    )
    expected_mask = np.where(release[:, :, 3] == 4, 3, release[:, :, 3])
    assert written.shape == SHAPE[:2] and np.array_equal(np.asarray(written.dataobj), expected_mask)
    assert set(np.unique(expected_mask)) == {0, 1, 2, 3} and written.get_data_dtype() == np.uint8
    for i, j in ((0, 0), (5, 9)):  # a written pixel sits where the release voxel (i, j, 3) sits
        assert np.allclose(written.affine @ [i, j, 0, 1], BRATS_AFFINE @ [i, j, 3, 1])

    # patient-level split 7:1:2, reproducible: a re-run with the same seed writes the same sections
    check_patient_disjoint(datalist)
    assert summary["num_patients"] == {"training": 7, "validation": 1, "test": 2}
    again = convert("brats", brats2020_release, out, spatial_dims=2, slices="1:7", min_area=3, progress=False)
    assert again["cases_reused"] == 10
    assert {s: _datalist(out)[s] for s in ("training", "validation", "test")} == {
        s: datalist[s] for s in ("training", "validation", "test")
    }
    other = convert("brats", brats2020_release, out, spatial_dims=2, slices="1:7", min_area=3, seed=3, progress=False)
    assert other["num_patients"] == summary["num_patients"]
    check_patient_disjoint(_datalist(out))


def test_brats2023_volumes_and_bad_cases(tmp_path):
    release = tmp_path / "download" / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    tumour = dict.fromkeys((2, 3, 4), 3.0)
    for i, name in enumerate(
        ["BraTS-GLI-00000-000", "BraTS-GLI-00000-001", "BraTS-GLI-00002-000", "BraTS-GLI-00005-000"]
        + ["BraTS-GLI-00006-000", "BraTS-GLI-00008-000", "BraTS-GLI-00009-000", "BraTS-GLI-00011-000"]
    ):
        brats_case(release, name, tumour if i != 2 else None, scheme="2023+", seed=i)
    bad = {
        "BraTS-GLI-00012-000": "missing modality t2f (expected BraTS-GLI-00012-000-t2f.nii.gz)",
        "BraTS-GLI-00013-000": "t1c file unreadable or corrupt",
        "BraTS-GLI-00014-000": "geometry mismatch: label has shape (16, 16, 7), t1 has (16, 16, 8)",
        "BraTS-GLI-00015-000": "geometry mismatch: label and t1 have different affines",
        "BraTS-GLI-00016-000": "no segmentation (expected BraTS-GLI-00016-000-seg.nii.gz)",
    }
    brats_case(release, "BraTS-GLI-00012-000", tumour, scheme="2023+", missing=["t2f"])
    corrupt(brats_case(release, "BraTS-GLI-00013-000", tumour, scheme="2023+") / "BraTS-GLI-00013-000-t1c.nii.gz")
    folder = brats_case(release, "BraTS-GLI-00014-000", tumour, scheme="2023+")
    save(np.zeros((16, 16, 7), np.uint8), folder / "BraTS-GLI-00014-000-seg.nii.gz", BRATS_AFFINE)
    folder = brats_case(release, "BraTS-GLI-00015-000", tumour, scheme="2023+")
    shifted = BRATS_AFFINE.copy()
    shifted[2, 3] = 4.0
    save(np.zeros(SHAPE, np.uint8), folder / "BraTS-GLI-00015-000-seg.nii.gz", shifted)
    folder = brats_case(release, "BraTS-GLI-00016-000", tumour, scheme="2023+")
    (folder / "BraTS-GLI-00016-000-seg.nii.gz").unlink()

    out = tmp_path / "brats_3d"
    summary = convert("brats", tmp_path / "download", out, split="60:20:20", progress=False)
    assert [s["case"] for s in summary["skipped"]] == sorted(bad)
    for item in summary["skipped"]:
        assert bad[item["case"]] in item["reason"], item
    assert sorted(p.name for p in (out / CASES_DIR).iterdir()) == sorted(
        p.name for p in release.iterdir() if p.name not in bad
    )  # nothing of a skipped case, no partial folder
    validate_datalist(out / DATALIST_NAME, sections=("training", "validation", "test"), label_key="label",
                      class_key="class", spatial_dims=3, num_channels=4, check_values=True)  # fmt: skip
    datalist = _datalist(out)
    entries = {e["case"]: (section, e) for section in ("training", "validation", "test") for e in datalist[section]}
    # two time points of one patient: one patient, one split
    assert entries["BraTS-GLI-00000-000"][1]["patient"] == entries["BraTS-GLI-00000-001"][1]["patient"]
    assert entries["BraTS-GLI-00000-000"][1]["patient"] == "BraTS-GLI-00000"
    assert entries["BraTS-GLI-00000-000"][0] == entries["BraTS-GLI-00000-001"][0]
    # 60:20:20 of the 6 tumour patients (4, 1, 1, stratified by class) and the one tumour-free patient (training)
    assert summary["num_patients"] == {"training": 5, "validation": 1, "test": 1}
    assert entries["BraTS-GLI-00002-000"][1]["class"] == 0 and entries["BraTS-GLI-00009-000"][1]["class"] == 1
    entry = entries["BraTS-GLI-00009-000"][1]
    label = nib.load(out / entry["label"])
    source = nib.load(release / "BraTS-GLI-00009-000" / "BraTS-GLI-00009-000-seg.nii.gz")
    assert np.array_equal(np.asarray(label.dataobj), np.asarray(source.dataobj))  # 2023 labels 1, 2, 3 kept
    assert np.allclose(label.affine, BRATS_AFFINE) and label.shape == SHAPE
    t1c = nib.load(out / entry["image"][1])
    assert t1c.get_data_dtype() == np.int16 and round(float(np.asarray(t1c.dataobj).mean()), -2) == 200


def test_brats2018_grades(tmp_path):
    release = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    brats_case(release / "HGG", "Brats18_2013_2_1", {3: 3.0}, ext=".nii")
    brats_case(release / "HGG", "Brats18_TCIA01_131_1", {3: 3.0})
    brats_case(release / "LGG", "Brats18_2013_0_1", {3: 3.0})
    summary = convert("brats", release, tmp_path / "out", grades="HGG", split="1:1:0", progress=False)
    assert summary["excluded"] == [{"case": "Brats18_2013_0_1", "reason": "grade LGG not in ['HGG']"}]
    entries = _entries(_datalist(tmp_path / "out"))
    assert sorted(e["case"] for e in entries) == ["Brats18_2013_2_1", "Brats18_TCIA01_131_1"]
    assert {e["grade"] for e in entries} == {"HGG"}
    with pytest.raises(ValueError, match="grades"):
        convert("brats", release, tmp_path / "out2", grades="GBM")


def test_brats2015_mha_through_itk(tmp_path):
    release = tmp_path / "BRATS2015_Training"
    tumour = dict.fromkeys((2, 3, 4), 3.0)
    brats2015_case(release / "HGG", "brats_2013_pat0001_1", 54512, tumour, seed=0)
    brats2015_case(release / "HGG", "brats_tcia_pat153_0109", 42300, tumour, seed=1)
    brats2015_case(release / "HGG", "brats_tcia_pat153_0110", 42310, tumour, seed=2)
    folder = brats2015_case(release / "LGG", "brats_tcia_pat101_0001", 42320, tumour, seed=3)
    shutil.rmtree(next(folder.glob("VSD.Brain.XX.O.MR_T2.*")))
    out = tmp_path / "out"
    summary = convert("brats", release, out, spatial_dims=2, split="1:1:0", progress=False)
    assert summary["skipped"] == [
        {
            "case": "brats_tcia_pat101_0001",
            "reason": "missing modality MR_T2 (expected VSD.Brain.XX.O.<modality>.<id>.mha)",
        }
    ]
    validate_datalist(out / DATALIST_NAME, sections=("training", "validation"), label_key="label", class_key="class",
                      spatial_dims=2, num_channels=4)  # fmt: skip
    entries = _entries(_datalist(out))
    patients = {e["case"]: e["patient"] for e in entries}
    assert patients["brats_tcia_pat153_0109"] == patients["brats_tcia_pat153_0110"] == "brats_tcia_pat153"
    assert {e["grade"] for e in entries} == {"HGG"} and len(entries) == 3 * SHAPE[2]
    entry = next(e for e in entries if e["case"] == "brats_2013_pat0001_1" and e["slice"] == 3)
    levels = [float(np.asarray(nib.load(out / f).dataobj).mean()) for f in entry["image"]]
    assert [round(v, -2) for v in levels] == [100, 200, 300, 400]  # T1, T1c, T2, FLAIR
    label = nib.load(out / entry["label"])
    source = tumour_mask(tumour, labels=(1, 4, 2))[:, :, 3]
    expected = np.where(source == 4, 3, source)
    rows = np.nonzero(source.any(axis=1))[0]
    expected[rows[0]][source[rows[0]] > 0] = 1  # non-enhancing (3) joins the core (1)
    assert np.array_equal(np.asarray(label.dataobj), expected)
    # the world position of voxel (i, j, 3): ITK's LPS point origin + direction @ (spacing * index), in RAS
    for i, j in ((0, 0), (5, 9)):
        lps = np.asarray(MHA_ORIGIN) + MHA_DIRECTION @ (np.asarray(MHA_SPACING) * [i, j, 3])
        assert np.allclose((label.affine @ [i, j, 0, 1])[:3], lps * [-1, -1, 1])
