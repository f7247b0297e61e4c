"""The generic CSV converter on a tiny CSV over a NIfTI file, an NRRD and an MHA file and a DICOM series folder written
with ITK: geometry kept, classes and voxel boxes from the CSV, bad rows listed as skips with their reason, missing
columns refused before anything is written, several channels with world (LPS mm) boxes and no mask."""

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data import validate_datalist
from common.data.converters import DATALIST_NAME, SUMMARY_NAME, LayoutError, convert

from tests.bundles.helpers import REPO

SECTIONS = ("training", "validation", "test")
SPACING, ORIGIN = (0.7, 0.8, 2.0), (10.0, -5.0, 3.0)  # ITK's LPS origin
# the voxel-to-RAS affine of the ITK files (identity direction): LPS -> RAS flips x and y
RAS_AFFINE = np.diag([-0.7, -0.8, 2.0, 1.0])
RAS_AFFINE[:3, 3] = (-10.0, 5.0, 3.0)


def _volume(seed: int) -> np.ndarray:
    """An ``(X, Y, Z) = (6, 5, 4)`` int16 volume."""
    return np.random.default_rng(seed).integers(-100, 100, size=(6, 5, 4)).astype(np.int16)


def _itk_image(array: np.ndarray, z0: int = 0):
    import itk

    image = itk.image_from_array(np.ascontiguousarray(array.transpose(2, 1, 0)))  # ITK arrays are (z, y, x)
    image.SetSpacing(SPACING)
    image.SetOrigin((ORIGIN[0], ORIGIN[1], ORIGIN[2] + SPACING[2] * z0))
    return image


def _write_dicom_series(folder: Path, array: np.ndarray) -> None:
    """One single-frame DICOM file per axial slice of one series (ITK's GDCM writer), positions from the origin."""
    import itk

    folder.mkdir()
    uid = "1.2.826.0.1.3680043.2.1125.1.20261204"
    for k in range(array.shape[2]):
        image = _itk_image(array[:, :, k : k + 1], z0=k)
        meta = image.GetMetaDataDictionary()
        meta["0020|000e"], meta["0020|000d"], meta["0020|0013"], meta["0008|0060"] = uid, uid + ".1", str(k + 1), "CT"
        io = itk.GDCMImageIO.New()
        io.KeepOriginalUIDOn()
        itk.imwrite(image, str(folder / f"slice{k:03d}.dcm"), imageio=io)


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def csv_release(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    """``data/`` with the images and masks, ``data/list.csv`` naming them; returns (csv, patient -> image, mask)."""
    import itk

    root = tmp_path_factory.mktemp("csv") / "data"
    root.mkdir()
    images = {f"p{i}": _volume(i) for i in range(5)}
    mask = np.zeros((6, 5, 4), dtype=np.uint8)
    mask[1:3, 1:4, 1:3] = 1
    nib.save(nib.Nifti1Image(images["p0"], RAS_AFFINE), root / "p0.nii.gz")
    itk.imwrite(_itk_image(images["p1"]), str(root / "p1.nrrd"))
    itk.imwrite(_itk_image(images["p2"]), str(root / "p2.mha"))
    _write_dicom_series(root / "p3_dicom", images["p3"])
    nib.save(nib.Nifti1Image(images["p4"], RAS_AFFINE), root / "p4.nii.gz")
    (root / "masks").mkdir()
    nib.save(nib.Nifti1Image(mask, RAS_AFFINE), root / "masks" / "seg.nii.gz")
    rows = [
        'p0,p0.nii.gz,masks/seg.nii.gz,1,"[[1, 1, 1, 3, 4, 3]]"',
        "p1,p1.nrrd,masks/seg.nii.gz,0,",
        'p2,p2.mha,masks/seg.nii.gz,1,"[[0, 0, 0, 6, 5, 4], [2, 2, 2, 3, 3, 3]]"',
        'p3,p3_dicom,masks/seg.nii.gz,1,"[[4, 0, 1, 6, 2, 4]]"',
        "p4,p4.nii.gz,masks/seg.nii.gz,yes,",  # non-integer class
        "p5,missing.nii.gz,masks/seg.nii.gz,0,",  # missing file
    ]
    return _write_csv(root / "list.csv", "patient,image,label,class,box", rows), images, mask


def test_csv_nifti_nrrd_mha_dicom_geometry_classes_boxes_and_skips(tmp_path, csv_release):
    csv_file, images, mask = csv_release
    out = tmp_path / "out"
    spec = importlib.util.spec_from_file_location("prepare_data", REPO / "scripts" / "prepare_data.py")
    prepare_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare_data)
    assert prepare_data.main(["csv", str(csv_file), str(out), "--box_coordinates", "voxel", "--split", "2:1:1"]) == 0
    validate_datalist(out / DATALIST_NAME, sections=SECTIONS, label_key="label", box_key="box", class_key="class",
                      required_keys=("patient",), spatial_dims=3, num_channels=1, check_values=True)  # fmt: skip
    datalist = json.loads((out / DATALIST_NAME).read_text())
    entries = {e["patient"]: e for s in SECTIONS for e in datalist[s]}
    assert sorted(entries) == ["p0", "p1", "p2", "p3"]
    expected_class = {"p0": 1, "p1": 0, "p2": 1, "p3": 1}
    expected_boxes = {"p0": [[1, 1, 1, 3, 4, 3]], "p1": [], "p2": [[0, 0, 0, 6, 5, 4], [2, 2, 2, 3, 3, 3]]}
    expected_boxes["p3"] = [[4, 0, 1, 6, 2, 4]]
    for patient, entry in entries.items():
        assert entry["class"] == expected_class[patient] and entry["box"] == expected_boxes[patient]
        assert entry["box_label"] == [0] * len(expected_boxes[patient])
        image = nib.load(out / entry["image"][0])
        np.testing.assert_allclose(image.affine, RAS_AFFINE, atol=1e-4)  # world position of every voxel kept
        assert np.array_equal(np.asarray(image.dataobj), images[patient])
        assert np.array_equal(np.asarray(nib.load(out / entry["label"]).dataobj), mask)
    summary = json.loads((out / SUMMARY_NAME).read_text())
    reasons = {s["case"]: s["reason"] for s in summary["skipped"]}
    assert sorted(reasons) == ["p4", "p5"]
    assert "row 6 (patient 'p4')" in reasons["p4"] and "class 'yes' is not an integer" in reasons["p4"]
    assert "row 7 (patient 'p5')" in reasons["p5"] and "image file missing" in reasons["p5"]
    assert "missing.nii.gz" in reasons["p5"]


def test_csv_channels_world_boxes_no_mask_and_layout_errors(tmp_path, csv_release):
    csv_file, images, _ = csv_release
    root = csv_file.parent
    rows = [  # the centre of voxel (2, 1, 1) is at RAS (-11.4, 4.2, 5) = LPS (11.4, -4.2, 5)
        'a,p0.nii.gz,p4.nii.gz,"[[11.4, -4.2, 5.0, 1.4, 0.8, 2.0]]"',
        "b,p4.nii.gz,p0.nii.gz,",
        'b,p0.nii.gz,p0.nii.gz,"[[1, 2]]"',  # a second row of patient b, its box malformed
        "c,p0.nii.gz,p0.nii.gz,,surplus",  # more cells than columns
    ]
    csv2 = _write_csv(root / "channels.csv", "patient,image_t1,image_t2,box", rows)
    out = tmp_path / "out"
    summary = convert("csv", csv2, out, box_coordinates="world", split="1:1", progress=False)
    reasons = {s["case"]: s["reason"] for s in summary["skipped"]}
    assert summary["cases_found"] == 4 and sorted(reasons) == ["b_2", "c"]
    assert "row 4 (patient 'b')" in reasons["b_2"] and "box '[[1, 2]]' malformed" in reasons["b_2"]
    assert "row 5 (patient 'c')" in reasons["c"] and "1 cell(s) more than the header's 4 columns" in reasons["c"]
    datalist = json.loads((out / DATALIST_NAME).read_text())
    entries = {e["case"]: e for s in ("training", "validation") for e in datalist[s]}
    assert sorted(entries) == ["a", "b_1"] and datalist["modality"] == {"0": "t1", "1": "t2"}
    assert entries["a"]["box"] == [[1, 1, 1, 4, 2, 2]] and entries["b_1"]["box"] == []
    for entry in entries.values():
        assert "label" not in entry and "class" not in entry  # no mask, no class column: neither is made up
        assert [Path(f).name for f in entry["image"]] == ["t1.nii.gz", "t2.nii.gz"]
    assert np.array_equal(np.asarray(nib.load(out / entries["a"]["image"][1]).dataobj), images["p4"])
    assert not list((out / "cases" / "a").glob("seg*"))
    # missing required columns: refused before anything is written
    for header in ("image,label", "patient,label"):
        bad = _write_csv(root / "bad.csv", header, ["p0.nii.gz,masks/seg.nii.gz"])
        with pytest.raises(LayoutError, match="'patient' column" if header.startswith("image") else "'image'"):
            convert("csv", bad, tmp_path / "bad_out", progress=False)
        assert not (tmp_path / "bad_out").exists()
