"""``prepare_phantom(datalist=)``: a bundle run on the user's own datalist never generates a phantom."""

import json
import logging
import os
from pathlib import Path

import pytest
from common.data import prepare_phantom

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
