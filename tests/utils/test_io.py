"""Tests of the atomic writes of :mod:`common.utils.io`: text, bytes, JSON and NIfTI."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from common.utils import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
    save_nifti,
    split_ext,
    strict_json,
)
from common.utils.io import NON_FINITE_KEY

AFFINE = np.array([[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -4.0], [0.0, 0.0, 3.0, 7.5], [0.0, 0.0, 0.0, 1.0]])


def _only(folder, *names) -> bool:
    """The folder holds exactly ``names``: no temporary file is left beside them."""
    return sorted(os.listdir(folder)) == sorted(names)


@pytest.mark.parametrize(
    "path, expected",
    [("a/img.nii.gz", ("a/img", ".nii.gz")), ("x.NII.GZ", ("x", ".NII.GZ")), ("m.pt", ("m", ".pt")), ("n", ("n", ""))],
)
def test_split_ext(path, expected):
    assert split_ext(path) == expected


def test_text_round_trip_and_no_temporary_file(tmp_path):
    path = tmp_path / "nested" / "notes.txt"  # missing folders are created
    atomic_write_text("grüße\n", path)
    assert path.read_text(encoding="utf-8") == "grüße\n"
    atomic_write_text("second", path)  # replaces
    assert path.read_text() == "second"
    assert _only(path.parent, "notes.txt")


def test_bytes_round_trip(tmp_path):
    payload = os.urandom(1000)
    atomic_write_bytes(payload, tmp_path / "blob.bin")
    assert (tmp_path / "blob.bin").read_bytes() == payload
    assert _only(tmp_path, "blob.bin")


def test_json_round_trip(tmp_path):
    obj = {"b": [1, 2.5, None, "x"], "a": {"nested": True}}
    path = tmp_path / "out.json"
    atomic_write_json(obj, path, sort_keys=True)
    text = path.read_text()
    assert json.loads(text) == obj and text.endswith("\n") and text.index('"a"') < text.index('"b"')
    atomic_write_json(obj, path, indent=None)
    assert path.read_text() == json.dumps(obj) + "\n"
    assert _only(tmp_path, "out.json")


def _strict_loads(text):
    """json.loads that refuses NaN/Infinity, as strict JSON parsers do."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_is_strict_and_records_non_finite_values(tmp_path):
    path = tmp_path / "metrics.json"
    obj = {
        "auc": float("nan"),
        "per_class": [0.5, np.float32("inf"), np.float64(0.25)],
        "sens": {"small": -float("inf"), "large": 1.0},
        "kid": torch.tensor(float("nan")),
        "counts": np.array([1, 2]),
        "n": np.int64(3),
    }
    atomic_write_json(obj, path)
    data = _strict_loads(path.read_text())
    assert data == {
        "auc": None,
        "per_class": [0.5, None, 0.25],
        "sens": {"small": None, "large": 1.0},
        "kid": None,
        "counts": [1, 2],
        "n": 3,
        NON_FINITE_KEY: {"auc": "NaN", "per_class[1]": "Infinity", "sens.small": "-Infinity", "kid": "NaN"},
    }
    assert obj["auc"] != obj["auc"]  # the caller's object is not changed
    # an existing key of that name is kept; a list root has no place for the record
    atomic_write_json({NON_FINITE_KEY: "mine", "x": float("nan")}, path, allow_nan=True)
    assert _strict_loads(path.read_text()) == {NON_FINITE_KEY: "mine", "x": None}
    atomic_write_json([float("nan"), 1], path)
    assert _strict_loads(path.read_text()) == [None, 1]
    clean, replaced = strict_json({"a": [1.0, float("nan")]})
    assert clean == {"a": [1.0, None]} and replaced == {"a[1]": "NaN"}


def test_atomic_path_keeps_old_content_when_the_body_raises(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_json({"old": 1}, path)
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write('{"half": ')
            raise RuntimeError("killed while writing")
    assert json.loads(path.read_text()) == {"old": 1}
    assert _only(tmp_path, "result.json")


def test_failing_writer_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json({"not serialisable": object()}, tmp_path / "x.json")
    assert _only(tmp_path)


def test_atomic_path_temporary_name(tmp_path):
    path = tmp_path / "image.nii.gz"
    with atomic_path(path) as tmp:
        # beside the destination (so the rename is atomic), hidden, with the destination's extension
        assert os.path.dirname(tmp) == str(tmp_path) and os.path.basename(tmp).startswith(".")
        assert tmp.endswith(".nii.gz") and not os.path.exists(tmp)
        open(tmp, "wb").close()
    assert _only(tmp_path, "image.nii.gz")


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((5, 6), np.float32),  # a 2D slice (H, W)
        ((5, 6, 4), np.int16),  # a volume
        ((5, 6, 1), np.uint8),  # a slice stored as a one-slice volume: the singleton axis is kept
        ((5, 6, 4, 3), np.float64),  # a 4D array (channels or time last)
    ],
)
def test_save_nifti_round_trip(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=shape) * 50).astype(dtype)
    path = tmp_path / "img.nii.gz"
    save_nifti(data, path, AFFINE)
    img = nib.load(path)
    assert img.shape == shape
    assert img.get_data_dtype() == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, AFFINE)
    sform, sform_code = img.get_sform(coded=True)
    qform, qform_code = img.get_qform(coded=True)
    assert int(sform_code) == 1 and int(qform_code) == 1
    np.testing.assert_allclose(sform, AFFINE)
    np.testing.assert_allclose(qform, AFFINE, atol=1e-5)
    assert img.header.get_xyzt_units()[0] == "mm"
    assert _only(tmp_path, "img.nii.gz")


def test_save_nifti_dtype_header_tensor_and_default_affine(tmp_path):
    data = torch.linspace(0, 1, 24, dtype=torch.float64).reshape(2, 3, 4)
    path = tmp_path / "syn.nii"
    save_nifti(data, path, dtype=np.float32, header={"descrip": b"synthetic test 0.1"})
    img = nib.load(path)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(np.asarray(img.dataobj), data.numpy().astype(np.float32))
    np.testing.assert_allclose(img.affine, np.eye(4))
    assert img.header["descrip"].tobytes().rstrip(b"\x00") == b"synthetic test 0.1"
    assert _only(tmp_path, "syn.nii")


def test_remove_stale_temporaries_removes_only_killed_writers_files(tmp_path):
    """What a killed atomic writer leaves (a hidden temporary name) is removed; final files and others stay."""
    (tmp_path / "model.pt").write_bytes(b"final")
    (tmp_path / ".model.0123456789ab.tmp.pt").write_bytes(b"half")
    (tmp_path / ".datalist.abcdef012345.tmp.json").write_text("{")
    (tmp_path / ".hidden_user_file").write_text("keep")
    (tmp_path / "notes.tmp.txt").write_text("keep")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == [
        ".datalist.abcdef012345.tmp.json",
        ".model.0123456789ab.tmp.pt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_user_file", "model.pt", "notes.tmp.txt"]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_path_temporary_name_is_recognised_as_stale(tmp_path):
    """The temporary name atomic_path uses is the one remove_stale_temporaries looks for (as after a SIGKILL)."""
    target = tmp_path / "checkpoint_3.pt"
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"x")
        assert remove_stale_temporaries(tmp_path) == [tmp]
        with open(tmp, "wb") as f:  # the writer goes on: only this test removed it
            f.write(b"x")
    assert target.read_bytes() == b"x"
