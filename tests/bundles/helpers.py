"""Plain helpers shared by the bundle tests (the fixtures are in conftest.py).

Test files of this folder import them with ``from helpers import ...``: pytest puts the folder of a test file that is
not in a package on ``sys.path`` (its default ``prepend`` import mode), both under ``python -m pytest`` and ``pytest``.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
from common.data import validate_datalist
from monai.bundle import ConfigWorkflow

from tests.gloo import free_port  # noqa: F401 (the torchrun tests import it from here)

#: the repository root.
REPO = Path(__file__).resolve().parents[2]


def run_cli(
    args: Sequence[str], cwd: str | os.PathLike, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python <args>`` with this interpreter and environment; fail the test with its output if it fails.

    Args:
        args: the arguments after the interpreter, e.g. ``["-m", "monai.bundle", "run", "training", ...]``.
        cwd: working directory.
        timeout: seconds before the command is killed.
        env: variables added to the environment (``OMP_NUM_THREADS=1`` and ``PYTHONUNBUFFERED=1`` are set).

    Returns:
        The completed process (``stdout`` and ``stderr`` as text).
    """
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"command {args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def cli_list(files: Sequence[str | os.PathLike]) -> str:
    """A config list as the ``--config_file`` argument of ``python -m monai.bundle run``."""
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def configs(root: Path, main: str, *variants: str) -> list[str]:
    """``configs/<main>`` of the bundle at ``root`` followed by ``configs/variants/<v>`` for each variant."""
    return [str(root / "configs" / main)] + [str(root / "configs" / "variants" / v) for v in variants]


def evaluate_configs(root: Path, *variants: str) -> list[str]:
    """The config list of the ``evaluating`` workflow: train.yaml, the evaluate.yaml overlay, then the variants."""
    return [str(root / "configs" / "train.yaml"), *configs(root, "evaluate.yaml", *variants)]


def run_workflow(files: Sequence[str], run_id: str, **override: Any) -> tuple[ConfigWorkflow, Any]:
    """Run the workflow ``run_id`` of a config list through MONAI's ``ConfigWorkflow`` (as ``monai.bundle run``).

    Args:
        files: config files, merged in order.
        run_id: the id to run (``training``, ``inference``, ``evaluating``).
        override: ids replaced as on the command line.

    Returns:
        The finalized workflow (its parser still answers ``get_parsed_content``) and what ``run()`` returned.
    """
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, run_id=run_id, logging_file=False, **override)
    workflow.initialize()
    result = workflow.run()
    workflow.finalize()
    return workflow, result


def check_refined_datalist(root: Path, spatial_shape: tuple[int, ...], method: str) -> None:
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


def check_run_summary(root: Path, sample_grid: bool, metrics: bool = False) -> dict[str, Any]:
    """``eval/summary.json`` of a finished training run: every file it names exists, the commands name existing configs.

    Args:
        root: the bundle folder.
        sample_grid: the bundle writes sample grids (their newest PNG must be named).
        metrics: the bundle computes the quick metrics (finite FID/KID next to the real-vs-real reference).

    Returns:
        the summary.
    """
    summary = json.loads((root / "eval" / "summary.json").read_text())
    assert summary["missing"] == [], summary["missing"]
    checkpoint = Path(summary["checkpoint"])
    assert checkpoint.is_file() and checkpoint.parent.resolve() == (root / "models").resolve()
    assert "model.pt" in summary["model_files"] and all(Path(p).is_file() for p in summary["model_files"].values())
    if sample_grid:
        assert summary["sample_grid"].endswith(".png") and Path(summary["sample_grid"]).is_file()
    commands = summary["commands"]
    assert " run inference " in commands["inference"] and " run evaluating " in commands["evaluating"]
    for command in (commands["inference"], commands["evaluating"]):
        files = re.findall(r"[^\s'\"\[\],]+\.yaml", command)
        assert files and all((Path(summary["cwd"]) / f).is_file() for f in files), command
    assert ("metrics" in summary) == metrics and "metrics_error" not in summary
    if metrics:
        for name in ("generated", "reference"):
            assert all(math.isfinite(summary["metrics"][name][k]) for k in ("fid", "kid_mean", "ssim_diversity"))
    return summary
