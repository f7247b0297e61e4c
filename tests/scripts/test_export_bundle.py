"""Tests of the self-contained bundle export (``common.bundle.export`` and ``scripts/export_bundle.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import common
from common.bundle.export import RUN_OUTPUT_DIRS, common_package_dir, export_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_BUNDLES = sorted(p for p in (REPO_ROOT / "bundles").glob("*") if (p / "configs" / "metadata.json").is_file())

TRAIN_YAML = """\
imports:
  - $import common
bundle_root: .
training: $print('COMMON_FILE=' + common.__file__)
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A small bundle with run outputs and caches that must not be exported."""
    root = tmp_path / "src" / "tiny_bundle"
    (root / "configs").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "LICENSE").write_text("Apache License 2.0\n")
    (root / "docs" / "README.md").write_text("# Tiny bundle\n")
    (root / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0"}))
    (root / "configs" / "train.yaml").write_text(TRAIN_YAML)
    (root / "configs" / "__pycache__").mkdir()
    (root / "configs" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (root / "scripts").mkdir()
    (root / "scripts" / "data").mkdir()  # a nested "data" folder is bundle content, not a run output
    (root / "scripts" / "data" / "table.csv").write_text("a,b\n")
    for name in RUN_OUTPUT_DIRS:
        (root / name).mkdir()
        (root / name / "artefact.txt").write_text("run output\n")
    return root


def _relative_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_layout(bundle: Path, tmp_path: Path) -> None:
    out = export_bundle(bundle, tmp_path / "export")
    assert out == (tmp_path / "export" / "tiny_bundle").resolve()
    files = _relative_files(out)
    assert {"LICENSE", "docs/README.md", "configs/metadata.json", "configs/train.yaml"} <= files
    assert "scripts/data/table.csv" in files
    assert not any(f.split("/")[0] in RUN_OUTPUT_DIRS for f in files)
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    vendored = {f[len("common/") :] for f in files if f.startswith("common/")}
    source = {p.relative_to(common_package_dir()).as_posix() for p in common_package_dir().rglob("*.py")}
    source = {f for f in source if "__pycache__" not in f}
    assert "__init__.py" in vendored and "bundle/verify.py" in vendored
    assert source <= vendored
    assert "bundle/schemas/meta_schema_20240725.json" in vendored
    assert [p.name for p in out.parent.iterdir()] == ["tiny_bundle"]  # no temporary sibling left behind


def test_overwrite(bundle: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "export"
    (out_dir / "tiny_bundle").mkdir(parents=True)  # an empty target is fine
    out = export_bundle(bundle, out_dir)
    (out / "stale.txt").write_text("old export\n")
    with pytest.raises(FileExistsError):
        export_bundle(bundle, out_dir)
    assert (out / "stale.txt").is_file()
    export_bundle(bundle, out_dir, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert (out / "common" / "__init__.py").is_file()
    assert sorted(p.name for p in out_dir.iterdir()) == ["tiny_bundle"]


def test_bundle_name_and_refusals(bundle: Path, tmp_path: Path) -> None:
    assert export_bundle(bundle, tmp_path / "export", bundle_name="renamed").name == "renamed"
    with pytest.raises(ValueError, match="inside the bundle"):
        export_bundle(bundle, bundle / "exported")
    with pytest.raises(FileNotFoundError):
        export_bundle(bundle / "docs", tmp_path / "export")
    (bundle / "common").mkdir()
    with pytest.raises(ValueError, match="shadow"):
        export_bundle(bundle, tmp_path / "other")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _assert_vendored(common_file: str, export_dir: Path) -> None:
    assert Path(common_file).resolve().is_relative_to(export_dir.resolve()), common_file
    assert Path(common_file).resolve() != Path(common.__file__).resolve()


def test_vendored_common_wins_over_installed(bundle: Path, tmp_path: Path) -> None:
    out = export_bundle(bundle, tmp_path / "export")
    result = _run([sys.executable, "-c", "import common, sys; print(common.__file__)"], cwd=out)
    _assert_vendored(result.stdout.strip(), out)


def test_exported_bundle_runs_with_vendored_common(bundle: Path, tmp_path: Path) -> None:
    out = export_bundle(bundle, tmp_path / "export")
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.yaml"]
    result = _run(cmd, cwd=out)
    line = next(x for x in (result.stdout + result.stderr).splitlines() if x.startswith("COMMON_FILE="))
    _assert_vendored(line.split("=", 1)[1], out)


def test_script(bundle: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "export_bundle.py"), "--bundle", str(bundle)]
    result = _run([*cmd, "--output_dir", str(tmp_path / "export")], cwd=tmp_path)
    out = Path(result.stdout.strip())
    assert out == (tmp_path / "export" / "tiny_bundle").resolve()
    assert (out / "common" / "__init__.py").is_file() and not (out / "models").exists()


def _real_bundle_params() -> list[Any]:
    if REAL_BUNDLES:
        return [pytest.param(b, id=b.name) for b in REAL_BUNDLES]
    return [pytest.param(None, marks=pytest.mark.skip(reason="no bundle with configs/metadata.json under bundles/"))]


@pytest.mark.parametrize("real_bundle", _real_bundle_params())
def test_real_bundle_export(real_bundle: Path, tmp_path: Path) -> None:
    out = export_bundle(real_bundle, tmp_path / "export")
    files = _relative_files(out)
    assert "LICENSE" in files and "configs/metadata.json" in files and "common/__init__.py" in files
    assert not any(f.split("/")[0] in RUN_OUTPUT_DIRS for f in files)
    result = _run([sys.executable, "-c", "import common; print(common.__file__)"], cwd=out)
    _assert_vendored(result.stdout.strip(), out)


@pytest.mark.slow
@pytest.mark.parametrize("real_bundle", _real_bundle_params())
def test_real_bundle_export_trains(real_bundle: Path, tmp_path: Path) -> None:
    """``training``, ``inference`` and ``evaluating`` work from inside the export (smoke-test sizes if available)."""
    out = export_bundle(real_bundle, tmp_path / "export")
    tiny = (out / "configs" / "variants" / "tiny.yaml").is_file()
    for run_id, config in (("training", "train"), ("inference", "inference"), ("evaluating", "evaluate")):
        if not (out / "configs" / f"{config}.yaml").is_file():
            continue
        configs = [f"configs/{config}.yaml"] + (["configs/variants/tiny.yaml"] if tiny else [])
        config_arg = configs[0] if len(configs) == 1 else repr(configs)
        _run([sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_arg], cwd=out)
        if run_id == "training":
            assert (out / "models" / "model.pt").is_file()  # the run's outputs land in the export's own folders
