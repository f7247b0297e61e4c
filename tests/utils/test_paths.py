"""Tests of :func:`common.utils.bundle_root`: a config finds its bundle from the workflow that parses it."""

from __future__ import annotations

from pathlib import Path

from common.utils import bundle_root
from monai.bundle import ConfigWorkflow

TRAIN_YAML = """\
imports:
  - $import common
bundle_root: $common.utils.bundle_root()
device: $torch.device('cpu')
dataset_dir: $@bundle_root + '/data'
"""


def test_outside_any_workflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bundle_root() == str(tmp_path.resolve())
    assert bundle_root(default=tmp_path / "x" / "..") == str(tmp_path.resolve())


def test_from_config_workflow(tmp_path, monkeypatch):
    root = tmp_path / "my_bundle"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "train.yaml").write_text(TRAIN_YAML)
    (root / "configs" / "metadata.json").write_text('{"version": "0.1.0"}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # started from another folder: the root is still the bundle's
    workflow = ConfigWorkflow(config_file=str(root / "configs" / "train.yaml"), workflow_type="train")
    workflow.initialize()
    assert workflow.bundle_root == str(root.resolve())
    assert workflow.dataset_dir == str(root.resolve()) + "/data"


def _call_as_monai_bundle_command(config_file):
    """Call ``bundle_root`` from a function of a ``monai.bundle`` module with a ``config_file`` argument (as
    ``verify_net_in_out`` and ``ckpt_export`` do)."""
    namespace = {"__name__": "monai.bundle.scripts_under_test", "bundle_root": bundle_root}
    exec("def command(config_file):\n    return bundle_root()\n", namespace)
    return namespace["command"](config_file)


def test_from_config_file_argument_of_a_monai_bundle_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "b"
    assert _call_as_monai_bundle_command(str(root / "configs" / "inference.yaml")) == str(root.resolve())
    listed = f"['{root}/configs/train.yaml', '{root}/configs/variants/tiny.yaml']"
    assert _call_as_monai_bundle_command(listed) == str(root.resolve())
    assert _call_as_monai_bundle_command([str(root / "configs" / "train.yaml")]) == str(root.resolve())
    # a config folder not named "configs" is itself the root
    assert _call_as_monai_bundle_command(str(tmp_path / "flat" / "train.json")) == str((tmp_path / "flat").resolve())
    assert Path(_call_as_monai_bundle_command(None)) == tmp_path.resolve()  # no config file: the current folder
