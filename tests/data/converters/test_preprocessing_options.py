"""Converters with preprocessing (N4, orientation, spacing, size, intensity, lung mask), through
``scripts/prepare_data.py`` in this process: what is written, where a nodule box lands after resampling, what a re-run
with other options does, and which sources refuse which options before anything is written."""

import csv
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data.converters import DATALIST_NAME, SUMMARY_NAME, convert
from common.data.converters.engine import OPTIONS_NAME
from common.data.preprocessing import n4_bias_field_correction

from tests.bundles.helpers import REPO
from tests.data.converters.releases import medmnist_npz

SECTIONS = ("training", "validation", "test")


@pytest.fixture(scope="module")
def prepare_data():
    spec = importlib.util.spec_from_file_location("prepare_data", REPO / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entries(out: Path) -> list[dict]:
    datalist = json.loads((out / DATALIST_NAME).read_text())
    return [e for s in SECTIONS for e in datalist.get(s, [])]


def _load(out: Path, path: str) -> nib.Nifti1Image:
    return nib.load(out / path)


def test_brats_slices_n4_zscore_256_style_resize(brats2020_release, tmp_path, prepare_data, capsys):
    out = tmp_path / "brats_2d"
    args = ["brats", str(brats2020_release), str(out), "--spatial_dims", "2", "--slices", "1:7", "--n4", "true",
            "--intensity", "zscore", "--size", "24,20"]  # fmt: skip
    assert prepare_data.main(args) == 0
    entries = _entries(out)
    assert len(entries) > 0
    recorded = json.loads((out / OPTIONS_NAME).read_text())["preprocessing"]
    assert recorded == {"n4": True, "n4_shrink": 4, "size": [24, 20], "size_mode": "resize", "intensity": "zscore"}
    for entry in entries[:6]:
        images = [_load(out, p) for p in entry["image"]]
        label = _load(out, entry["label"])
        assert all(i.shape == (24, 20) for i in images) and label.shape == (24, 20)
        np.testing.assert_allclose(images[0].affine, label.affine)
        assert np.asarray(label.dataobj).dtype == np.uint8
        assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3}
        assert np.asarray(images[0].dataobj).dtype == np.float32
    # the in-plane spacing follows the resize (16 x 16 voxels of 1 mm -> 24 x 20), the slice keeps its world position
    np.testing.assert_allclose(np.abs(images[0].header.get_zooms()[:2]), [16 / 24, 16 / 20], rtol=1e-5)
    # z-score of the whole volume's nonzero voxels: across all slices of a case, channel means near 0, std near 1
    case = entries[0]["case"]
    t1 = np.concatenate([np.asarray(_load(out, e["image"][0]).dataobj).ravel() for e in entries if e["case"] == case])
    assert abs(t1[t1 != 0].mean()) < 0.3 and 0.6 < t1[t1 != 0].std() < 1.4
    # a re-run with other options is refused (the case files would disagree); with the same ones, all is reused
    capsys.readouterr()
    assert prepare_data.main(args[:-2]) == 1
    assert "made with other options" in capsys.readouterr().err
    assert prepare_data.main(args) == 0
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["cases_converted"] == 0 and summary["cases_reused"] == 10


def test_brats_volumes_n4_is_the_library_correction(brats2020_release, tmp_path):
    out = tmp_path / "brats_3d"
    convert("brats", brats2020_release, out, n4=True, split="1:0:0", progress=False)
    entry = next(e for e in _entries(out) if e["case"] == "BraTS20_Training_002")
    written = np.asarray(_load(out, entry["image"][3]).dataobj)  # FLAIR
    source = nib.load(brats2020_release / "BraTS20_Training_002" / "BraTS20_Training_002_flair.nii.gz")
    expected = n4_bias_field_correction(np.asarray(source.dataobj), spacing=(1.0, 1.0, 1.0), shrink_factor=4)
    np.testing.assert_array_equal(written, expected)


def _chest_series(path: Path, spacing, origin, direction) -> tuple[np.ndarray, np.ndarray]:
    """A (x, y, z) int16 CT through ITK: air, a body (40 HU), two lungs (-850 HU), a 300 HU nodule in the left lung.

    Returns:
        the array and the nodule's voxel centre.
    """
    import itk

    ct = np.full((28, 24, 12), -1000, np.int16)
    ct[2:26, 3:21] = 40
    ct[4:12, 5:19] = -850
    ct[16:24, 5:19] = -850
    nodule = np.array([8.0, 12.0, 6.0])
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in ct.shape), indexing="ij"), -1)
    ct[np.linalg.norm((grid - nodule) * np.asarray(spacing), axis=-1) <= 3.0] = 300
    image = itk.image_from_array(np.ascontiguousarray(ct.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(itk.matrix_from_array(np.asarray(direction, dtype=np.float64)))
    path.parent.mkdir(parents=True, exist_ok=True)
    itk.imwrite(image, str(path))
    return ct, nodule


def test_luna16_resampled_reoriented_with_lung_mask(tmp_path, prepare_data):
    spacing, origin, direction = (0.8, 1.1, 2.5), (-60.0, 40.0, -200.0), np.diag([1.0, -1.0, 1.0])
    release = tmp_path / "LUNA16"
    rows = []
    for i in range(3):
        uid = f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{i:03d}"
        _, nodule = _chest_series(release / "subset0" / f"{uid}.mhd", spacing, origin, direction)
        world = np.asarray(origin) + direction @ (np.asarray(spacing) * nodule)  # LPS mm
        rows.append([uid, *world.round(3), 6.0])
    (release / "CSVFILES").mkdir()
    with open(release / "CSVFILES" / "annotations.csv", "w", newline="") as f:
        csv.writer(f).writerows([["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"], *rows])
    out = tmp_path / "luna16"
    args = ["luna16", str(release), str(out), "--orientation", "RAS", "--spacing", "1.5,1.5,1.5", "--lung_mask",
            "true", "--intensity", "window:-1000:400", "--split", "1:1:1"]  # fmt: skip
    assert prepare_data.main(args) == 0
    for entry in _entries(out):
        ct, lung = _load(out, entry["image"]), _load(out, entry["lung"])
        assert nib.aff2axcodes(ct.affine) == ("R", "A", "S")
        np.testing.assert_allclose(np.abs(ct.header.get_zooms()), [1.5, 1.5, 1.5])
        np.testing.assert_allclose(lung.affine, ct.affine) and lung.shape == ct.shape
        array, mask = np.asarray(ct.dataobj), np.asarray(lung.dataobj).astype(bool)
        assert 0.0 <= array.min() and array.max() <= 1.0  # the HU window
        # the lung mask was taken on HU (before the window): it holds the lungs, not the air around the body
        assert 0.15 < mask.mean() < 0.5 and not mask[0].any() and not mask[:, 0].any()
        # the nodule's box holds the nodule's brightest voxel on the new grid
        (box,) = entry["box"]
        peak = np.unravel_index(np.argmax(array), array.shape)
        assert all(box[a] <= peak[a] < box[a + 3] for a in range(3)), (box, peak)
        assert mask[peak]  # the nodule lies in the (hole-filled) lung


def test_sources_refuse_what_they_cannot_honour(tmp_path, prepare_data, capsys):
    npz = medmnist_npz(tmp_path / "pathmnist.npz", sizes=(3, 1, 1), shape=(8, 8, 3), num_classes=9)
    with pytest.raises(ValueError, match="takes no preprocessing"):
        convert("medmnist", npz, tmp_path / "mnist", spatial_dims=2, size="16,16", progress=False)
    assert not (tmp_path / "mnist").exists()
    assert prepare_data.main(["medmnist", str(npz), str(tmp_path / "m2"), "--size", "16,16"]) == 1
    assert "medmnist takes no option --size" in capsys.readouterr().err
    assert prepare_data.main(["luna16", str(tmp_path), str(tmp_path / "l"), "--n4", "true"]) == 1
    assert "luna16 takes no option --n4" in capsys.readouterr().err
    # voxel boxes index the listed grid: a conversion that would move it is refused
    image = np.zeros((8, 8, 4), np.int16)
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "p0.nii.gz"))
    (tmp_path / "list.csv").write_text('patient,image,box\na,p0.nii.gz,"[[1, 1, 1, 3, 3, 2]]"\n')
    with pytest.raises(ValueError, match="voxel boxes index"):
        convert("csv", tmp_path / "list.csv", tmp_path / "csv_out", spacing="2,2,2", progress=False)
    assert not (tmp_path / "csv_out").exists()


def test_csv_boxes_cut_into_slices_for_2d_detection(tmp_path):
    """CPGGAN / 2D detection from the CSV route: a 3D voxel box becomes a 2D box on each slice it crosses, a slice
    without box is a negative (class from the boxes when there is no mask), a single-slice image takes 4-number
    boxes."""
    volume = np.arange(8 * 6 * 5, dtype=np.int16).reshape(8, 6, 5)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "v.nii.gz"))
    nib.save(nib.Nifti1Image(volume[:, :, :1], np.eye(4)), str(tmp_path / "s.nii.gz"))
    (tmp_path / "list.csv").write_text(
        'patient,image,box\na,v.nii.gz,"[[1, 2, 1, 4, 5, 3], [5, 0, 2, 7, 2, 4]]"\nb,s.nii.gz,"[[2, 1, 6, 3]]"\n'
    )
    out = tmp_path / "out"
    convert("csv", tmp_path / "list.csv", out, spatial_dims=2, split="1:1:0", progress=False)
    entries = {(e["patient"], e["slice"]): e for e in _entries(out)}
    assert sorted(entries) == [("a", z) for z in range(5)] + [("b", 0)]
    boxes = {z: entries["a", z]["box"] for z in range(5)}
    assert boxes == {0: [], 1: [[1, 2, 4, 5]], 2: [[1, 2, 4, 5], [5, 0, 7, 2]], 3: [[5, 0, 7, 2]], 4: []}
    assert [entries["a", z]["class"] for z in range(5)] == [0, 1, 1, 1, 0]
    assert entries["a", 2]["box_label"] == [0, 0] and entries["b", 0]["box"] == [[2, 1, 6, 3]]
    assert "label" not in entries["a", 1] and not list(out.glob("cases/a/*seg*"))
    assert _load(out, entries["a", 1]["image"][0]).shape == (8, 6)
    # a 4-number box on a volume of several slices is a listed skip
    (tmp_path / "bad.csv").write_text('patient,image,box\na,v.nii.gz,"[[2, 1, 6, 3]]"\nb,s.nii.gz,\n')
    summary = convert("csv", tmp_path / "bad.csv", tmp_path / "bad", spatial_dims=2, split="1:0:0", progress=False)
    assert [s["case"] for s in summary["skipped"]] == ["a"]
    assert "2D boxes need a single-slice image" in summary["skipped"][0]["reason"]
