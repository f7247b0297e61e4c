"""Tests of the self-contained bundle export (``common.bundle.export`` and ``scripts/export_bundle.py``)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import common
import pytest
from common.bundle.export import (
    RUN_OUTPUT_DIRS,
    TOOL_PACKAGES,
    common_package_dir,
    export_bundle,
    file_hash,
    runtime_packages,
)
from common.bundle.network_format import describe_network, network_format_differences
from common.bundle.verify import META_SCHEMA_FILE, check_metadata, check_network, verify_bundle
from common.bundle.zoo_format import check_zoo_format

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_JOB = "dcgan_wgan"  # the bundle of the README's first command
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
    runtime = {f for f in source if "/" not in f or f.split("/")[0] in runtime_packages()}
    assert "__init__.py" in vendored and "utils/io.py" in vendored
    assert runtime <= vendored
    # the tools are not vendored: bundle configs never import them
    assert set(TOOL_PACKAGES) == {"experiments", "bundle"}
    assert not any(f.split("/")[0] in TOOL_PACKAGES for f in vendored), sorted(vendored)
    assert vendored <= {p.relative_to(common_package_dir()).as_posix() for p in common_package_dir().rglob("*")}
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


def test_runtime_packages() -> None:
    names = runtime_packages()
    assert {"utils", "losses", "data", "networks", "transforms", "metrics", "handlers", "engines"} <= set(names)
    assert set(names) == set(common.__all__) - set(TOOL_PACKAGES)
    assert not set(names) & {"experiments", "bundle"}


def test_vendored_modules_import_without_tools_or_matplotlib(bundle: Path, tmp_path: Path) -> None:
    """Every vendored module imports from the copy alone (no tool package needed), without matplotlib (not a
    requirement of the bundles: ``None`` in ``sys.modules`` makes ``import matplotlib`` fail, as if not installed)."""
    out = export_bundle(bundle, tmp_path / "export")
    code = (
        "import importlib, pkgutil, sys; sys.modules['matplotlib'] = None; import common; "
        "names = [m.name for m in pkgutil.walk_packages(common.__path__, 'common.')]; "
        "[importlib.import_module(n) for n in names]; print(len(names)); print(common.__file__)"
    )
    result = _run([sys.executable, "-c", code], cwd=out)
    count, common_file = result.stdout.strip().splitlines()[-2:]
    _assert_vendored(common_file, out)
    assert int(count) > 20


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


_COMMON_NAME = re.compile(r"(?<![\w.])common(?:\.[A-Za-z_]\w*)+")


def _config_common_names(bundle_dir: Path) -> set[str]:
    """Every dotted ``common.…`` name written in a bundle's config files (``_target_`` values and expressions)."""
    names: set[str] = set()
    for path in (bundle_dir / "configs").rglob("*"):
        if path.suffix in (".yaml", ".yml", ".json"):
            names |= set(_COMMON_NAME.findall(path.read_text()))
    return names


def _resolve(dotted: str) -> Any:
    """The object a dotted name refers to: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_config_common_names(bundle: Path) -> None:
    """The name scan finds targets and expressions, not look-alikes; a tool name is outside the vendored packages."""
    (bundle / "configs" / "evaluate.yaml").write_text(
        "a: {_target_: common.handlers.SampleGridHandler}\nb: $common.utils.bundle_root()\n"
        "c: $mycommon.x\nd: $common.experiments.runner.run_grid(1)\n"
    )
    names = _config_common_names(bundle) - {"common.__file__"}  # train.yaml's print
    assert names == {
        "common.handlers.SampleGridHandler",
        "common.utils.bundle_root",
        "common.experiments.runner.run_grid",
    }
    assert "experiments" not in runtime_packages()
    assert callable(_resolve("common.utils.bundle_root"))
    with pytest.raises(AttributeError):
        _resolve("common.utils.no_such_function")


@pytest.mark.parametrize("real_bundle", _real_bundle_params())
def test_real_bundle_export(real_bundle: Path, tmp_path: Path) -> None:
    """The export holds the bundle and the runtime packages of ``common``, and every ``common`` name its configs use
    lies in a vendored package and resolves (so the export's configs need nothing it lacks)."""
    out = export_bundle(real_bundle, tmp_path / "export")
    files = _relative_files(out)
    assert "LICENSE" in files and "configs/metadata.json" in files and "common/__init__.py" in files
    assert not any(f.split("/")[0] in RUN_OUTPUT_DIRS for f in files)
    assert not any(f.startswith(tuple(f"common/{p}/" for p in TOOL_PACKAGES)) for f in files)
    names = _config_common_names(out)
    assert names, "the bundle's configs name no common object"
    for name in sorted(names):
        package = name.split(".")[1]
        assert package in runtime_packages(), f"{name} is not in a vendored package of common"
        assert f"common/{package}/__init__.py" in files or f"common/{package}.py" in files, name
        assert _resolve(name) is not None, name


def test_real_bundle_exports_import_their_own_common(tmp_path: Path) -> None:
    """``import common`` from each real bundle's export folder loads that export's copy (one interpreter for all
    exports: the installed ``common`` and the other exports' copies are unloaded between them)."""
    exports = [export_bundle(b, tmp_path / "export") for b in REAL_BUNDLES]
    code = (
        "import importlib, json, sys\n"
        "found = {}\n"
        "for folder in json.loads(sys.argv[1]):\n"
        "    for name in [m for m in sys.modules if m == 'common' or m.startswith('common.')]:\n"
        "        del sys.modules[name]\n"
        "    sys.path.insert(0, folder)\n"
        "    found[folder] = importlib.import_module('common').__file__\n"
        "    sys.path.remove(folder)\n"
        "print(json.dumps(found))\n"
    )
    result = _run([sys.executable, "-c", code, json.dumps([str(e) for e in exports])], cwd=tmp_path)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(found) == len(REAL_BUNDLES)
    for folder, common_file in found.items():
        _assert_vendored(common_file, Path(folder))


def test_real_bundle_exports_pass_the_zoo_format_and_schema_checks(tmp_path: Path) -> None:
    """Every bundle's export passes the zoo's format check (isort, black, flake8 with its settings and plugins) and
    its metadata schema check.  The vendored ``common`` is byte-identical in every export, so the format tools (one
    subprocess each) see it once, in the first export, plus every export's own Python files."""
    from monai.bundle import verify_metadata

    exports = [export_bundle(b, tmp_path / "models") for b in REAL_BUNDLES]
    vendored = [{p.relative_to(e): file_hash(p) for p in (e / "common").rglob("*.py")} for e in exports]
    assert all(v == vendored[0] for v in vendored), "the vendored common differs between exports"
    checked = tmp_path / "checked"
    for export in exports[1:]:
        shutil.copytree(export, checked / export.name, ignore=shutil.ignore_patterns("common"))
    assert check_zoo_format([exports[0], *(checked / e.name for e in exports[1:])]) == []
    for export in exports:
        verify_metadata(meta_file=str(export / "configs" / "metadata.json"), filepath=str(META_SCHEMA_FILE))


def test_zoo_format_check_catches_the_zoo_rules(tmp_path: Path) -> None:
    """The zoo's isort places ``common`` with the third-party imports; its flake8 runs pep8-naming and
    flake8-comprehensions."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "ok.py").write_text('"""Module."""\n\nimport torch\nfrom common import utils\n\nprint(torch, utils)\n')
    assert check_zoo_format([bundle]) == []
    (bundle / "bad.py").write_text(
        '"""Module."""\n\nimport torch\n\nfrom common import utils\n\n\ndef f(C):\n'
        "    return {k: v for k, v in C.items()}, torch, utils\n"
    )
    problems = "\n".join(check_zoo_format([bundle]))
    assert "zoo isort check failed" in problems and "bad.py" in problems
    assert "N803" in problems and "C416" in problems


@pytest.mark.slow
@pytest.mark.parametrize("real_bundle", [REPO_ROOT / "bundles" / MAIN_JOB], ids=[MAIN_JOB])
def test_real_bundle_export_trains(real_bundle: Path, tmp_path: Path) -> None:
    """``training``, ``inference`` and ``evaluating`` work from inside the export (smoke-test sizes if available).

    Run for the README's main job only: every bundle's runs are tested in the repository (tests/bundles), and
    :func:`test_real_bundle_export` checks that every ``common`` name of every bundle's configs is vendored.

    The evaluate overlay is merged on ``train.yaml``, then the same variant files as for training.
    """
    out = export_bundle(real_bundle, tmp_path / "export")
    tiny = (out / "configs" / "variants" / "tiny.yaml").is_file()
    for run_id, config in (("training", "train"), ("inference", "inference"), ("evaluating", "evaluate")):
        if not (out / "configs" / f"{config}.yaml").is_file():
            continue
        base = ["configs/train.yaml", "configs/evaluate.yaml"] if config == "evaluate" else [f"configs/{config}.yaml"]
        configs = base + (["configs/variants/tiny.yaml"] if tiny else [])
        config_arg = configs[0] if len(configs) == 1 else repr(configs)
        _run([sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_arg], cwd=out)
        if run_id == "training":
            assert (out / "models" / "model.pt").is_file()  # the run's outputs land in the export's own folders
    # publishing the trained weights: the tiny variant changes the latent and image sizes, so the repository's
    # metadata.json (the default network) does not describe the weights' network; the export of the weights
    # (variant merged into the configs, metadata rewritten for the merged network, large_files.yml) passes full mode
    # as the zoo reads it, without variants
    variants = ["configs/variants/tiny.yaml"] if tiny else []
    problems = verify_bundle(out, mode="full", device="cpu", variants=variants)
    if tiny:
        assert_reported(problems, "verify_net_in_out failed", "inputs#image#num_channels: declared 100, network 8")
    else:
        assert problems == []
    published = export_bundle(
        real_bundle,
        tmp_path / "publish",
        weights=out / "models" / "model.pt",
        variants=variants,
        weights_url="https://example.org/dcgan_wgan/model.pt",
    )
    large_files = (published / "large_files.yml").read_text()
    assert "path: models/model.pt" in large_files and file_hash(out / "models" / "model.pt") in large_files
    assert verify_bundle(published, mode="min") == []
    assert verify_bundle(published, mode="full", device="cpu") == []


def assert_reported(problems: list[str], *fragments: str) -> None:
    """Every fragment occurs in one of the problems."""
    for fragment in fragments:
        assert any(fragment in p for p in problems), f"{fragment!r} not in {problems}"


@pytest.mark.parametrize("name", ["dcgan_wgan", "classification", "segmentation", "detection"])
def test_describe_network_reproduces_the_declared_metadata(name: str) -> None:
    """On the default configuration, the derived shapes are the metadata's: a noise input (latent size, no shape), an
    image input with an image or class-score output, and a network whose output is not a tensor (kept)."""
    root = REPO_ROOT / "bundles" / name
    meta_file = root / "configs" / "metadata.json"
    declared = json.loads(meta_file.read_text())["network_data_format"]
    derived = describe_network(root / "configs" / "inference.yaml", meta_file, root)
    assert network_format_differences(declared, derived) == []
    assert derived == declared  # the fields not derived are kept as declared


def test_publish_a_variant_that_changes_the_network_shapes(tmp_path: Path) -> None:
    """Weights of the 3D smoke-test variant (3D output, latent size 8): the export's metadata describes that
    network, and the export passes the zoo's network checks and the metadata schema, read without variants."""
    import torch
    from monai.bundle import ConfigParser

    root = REPO_ROOT / "bundles" / MAIN_JOB
    variants = ["configs/variants/3d.yaml", "configs/variants/tiny_3d.yaml"]
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / "inference.yaml"), *(str(root / v) for v in variants)])
    weights = tmp_path / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
    published = export_bundle(
        root, tmp_path / "publish", weights=weights, variants=variants, weights_url="https://example.org/m.pt"
    )
    metadata = json.loads((published / "configs" / "metadata.json").read_text())
    declared = json.loads((root / "configs" / "metadata.json").read_text())
    image, pred = metadata["network_data_format"]["inputs"]["image"], metadata["network_data_format"]["outputs"]["pred"]
    assert (image["num_channels"], image["spatial_shape"]) == (8, [])
    assert (pred["num_channels"], pred["spatial_shape"], pred["dtype"]) == (4, [16, 16, 16], "float32")
    assert pred["channel_def"] == declared["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert {k: v for k, v in metadata.items() if k != "network_data_format"} == {
        k: v for k, v in declared.items() if k != "network_data_format"
    }
    assert check_metadata(published) == []
    assert check_network(published, device="cpu") == []
    # the repository's metadata describes the default network: the same weights are reported against it
    problems = check_network(root, device="cpu", torchscript=False, variants=variants)
    assert_reported(
        problems,
        "inputs#image#num_channels: declared 100, network 8",
        "outputs#pred#spatial_shape: declared [64, 64], network [16, 16, 16]",
    )
