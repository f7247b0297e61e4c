"""Errors about the user's input name what the user wrote, through the same config chain as ``monai.bundle run``."""

from __future__ import annotations

import json

import pytest
from common.data import DatalistError
from common.utils import find_user_error
from helpers import configs
from monai.bundle import ConfigWorkflow


def test_missing_file_of_a_user_datalist_is_reported_as_written(bundle_copy, tmp_path):
    """The segmentation bundle splits the user's datalist into ``<bundle>/eval/datalist_full.json``, whose paths are
    rewritten; a missing file is still reported under the user's datalist folder, with the user's datalist named."""
    root = bundle_copy("segmentation")
    folder = tmp_path / "user"
    folder.mkdir()
    user = folder / "my_datalist.json"
    entry = {"image": "does_not_exist.nii.gz", "label": "does_not_exist_label.nii.gz"}
    user.write_text(json.dumps({"training": [entry], "validation": [entry]}))
    workflow = ConfigWorkflow(
        config_file=configs(root, "train.yaml"),
        workflow_type=None,
        run_id="training",
        logging_file=False,
        datalist=str(user),
        phantom_kind="none",
    )
    with pytest.raises(Exception) as err:
        workflow.initialize()
    error = find_user_error(err.value)
    assert isinstance(error, DatalistError)
    message = str(error)
    assert message.startswith(f"Datalist '{user}' failed validation with 4 problems:")
    assert f"training[0] image '{folder / 'does_not_exist.nii.gz'}': file not found" in message
    assert f"validation[0] label '{folder / 'does_not_exist_label.nii.gz'}': file not found" in message
    assert str(root / "eval") not in message
