import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
from monai.bundle import ConfigWorkflow

from common.data import validate_datalist

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle_copy(tmp_path):
    """A copy of a repository bundle in tmp_path (its outputs never touch the repository)."""

    def _copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(
            REPO / "bundles" / name, dst, ignore=shutil.ignore_patterns("models", "eval", "data", "runs", "outputs")
        )
        return dst

    return _copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(args, cwd, timeout=600, env=None):
    """Run a command with this interpreter's environment; fail the test with its output if it fails."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"command {args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def cli_list(files):
    """A config list as the ``--config_file`` argument of ``python -m monai.bundle run``."""
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def configs(root, main, *variants):
    return [str(root / "configs" / main)] + [str(root / "configs" / "variants" / v) for v in variants]


def run_workflow(files, run_id, **override):
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, run_id=run_id, logging_file=False, **override)
    workflow.initialize()
    result = workflow.run()
    workflow.finalize()
    return workflow, result


def check_refined_datalist(root, spatial_shape, method):
    """The refined datalist of the MUNIT/SimGAN bundles: classes, provenance, files, outlier records."""
    synthetic = json.loads((root / "data").glob("*/degraded_synthetic/datalist.json").__next__().read_text())
    num_class1 = sum(1 for e in synthetic["training"] if e["class"] == 1)
    refined_file = root / "eval" / "refined" / "datalist.json"
    data = json.loads(refined_file.read_text())
    entries = data["training"] + data["rejected"]
    assert len(entries) == num_class1 and data["outlier_filter"]["num_tested"] == num_class1
    for e in entries:
        assert e["synthetic"] is True and e["class"] == 1
        assert e["generator"]["bundle"] == "phantom-degradation"  # the source's provenance is kept
        assert e["refined_by"]["method"] == method and len(e["refined_by"]["checkpoint_sha256"]) == 64
        assert all((refined_file.parent / s).is_file() for s in e["source"])
        arr = nib.load(refined_file.parent / e["image"]).get_fdata()
        assert arr.shape == spatial_shape and 0.0 <= arr.min() and arr.max() <= 1.0
    for e in data["rejected"]:
        assert e["outlier_score"] > e["outlier_threshold"] and "threshold" in e["outlier_reason"]
    if data["training"]:
        validate_datalist(refined_file, spatial_dims=len(spatial_shape), num_channels=1)
    report = json.loads((root / "eval" / "refined" / "outliers.json").read_text())
    assert len(report["scores"]) == num_class1
