"""Tests of :mod:`common.data.validation`."""

from __future__ import annotations

import gzip
import json
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

import itk
import nibabel as nib
import numpy as np
import pytest
from common.data.validation import DatalistError, DatalistProblem, validate_datalist
from monai.transforms import LoadImaged

SIZE = 8


def _shape(dims: int) -> tuple[int, ...]:
    return (SIZE,) * dims


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> str:
    """Save ``data`` as NIfTI at ``path`` and return the path as a string."""
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return str(path)


def _image(path: Path, dims: int, channels: int | None = None, seed: int = 0) -> str:
    """A random image; channels-last as MONAI reads a NIfTI: ``(H, W, 1, C)`` in 2D, ``(H, W, D, C)`` in 3D."""
    shape = _shape(dims) + (() if channels is None else (1,) * (3 - dims) + (channels,))
    return _save(path, np.random.default_rng(seed).random(shape, dtype=np.float32))


def _label(path: Path, dims: int) -> str:
    data = np.zeros(_shape(dims), dtype=np.uint8)
    data[(slice(2, 5),) * dims] = 1
    return _save(path, data)


def _box(dims: int) -> list[int]:
    return [2] * dims + [5] * dims


def _write(tmp_path: Path, datalist: Any, name: str = "datalist.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(datalist))
    return str(path)


def _entries(tmp_path: Path, dims: int, n: int = 2) -> list[dict]:
    """Valid entries with relative image and label paths, one box and a class each."""
    entries = []
    for i in range(n):
        _image(tmp_path / f"case_{i}.nii.gz", dims, seed=i)
        _label(tmp_path / f"case_{i}_seg.nii.gz", dims)
        entries.append(
            {
                "image": f"case_{i}.nii.gz",
                "label": f"case_{i}_seg.nii.gz",
                "box": [_box(dims)],
                "box_label": [1],
                "class": i % 2,
                "patient": f"p{i}",
            }
        )
    return entries


def _errors(datalist_file: str, **kwargs: Any) -> DatalistError:
    with pytest.raises(DatalistError) as exc_info:
        validate_datalist(datalist_file, **kwargs)
    return exc_info.value


FULL = {"label_key": "label", "box_key": "box", "class_key": "class"}


@pytest.mark.parametrize("dims", [2, 3])
def test_valid_single_file(tmp_path: Path, dims: int, caplog: pytest.LogCaptureFixture) -> None:
    datalist = {"training": _entries(tmp_path, dims, 4), "validation": _entries(tmp_path, dims, 2)}
    path = _write(tmp_path, datalist)
    with caplog.at_level(logging.INFO, logger="common.data"):
        summary = validate_datalist(
            path,
            sections=("training", "validation"),
            spatial_dims=dims,
            num_channels=1,
            required_classes=[0, 1],
            required_keys=["patient"],
            **FULL,
        )
    assert summary["datalist"] == os.path.abspath(path)
    assert summary["num_entries"] == {"training": 4, "validation": 2}
    assert summary["class_counts"] == {"training": {0: 2, 1: 2}, "validation": {0: 1, 1: 1}}
    assert summary["num_boxes"] == {"training": 4, "validation": 2}
    assert summary["spatial_dims"] == [dims]
    assert summary["num_channels"] == [1]
    assert summary["num_files"] == 8  # validation re-uses the training files, which are read once
    messages = [r.getMessage() for r in caplog.records if r.name == "common.data"]
    assert len(messages) == 1 and "is valid" in messages[0] and "training=4" in messages[0]


@pytest.mark.parametrize("dims", [2, 3])
def test_valid_list_image(tmp_path: Path, dims: int) -> None:
    entries = []
    for i in range(2):
        channels = [
            os.path.basename(_image(tmp_path / f"c{i}_{m}.nii.gz", dims, seed=s)) for s, m in enumerate(("t1", "t2"))
        ]
        entries.append({"image": channels, "label": os.path.basename(_label(tmp_path / f"c{i}_seg.nii.gz", dims))})
    path = _write(tmp_path, {"training": entries})
    summary = validate_datalist(path, label_key="label", spatial_dims=dims, num_channels=2)
    assert summary["num_channels"] == [2] and summary["spatial_dims"] == [dims]
    # spatial dims are inferred from the channel files when not given
    assert validate_datalist(path, label_key="label", num_channels=2)["spatial_dims"] == [dims]


@pytest.mark.parametrize("dims", [2, 3])
def test_valid_channels_last(tmp_path: Path, dims: int) -> None:
    image = _image(tmp_path / "img.nii.gz", dims, channels=3)
    label = _label(tmp_path / "seg.nii.gz", dims)
    path = _write(tmp_path, {"training": [{"image": image, "label": label, "box": [_box(dims)]}]})  # absolute paths
    summary = validate_datalist(path, label_key="label", box_key="box", spatial_dims=dims, num_channels=3)
    assert summary["num_channels"] == [3]
    # without spatial_dims, the single-channel label tells the spatial dims of a channels-last image
    summary = validate_datalist(path, label_key="label", num_channels=3)
    assert summary["spatial_dims"] == [dims] and summary["num_channels"] == [3]


def test_valid_bare_paths_and_no_boxes(tmp_path: Path) -> None:
    _image(tmp_path / "a.nii.gz", 3)
    _label(tmp_path / "a_seg.nii.gz", 3)
    datalist = {
        "training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz", "box": [], "box_label": []}],
        "test": ["a.nii.gz"],
    }
    path = _write(tmp_path, datalist)
    summary = validate_datalist(path, sections="training", label_key="label", box_key="box", spatial_dims=3)
    assert summary["num_boxes"] == {"training": 0}
    assert validate_datalist(path, sections=["test"], spatial_dims=3)["num_entries"] == {"test": 1}


def test_config_target(tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    path = _write(tmp_path, {"training": _entries(tmp_path, 2)})
    parser = ConfigParser(
        {
            "datalist": path,
            "in_channels": 1,
            "check": {
                "_target_": "common.data.validation.validate_datalist",
                "datalist_file": "@datalist",
                "sections": ["training"],
                "num_channels": "@in_channels",
                "spatial_dims": 2,
            },
        }
    )
    assert parser.get_parsed_content("check")["num_entries"] == {"training": 2}


# datalist file and sections


def test_datalist_file_missing(tmp_path: Path) -> None:
    err = _errors(str(tmp_path / "nope.json"))
    assert len(err.problems) == 1
    assert "nope.json" in str(err) and "not found" in str(err)


def test_datalist_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"training": [')
    err = _errors(str(path))
    assert "bad.json" in str(err) and "not valid JSON" in str(err)


def test_datalist_not_an_object(tmp_path: Path) -> None:
    err = _errors(_write(tmp_path, [{"image": "a.nii.gz"}]))
    assert "JSON object" in str(err)


def test_section_missing_or_empty(tmp_path: Path) -> None:
    path = _write(tmp_path, {"training": _entries(tmp_path, 2, 1), "validation": [], "test": "x"})
    err = _errors(path, sections=("training", "validation", "test", "extra"), min_entries=2)
    lines = str(err).splitlines()[1:]
    assert lines == [
        "training: has 1 entries, expected at least 2",
        "validation: the validation section is empty (expected at least 2 entries)",
        "test: section must be a list of entries, got str",
        "extra: section is missing",
    ]
    assert [p.section for p in err.problems] == ["training", "validation", "test", "extra"]


# entries


@pytest.mark.parametrize("key", ["image", "label", "box", "class", "patient"])
def test_missing_key(tmp_path: Path, key: str) -> None:
    entries = _entries(tmp_path, 2)
    del entries[1][key]
    err = _errors(_write(tmp_path, {"training": entries}), required_keys=["patient"], **FULL)
    assert err.problems == [DatalistProblem("training", 1, key, None, "key is missing")]
    assert f"training[1] {key}: key is missing" in str(err)


def test_entry_not_a_dict(tmp_path: Path) -> None:
    err = _errors(_write(tmp_path, {"training": [3]}))
    assert "training[0]: entry must be a dict, got int" in str(err)


@pytest.mark.parametrize("value", [3, [], ["a.nii.gz", 4]])
def test_bad_image_value(tmp_path: Path, value: Any) -> None:
    err = _errors(_write(tmp_path, {"training": [{"image": value}]}))
    assert len(err.problems) == 1 and err.problems[0].key == "image"
    assert "expected a file path" in str(err) or "empty list" in str(err)


# files


@pytest.mark.parametrize("key", ["image", "label"])
def test_file_missing(tmp_path: Path, key: str) -> None:
    entries = _entries(tmp_path, 3)
    os.remove(tmp_path / entries[0][key])
    err = _errors(_write(tmp_path, {"training": entries}), **FULL)
    expected = str(tmp_path / entries[0][key])
    assert err.problems == [DatalistProblem("training", 0, key, expected, "file not found")]
    assert f"training[0] {key} '{expected}': file not found" in str(err)


def test_missing_channel_file(tmp_path: Path) -> None:
    first = _image(tmp_path / "t1.nii.gz", 2)
    err = _errors(_write(tmp_path, {"training": [{"image": [first, "t2.nii.gz"]}]}))
    assert len(err.problems) == 1
    assert f"'{tmp_path / 't2.nii.gz'}': file not found" in str(err)


def test_garbage_file(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 2)
    (tmp_path / entries[1]["image"]).write_bytes(b"this is not a NIfTI file at all" * 20)
    for check_values in (True, False):  # a bad header is caught even when only headers are read
        err = _errors(_write(tmp_path, {"training": entries}), check_values=check_values)
        assert len(err.problems) == 1
        assert "training[1] image" in str(err) and "case_1.nii.gz" in str(err) and "unreadable" in str(err)


def test_truncated_file(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 3)
    path = tmp_path / entries[0]["image"]
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2])[:-20])  # valid header, truncated data and gzip stream
    err = _errors(_write(tmp_path, {"training": entries}))
    assert len(err.problems) == 1
    assert "training[0] image" in str(err) and str(path) in str(err) and "unreadable voxel data" in str(err)


def test_folder_without_dicom_series(tmp_path: Path) -> None:
    (tmp_path / "folder.nii.gz").mkdir()  # a folder is read as a DICOM series, as LoadImaged reads it
    err = _errors(_write(tmp_path, {"training": [{"image": "folder.nii.gz"}]}))
    assert "unreadable by ITK as a DICOM series folder" in str(err)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("key", ["image", "label"])
def test_nonfinite_values(tmp_path: Path, dims: int, key: str) -> None:
    entries = _entries(tmp_path, dims)
    data = np.zeros(_shape(dims), dtype=np.float32)
    data.flat[:5] = np.nan
    data.flat[5:12] = np.inf
    path = _save(tmp_path / entries[1][key], data)
    datalist = _write(tmp_path, {"training": entries})
    err = _errors(datalist, label_key="label")
    assert err.problems == [DatalistProblem("training", 1, key, path, "contains 12 NaN/Inf voxels")]
    assert f"training[1] {key} '{path}': contains 12 NaN/Inf voxels" in str(err)
    validate_datalist(datalist, label_key="label", check_values=False)  # values are not read


# grids


@pytest.mark.parametrize("dims", [2, 3])
def test_label_shape_mismatch(tmp_path: Path, dims: int) -> None:
    entries = _entries(tmp_path, dims)
    path = _save(tmp_path / entries[0]["label"], np.zeros((SIZE,) * (dims - 1) + (SIZE - 1,), dtype=np.uint8))
    err = _errors(_write(tmp_path, {"training": entries}), label_key="label", spatial_dims=dims)
    assert len(err.problems) == 1 and err.problems[0].file == path
    assert "training[0] label" in str(err) and "spatial shape" in str(err) and "differs" in str(err)


@pytest.mark.parametrize("dims", [2, 3])
def test_label_affine_mismatch(tmp_path: Path, dims: int) -> None:
    entries = _entries(tmp_path, dims)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[0, 3] = 0.5
    path = _save(tmp_path / entries[1]["label"], np.zeros(_shape(dims), dtype=np.uint8), affine)
    # differences within the tolerance are accepted
    _save(tmp_path / entries[0]["label"], np.zeros(_shape(dims), dtype=np.uint8), np.diag([1.0, 1.0, 1.0002, 1.0]))
    err = _errors(_write(tmp_path, {"training": entries}), label_key="label")
    assert len(err.problems) == 1 and err.problems[0].file == path
    assert "training[1] label" in str(err) and "affine differs" in str(err)


@pytest.mark.parametrize("dims", [2, 3])
def test_channel_files_mismatch(tmp_path: Path, dims: int) -> None:
    t1 = _image(tmp_path / "t1.nii.gz", dims)
    t2 = _save(tmp_path / "t2.nii.gz", np.zeros((SIZE + 1,) + _shape(dims - 1), dtype=np.float32))
    shifted = np.eye(4)
    shifted[1, 3] = 2.0
    t3 = _save(tmp_path / "t3.nii.gz", np.zeros(_shape(dims), dtype=np.float32), shifted)
    err = _errors(_write(tmp_path, {"training": [{"image": [t1, t2, t3]}]}), spatial_dims=dims, num_channels=3)
    assert [p.file for p in err.problems] == [t2, t3]
    assert "spatial shape" in str(err.problems[0]) and "affine" in str(err.problems[1])


# dimensionality and channels


def test_spatial_dims_too_few(tmp_path: Path) -> None:
    err = _errors(_write(tmp_path, {"training": _entries(tmp_path, 2)}), label_key="label", spatial_dims=3)
    assert len(err.problems) == 4  # two images, two labels
    assert "has 2 dims (shape (8, 8)), expected 3 spatial dims" in str(err)


def test_spatial_dims_3d_data_for_2d(tmp_path: Path) -> None:
    err = _errors(_write(tmp_path, {"training": _entries(tmp_path, 3, 1)}), label_key="label", spatial_dims=2)
    # a 3-axis NIfTI has no channel axis for MONAI's reader: (8, 8, 8) is a volume, not 2D with 8 channels
    assert [p.key for p in err.problems] == ["image", "label"]
    assert "read as a single-channel 3D image (no channel axis), expected 2 spatial dims" in str(err)
    assert "expected a single-channel 2D mask" in str(err)


def test_channels_last_2d_needs_a_fourth_axis(tmp_path: Path) -> None:
    """(H, W, C) loads as (1, H, W, C), a volume; (H, W, 1, C) loads as (C, H, W, 1), C channels of a 2D slice."""
    volume = _save(tmp_path / "hwc.nii.gz", np.zeros((SIZE, SIZE, 3), dtype=np.float32))
    err = _errors(_write(tmp_path, {"training": [{"image": volume}]}), spatial_dims=2)
    assert "(H, W, 1, C)" in str(err)
    image = _save(tmp_path / "hw1c.nii.gz", np.zeros((SIZE, SIZE, 1, 3), dtype=np.float32))
    summary = validate_datalist(_write(tmp_path, {"training": [{"image": image}]}), spatial_dims=2, num_channels=3)
    assert summary["num_channels"] == [3] and summary["spatial_dims"] == [2]


def test_spatial_dims_list_image(tmp_path: Path) -> None:
    files = [_image(tmp_path / f"m{m}.nii.gz", 3) for m in range(2)]
    err = _errors(_write(tmp_path, {"training": [{"image": files}]}), spatial_dims=2)
    assert len(err.problems) == 2
    assert "expected a single-channel 2D array (one file per channel)" in str(err)


def test_too_many_non_spatial_dims(tmp_path: Path) -> None:
    path = _save(tmp_path / "img.nii.gz", np.zeros((SIZE, SIZE, 2, 3), dtype=np.float32))
    err = _errors(_write(tmp_path, {"training": [{"image": path}]}), spatial_dims=2)
    assert "at most one trailing channel dim" in str(err)


@pytest.mark.parametrize("dims", [2, 3])
def test_channel_count_list(tmp_path: Path, dims: int) -> None:
    files = [_image(tmp_path / f"m{m}.nii.gz", dims) for m in range(2)]
    err = _errors(_write(tmp_path, {"training": [{"image": files}]}), num_channels=3)
    assert err.problems == [
        DatalistProblem("training", 0, "image", None, "has 2 channel files, expected num_channels=3")
    ]


@pytest.mark.parametrize("dims", [2, 3])
def test_channel_count_single_file(tmp_path: Path, dims: int) -> None:
    path = _image(tmp_path / "img.nii.gz", dims, channels=3)
    err = _errors(_write(tmp_path, {"training": [{"image": path}]}), spatial_dims=dims, num_channels=1)
    assert len(err.problems) == 1 and err.problems[0].file == path
    assert "has 3 channels" in str(err) and "num_channels=1" in str(err)


def test_multichannel_file_in_list(tmp_path: Path) -> None:
    files = [_image(tmp_path / "a.nii.gz", 2), _image(tmp_path / "b.nii.gz", 2, channels=2)]
    err = _errors(_write(tmp_path, {"training": [{"image": files}]}), spatial_dims=2, num_channels=2)
    assert len(err.problems) == 1 and err.problems[0].file == files[1]
    assert "single-channel" in str(err)


# boxes


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(
    "box, message",
    [
        ("short", "numbers, expected"),
        ("flipped", "x2 <= x1 on axis 0"),
        ("empty", "x2 <= x1 on axis 1"),
        ("negative", "outside the image"),
        ("beyond", "outside the image"),
        ("text", "non-numeric"),
    ],
)
def test_bad_box(tmp_path: Path, dims: int, box: str, message: str) -> None:
    good = _box(dims)
    bad = {
        "short": good[:-1],
        "flipped": [5] + good[1:dims] + [2] + good[dims + 1 :],
        "empty": [2, 3] + good[2:dims] + [5, 3] + good[dims + 2 :],
        "negative": [-1] + good[1:],
        "beyond": good[:dims] + [SIZE + 1] + good[dims + 1 :],
        "text": ["2"] + good[1:],
    }[box]
    entries = _entries(tmp_path, dims)
    entries[1]["box"] = [good, bad]
    entries[1]["box_label"] = [1, 2]
    err = _errors(_write(tmp_path, {"training": entries}), box_key="box", spatial_dims=dims)
    assert len(err.problems) == 1
    assert (err.problems[0].section, err.problems[0].index, err.problems[0].key) == ("training", 1, "box")
    assert str(err.problems[0]).startswith("training[1] box: box 1 ") and message in str(err)


def test_box_at_image_border_is_valid(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 3)
    entries[0]["box"] = [[0, 0, 0, SIZE, SIZE, SIZE], [0.5, 1.5, 2.0, 3.5, 4.0, 7.9]]
    entries[0]["box_label"] = [0, 1]
    validate_datalist(_write(tmp_path, {"training": entries}), box_key="box")


def test_box_length_without_spatial_dims(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 2)
    entries[0]["box"] = [[1, 1, 1, 4, 4, 4]]  # a 3D box on a 2D image, dims inferred from the image
    err = _errors(_write(tmp_path, {"training": entries}), box_key="box")
    assert "has 6 numbers, expected 4 for 2D" in str(err)


def test_box_structure(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 2, 3)
    entries[0]["box"] = _box(2)  # a flat box
    entries[1]["box"] = "1 2 3 4"
    entries[2]["box_label"] = 3
    err = _errors(_write(tmp_path, {"training": entries}), box_key="box")
    assert len(err.problems) == 3
    assert "flat list" in str(err.problems[0]) and "expected a list of boxes" in str(err.problems[1])
    assert str(err.problems[2]).startswith("training[2] box_label: expected a list")


def test_box_label_count(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 3)
    entries[0]["box_label"] = [1, 2]
    err = _errors(_write(tmp_path, {"training": entries}), box_key="box")
    assert err.problems == [DatalistProblem("training", 0, "box_label", None, "has 2 items but there are 1 boxes")]
    validate_datalist(_write(tmp_path, {"training": entries}), box_key="box", box_label_key=None)


# classes


def test_required_class_missing(tmp_path: Path) -> None:
    datalist = {"training": _entries(tmp_path, 2, 2), "validation": _entries(tmp_path, 2, 1)}
    err = _errors(
        _write(tmp_path, datalist), sections=["training", "validation"], class_key="class", required_classes=[0, 1, 2]
    )
    assert [str(p) for p in err.problems] == [
        "training class: required class 2 has no samples",
        "validation class: required class 1 has no samples",
        "validation class: required class 2 has no samples",
    ]


@pytest.mark.parametrize("value", ["1", 1.0, 1.5, True, [1]])
def test_class_not_integer(tmp_path: Path, value: Any) -> None:
    entries = _entries(tmp_path, 2)
    entries[1]["class"] = value
    err = _errors(_write(tmp_path, {"training": entries}), class_key="class")
    assert err.problems == [DatalistProblem("training", 1, "class", None, f"class value {value!r} is not an integer")]


def test_required_classes_needs_class_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="class_key"):
        validate_datalist(_write(tmp_path, {"training": _entries(tmp_path, 2)}), required_classes=[0])


# several problems at once


@pytest.mark.parametrize("dims", [2, 3])
def test_all_problems_in_one_error(tmp_path: Path, dims: int) -> None:
    entries = _entries(tmp_path, dims, 6)
    nan = np.full(_shape(dims), np.nan, dtype=np.float32)
    _save(tmp_path / entries[0]["image"], nan)  # 1: NaN
    os.remove(tmp_path / entries[1]["label"])  # 2: missing file
    del entries[2]["class"]  # 3: missing key
    entries[3]["box"] = [[0] * dims + [SIZE + 3] * dims]  # 4: box outside
    entries[4]["class"] = "tumour"  # 5: class not an integer
    _save(tmp_path / entries[5]["label"], np.zeros(_shape(dims - 1) + (3,), dtype=np.uint8))  # 6: shape
    err = _errors(_write(tmp_path, {"training": entries}), spatial_dims=dims, **FULL)
    assert isinstance(err, ValueError)
    assert len(err.problems) == 6
    assert [p.index for p in err.problems] == [0, 1, 2, 3, 4, 5]
    lines = str(err).splitlines()
    assert len(lines) == 7 and "6 problems" in lines[0]
    for word, line in zip(["NaN", "not found", "missing", "outside", "integer", "shape"], lines[1:]):
        assert word in line
    restored = pickle.loads(pickle.dumps(err))
    assert restored.problems == err.problems and str(restored) == str(err)


def test_speed(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 3, 50)  # 100 files
    path = _write(tmp_path, {"training": entries})
    start = time.perf_counter()
    summary = validate_datalist(path, **FULL)
    elapsed = time.perf_counter() - start
    assert summary["num_files"] == 100
    assert elapsed < 3.0, f"validating 100 files took {elapsed:.2f}s"


# ---- other formats: (H, W, 1) NIfTI, DICOM, MHA (read with the reader LoadImaged uses)


def test_slice_with_trailing_singleton_axis(tmp_path: Path) -> None:
    """An (H, W, 1) NIfTI is a single-channel 2D image; its label may be a native (H, W) NIfTI of another z step."""
    thick = np.diag([0.5, 0.5, 3.0, 1.0])
    image = _save(tmp_path / "img.nii.gz", np.zeros((SIZE, SIZE, 1), dtype=np.float32), thick)
    label = _save(tmp_path / "seg.nii.gz", np.zeros((SIZE, SIZE), dtype=np.uint8), np.diag([0.5, 0.5, 1.0, 1.0]))
    path = _write(tmp_path, {"training": [{"image": image, "label": label}]})
    summary = validate_datalist(path, label_key="label", spatial_dims=2, num_channels=1)
    assert summary["spatial_dims"] == [2] and summary["num_channels"] == [1]


def _dicom_series(folder: Path, slices: int, spacing: tuple[float, float, float], origin: tuple[float, ...]) -> None:
    """Write one DICOM file per slice of a ``(W, H, slices)`` int16 volume, with the geometry tags of a series."""
    folder.mkdir()
    uid = "1.2.826.0.1.3680043.2.1125.7"
    for k in range(slices):
        image = itk.image_from_array(np.full((1, 5, 6), k, dtype=np.int16))
        image.SetSpacing(spacing)
        position = (origin[0], origin[1], origin[2] + k * spacing[2])
        tags = {
            "0020|000e": uid,  # series instance UID
            "0020|000d": uid + ".0",  # study instance UID
            "0008|0018": f"{uid}.{k + 1}",  # SOP instance UID
            "0020|0013": str(k + 1),  # instance number
            "0020|0032": "\\".join(str(p) for p in position),  # image position (patient, LPS)
            "0020|0037": "1\\0\\0\\0\\1\\0",  # image orientation
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",  # pixel spacing (row, column)
            "0018|0050": str(spacing[2]),  # slice thickness
            "0008|0060": "CT",
        }
        for tag, value in tags.items():
            image.GetMetaDataDictionary()[tag] = value
        io = itk.GDCMImageIO.New()
        io.SetKeepOriginalUID(True)
        itk.imwrite(image, str(folder / f"slice_{k}.dcm"), imageio=io)


def test_dicom_series_folder(tmp_path: Path) -> None:
    """A folder is a DICOM series: validated and loaded with its spacing and RAS position, like a NIfTI label."""
    _dicom_series(tmp_path / "series", 3, (0.5, 0.7, 2.0), (1.0, 2.0, 3.0))
    ras = np.array([[-0.5, 0, 0, -1.0], [0, -0.7, 0, -2.0], [0, 0, 2.0, 3.0], [0, 0, 0, 1]])  # LPS -> RAS
    _save(tmp_path / "seg.nii.gz", np.zeros((6, 5, 3), dtype=np.uint8), ras)
    path = _write(tmp_path, {"training": [{"image": "series", "label": "seg.nii.gz"}]})
    summary = validate_datalist(path, label_key="label", spatial_dims=3, num_channels=1, label_values=[0])
    assert summary["spatial_dims"] == [3] and summary["num_files"] == 2
    image = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(tmp_path / "series")})
    assert image["image"].shape == (1, 6, 5, 3) and np.allclose(image["image"].affine.numpy(), ras)
    moved = _save(tmp_path / "moved.nii.gz", np.zeros((6, 5, 3), dtype=np.uint8), ras + np.diag([0, 0, 0.5, 0]))
    err = _errors(_write(tmp_path, {"training": [{"image": "series", "label": moved}]}), label_key="label")
    assert "affine differs" in str(err) and "series" in str(err)


def test_mha_with_direction(tmp_path: Path) -> None:
    """An MHA with a rotated direction matrix compares with a NIfTI label in RAS, as LoadImaged gives both."""
    image = itk.image_from_array(np.zeros((4, 5, 6), dtype=np.float32))  # (z, y, x) -> MONAI (6, 5, 4)
    image.SetSpacing((0.5, 0.7, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    image.SetDirection(itk.matrix_from_array(rotation))
    itk.imwrite(image, str(tmp_path / "img.mha"))
    lps = np.eye(4)
    lps[:3, :3] = rotation @ np.diag([0.5, 0.7, 2.0])
    lps[:3, 3] = [1.0, 2.0, 3.0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    label = _save(tmp_path / "seg.nii.gz", np.zeros((6, 5, 4), dtype=np.uint8), ras)
    path = _write(tmp_path, {"training": [{"image": "img.mha", "label": label}]})
    assert validate_datalist(path, label_key="label", spatial_dims=3)["spatial_dims"] == [3]
    flipped = _save(tmp_path / "flipped.nii.gz", np.zeros((6, 5, 4), dtype=np.uint8), lps)  # LPS left as is
    err = _errors(_write(tmp_path, {"training": [{"image": "img.mha", "label": flipped}]}), label_key="label")
    assert len(err.problems) == 1 and "affine differs" in str(err)


# ---- label values and per-box attributes


def test_label_values(tmp_path: Path) -> None:
    image = _image(tmp_path / "img.nii.gz", 2)
    data = np.zeros(_shape(2), dtype=np.int16)
    data[0, :4] = [-1, -2, 5, 7]
    label = _save(tmp_path / "seg.nii.gz", data)
    path = _write(tmp_path, {"training": [{"image": image, "label": label}]})
    assert validate_datalist(path, label_key="label")  # not checked unless asked
    err = _errors(path, label_key="label", nonnegative_labels=True)
    assert err.problems == [
        DatalistProblem("training", 0, "label", label, "has negative label values [-2, -1] (2 distinct)")
    ]
    err = _errors(path, label_key="label", label_values=range(4), nonnegative_labels=True)
    assert [p.problem for p in err.problems] == [
        "has negative label values [-2, -1] (2 distinct)",
        "has label values [5, 7] (2 distinct) outside the allowed values [0, 1, 2, 3]",
    ]
    data[1, :7] = np.arange(10, 17)
    _save(tmp_path / "seg.nii.gz", data)
    err = _errors(path, label_key="label", label_values=[0, 1])
    assert "[-2, -1, 5, 7, 10, ...] (11 distinct) outside the allowed values [0, 1]" in str(err)


def test_box_attribute_lists(tmp_path: Path) -> None:
    """A per-box attribute given as a string (``"size": "small"``) is reported, not read as 5 characters."""
    entries = _entries(tmp_path, 3, 2)
    entries[0].update(size="small", attenuation=["solid"])
    entries[1].update(size=["small", "large"], attenuation=["solid"])
    path = _write(tmp_path, {"training": entries})
    err = _errors(path, box_key="box", box_attribute_keys=["size", "attenuation"])
    assert err.problems == [
        DatalistProblem("training", 0, "size", None, "expected a list with one item per box, got 'small'"),
        DatalistProblem("training", 1, "size", None, "has 2 items but there are 1 boxes"),
    ]
    with pytest.raises(ValueError, match="box_attribute_keys needs box_key"):
        validate_datalist(path, box_attribute_keys=["size"])
