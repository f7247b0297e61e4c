"""``prepare_phantom(datalist=)``: a bundle run on the user's own datalist never generates a phantom."""

import json
import logging
import os
from pathlib import Path

import pytest
from common.data import DatalistError, prepare_phantom
from common.utils import find_user_error
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[2]
TINY = {"num_patients": 3, "cases_per_patient": 1, "image_size": 32}


def test_foreign_datalist_generates_nothing(tmp_path, caplog):
    user = tmp_path / "user" / "datalist.json"  # need not exist: validating it is the bundle's next step
    with caplog.at_level(logging.INFO, logger="common.data"):
        assert prepare_phantom(tmp_path / "set", "brain_metastases", datalist=str(user), **TINY) is None
    assert not (tmp_path / "set").exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    (record,) = caplog.records
    assert record.levelno == logging.INFO and str(user) in record.getMessage()
    assert prepare_phantom(tmp_path / "set", "none", datalist=user) is None  # phantom_kind none as before
    with pytest.raises(ValueError, match="Unknown phantom kind"):  # a bad kind is still reported
        prepare_phantom(tmp_path / "set", "brain_ct", datalist=user)
    assert not (tmp_path / "set").exists()


def test_own_datalist_generates_the_phantom(tmp_path, monkeypatch):
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    own = os.path.join("link", "set", "datalist.json")  # relative and through a link: the same file once resolved
    path = prepare_phantom(tmp_path / "set", "brain_metastases", datalist=own, **TINY)
    assert path == str(tmp_path / "set" / "datalist.json") and Path(path).is_file()
    assert len(json.loads(Path(path).read_text())["training"]) > 0


def test_bundle_with_a_bad_user_datalist_reports_it_before_any_phantom(tmp_path):
    """``--datalist`` alone (``phantom_kind`` left at its default): the user's file is validated first, and the
    bundle's ``dataset_dir`` stays empty."""
    user = tmp_path / "user" / "my_datalist.json"
    user.parent.mkdir()
    user.write_text(json.dumps({"training": [{"image": ["t1.nii.gz", "t1c.nii.gz", "t2.nii.gz", "flair.nii.gz"]}]}))
    root = tmp_path / "bundle"
    configs = [str(REPO / "bundles" / "dcgan_wgan" / "configs" / f) for f in ("train.yaml", "variants/tiny.yaml")]
    workflow = ConfigWorkflow(
        config_file=configs,
        workflow_type=None,
        run_id="training",
        logging_file=False,
        bundle_root=str(root),
        datalist=str(user),
    )
    assert workflow.parser.get_parsed_content("phantom_kind") == "brain_mr_2d"
    with pytest.raises(Exception) as err:
        workflow.initialize()
    error = find_user_error(err.value)
    assert isinstance(error, DatalistError) and str(error).startswith(f"Datalist '{user}'")
    assert f"'{user.parent / 't1.nii.gz'}': file not found" in str(error)
    assert not root.exists()
