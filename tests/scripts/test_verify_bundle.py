"""Tests of the model-zoo readiness checks (``common.bundle.verify`` and ``scripts/verify_bundle.py``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from common.bundle.verify import (
    META_SCHEMA_FILE,
    META_SCHEMA_SHA256,
    META_SCHEMA_URL,
    ZOO_EXCLUSIONS,
    check_files,
    check_format,
    check_large_files,
    verify_bundle,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_BUNDLES = sorted(p for p in (REPO_ROOT / "bundles").glob("*") if (p / "configs" / "metadata.json").is_file())
OFFLINE_ENV = {
    **os.environ,
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}

INFERENCE_YAML = """\
imports:
  - $import torch
bundle_root: .
device: $torch.device('cpu')
ckpt_path: $@bundle_root + '/models/model.pt'
network_def:
  _target_: torch.nn.Conv2d
  in_channels: 1
  out_channels: 2
  kernel_size: 3
  padding: 1
network: $@network_def.to(@device)
inferer:
  _target_: SimpleInferer
run: $print('inference')
"""

TRAIN_YAML = """\
imports:
  - $import torch
bundle_root: .
device: $torch.device('cpu')
dataset_dir: $@bundle_root + '/data'
ckpt_dir: $@bundle_root + '/models'
network_def:
  _target_: torch.nn.Conv2d
  in_channels: 1
  out_channels: 2
  kernel_size: 3
run: $print('train')
"""


def tiny_metadata() -> dict[str, Any]:
    """Metadata of a tiny 2D bundle, valid against the stored schema."""

    def tensor(channels: int, fmt: str) -> dict[str, Any]:
        return {
            "type": "image",
            "format": fmt,
            "num_channels": channels,
            "spatial_shape": [8, 8],
            "dtype": "float32",
            "value_range": [0, 1],
            "is_patch_data": False,
            "channel_def": {str(i): f"channel {i}" for i in range(channels)},
        }

    return {
        "schema": META_SCHEMA_URL,
        "version": "0.1.0",
        "changelog": {"0.1.0": "initial version"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.0.0",
        "required_packages_version": {"pytorch-ignite": "0.5.5"},
        "name": "Tiny test bundle",
        "task": "Tiny bundle for the verification tests",
        "description": "A 2D convolution standing in for a network.",
        "authors": "Test authors",
        "copyright": "Copyright (c) Test authors",
        "network_data_format": {"inputs": {"image": tensor(1, "magnitude")}, "outputs": {"pred": tensor(2, "labels")}},
    }


def make_tiny_bundle(root: Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write a tiny valid bundle at ``root`` and return it."""
    (root / "configs").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "LICENSE").write_text("Apache License 2.0\n")
    (root / "docs" / "README.md").write_text("# Tiny bundle\n")
    (root / "docs" / "data_license.txt").write_text("Synthetic data, no licence conditions.\n")
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata or tiny_metadata(), indent=4))
    (root / "configs" / "inference.yaml").write_text(INFERENCE_YAML)
    (root / "configs" / "train.yaml").write_text(TRAIN_YAML)
    return root


def write_metadata(bundle: Path, metadata: dict[str, Any]) -> None:
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=4))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "tiny_bundle")


def assert_reported(problems: list[str], *fragments: str) -> None:
    for fragment in fragments:
        assert any(fragment in p for p in problems), f"{fragment!r} not in {problems}"


def test_stored_schema_is_pinned() -> None:
    assert hashlib.sha256(META_SCHEMA_FILE.read_bytes()).hexdigest() == META_SCHEMA_SHA256
    schema = json.loads(META_SCHEMA_FILE.read_text())
    assert "network_data_format" in schema["required"]
    assert "required_packages_version" in schema["properties"]


def test_min_passes_on_tiny_bundle(bundle: Path) -> None:
    assert verify_bundle(bundle, mode="min") == []


def test_full_passes_on_tiny_bundle_without_writing_to_it(bundle: Path) -> None:
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    assert verify_bundle(bundle, mode="full", device="cpu") == []
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before


def test_bad_mode(bundle: Path) -> None:
    with pytest.raises(ValueError):
        verify_bundle(bundle, mode="medium")


@pytest.mark.parametrize(
    "missing", ["LICENSE", "configs/metadata.json", "docs/README.md", "docs/data_license.txt"], ids=str
)
def test_missing_required_file(bundle: Path, missing: str) -> None:
    (bundle / missing).unlink()
    assert_reported(verify_bundle(bundle), f"files: missing {missing}")


@pytest.mark.parametrize("config", ["inference", "train"])
def test_missing_config(bundle: Path, config: str) -> None:
    (bundle / "configs" / f"{config}.yaml").unlink()
    assert_reported(verify_bundle(bundle), f"missing configs/{config}.json or configs/{config}.yaml")


def test_version_missing_from_changelog(bundle: Path) -> None:
    metadata = tiny_metadata()
    metadata["version"] = "0.2.0"
    write_metadata(bundle, metadata)
    assert verify_bundle(bundle) == ["metadata: version '0.2.0' is missing from 'changelog'"]


def test_wrong_input_and_output_names(bundle: Path) -> None:
    metadata = tiny_metadata()
    io = metadata["network_data_format"]
    io["inputs"]["latent"] = io["inputs"].pop("image")
    io["outputs"]["output"] = io["outputs"].pop("pred")
    write_metadata(bundle, metadata)
    assert_reported(
        verify_bundle(bundle), "inputs must include 'image' (found ['latent'])", "outputs must include 'pred'"
    )


def test_schema_violations(bundle: Path) -> None:
    metadata = tiny_metadata()
    del metadata["numpy_version"]
    metadata["version"] = 1
    metadata["changelog"] = {"1": "first"}
    write_metadata(bundle, metadata)
    assert_reported(
        verify_bundle(bundle),
        "meta_schema_20240725.json: <root>: 'numpy_version' is a required property",
        "meta_schema_20240725.json: version: 1 is not of type 'string'",
    )


def test_unknown_schema_url(bundle: Path) -> None:
    metadata = tiny_metadata()
    metadata["schema"] = "https://example.invalid/meta_schema_unknown.json"
    write_metadata(bundle, metadata)
    assert_reported(verify_bundle(bundle), "has no stored copy")


def test_metadata_not_json(bundle: Path) -> None:
    (bundle / "configs" / "metadata.json").write_text("{not json")
    assert_reported(verify_bundle(bundle), "configs/metadata.json is not valid JSON")


def test_config_keys_and_ids(bundle: Path) -> None:
    inference = bundle / "configs" / "inference.yaml"
    text = inference.read_text().replace("inferer:\n  _target_: SimpleInferer\n", "").replace("run: ", "go: ")
    inference.write_text(text.replace("ckpt_path: $@bundle_root + '/models/model.pt'\n", ""))
    train = bundle / "configs" / "train.yaml"
    train.write_text(train.read_text().replace("ckpt_dir: $@bundle_root + '/models'\n", ""))
    assert_reported(
        verify_bundle(bundle),
        "inference.yaml: missing key 'inferer'",
        "inference.yaml: missing the 'run' id",
        "inference.yaml: never refers to the checkpoint 'models/model.pt'",
        "train.yaml: missing key 'ckpt_dir'",
    )


def test_train_section_rules(bundle: Path) -> None:
    train = bundle / "configs" / "train.yaml"
    train.write_text(train.read_text() + """\
val_interval: 2
train:
  trainer:
    _target_: SupervisedTrainer
    postprocessing: null
    key_train_metric: {}
  dataset:
    _target_: Dataset
    transform: '@train#preprocessing'
  handlers:
    - _target_: ValidationHandler
      interval: 5
validate:
  evaluator:
    _target_: SupervisedEvaluator
    inferer: '@validate#inferer'
""")
    problems = verify_bundle(bundle)
    assert_reported(
        problems,
        "missing 'train#trainer#max_epochs'",
        "missing 'train#dataset#data'",
        "'train#trainer#key_train_metric' is used, so 'train#key_metric' should be defined",
        "'train#dataset#transform' is used, so 'train#preprocessing' is needed",
        "ValidationHandler 'interval' should be '@val_interval'",
        "missing 'validate#dataset'",
        "missing 'validate#handlers'",
        "'validate#evaluator#inferer' is used, so 'validate#inferer' should be defined",
    )
    assert not any("train#postprocessing" in p for p in problems)  # a null argument needs no section key


def test_config_does_not_load(bundle: Path) -> None:
    (bundle / "configs" / "evaluate.yaml").write_text("key: [unclosed\n")
    (bundle / "configs" / "variants").mkdir()
    (bundle / "configs" / "variants" / "small.yaml").write_text("dataset_dir: C:\\Users\\someone\\data\n")
    assert_reported(
        verify_bundle(bundle),
        "configs: evaluate.yaml does not load",
        "configs: variants/small.yaml: 'dataset_dir' holds an absolute or personal path",
    )


def test_absolute_and_personal_paths(bundle: Path) -> None:
    train = bundle / "configs" / "train.yaml"
    train.write_text(
        train.read_text().replace("dataset_dir: $@bundle_root + '/data'", "dataset_dir: /data/phantoms")
        + "output_dir: $'/home/someone/outputs'\n"
    )
    assert_reported(verify_bundle(bundle), "'dataset_dir' holds an absolute", "'output_dir' holds an absolute")


def test_weights_and_large_files(bundle: Path) -> None:
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"0" * 64)  # run output: allowed
    (bundle / "configs" / "weights.pth").write_bytes(b"0" * 64)
    (bundle / "docs" / "big.bin").write_bytes(b"0" * 2048)
    problems = check_files(bundle, max_file_size=1024)
    assert_reported(problems, "weights configs/weights.pth must not be committed", "docs/big.bin is 0.0 MiB")
    assert not any("models/model.pt" in p for p in problems)


def test_full_reports_network_mismatch(bundle: Path) -> None:
    metadata = tiny_metadata()
    metadata["network_data_format"]["outputs"]["pred"]["num_channels"] = 3
    write_metadata(bundle, metadata)
    assert verify_bundle(bundle, mode="min") == []
    assert_reported(verify_bundle(bundle, mode="full", device="cpu"), "verify_net_in_out failed", "doesn't match: `3`")


def test_full_uses_local_checkpoint(bundle: Path) -> None:
    import torch

    (bundle / "models").mkdir()
    torch.save(torch.nn.Conv2d(1, 2, 3, padding=1).state_dict(), bundle / "models" / "model.pt")
    assert verify_bundle(bundle, mode="full", device="cpu") == []
    torch.save(torch.nn.Conv2d(1, 5, 3).state_dict(), bundle / "models" / "model.pt")  # e.g. from another variant
    assert_reported(verify_bundle(bundle, mode="full", device="cpu"), "models/model.pt does not fit 'network_def'")
    assert verify_bundle(bundle, mode="full", device="cpu", fresh_weights=True) == []


def test_full_checks_weights_with_their_variants(bundle: Path) -> None:
    """Weights trained with a variant fit the inference config merged with that variant (the zoo's full-mode check
    after a training run), and the problem names the way out when the variant is not given."""
    import torch

    (bundle / "models").mkdir()
    torch.save(torch.nn.Conv2d(1, 2, 5, padding=2).state_dict(), bundle / "models" / "model.pt")
    (bundle / "configs" / "variants").mkdir()
    (bundle / "configs" / "variants" / "k5.yaml").write_text("network_def#kernel_size: 5\nnetwork_def#padding: 2\n")
    assert_reported(verify_bundle(bundle, mode="full", device="cpu"), "does not fit 'network_def'", "--variants")
    assert verify_bundle(bundle, mode="full", device="cpu", variants=["configs/variants/k5.yaml"]) == []
    assert_reported(
        verify_bundle(bundle, mode="full", device="cpu", variants=["configs/variants/none.yaml"]),
        "variant file(s) not found",
    )


def test_large_files(bundle: Path) -> None:
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"weights")
    md5 = hashlib.md5(b"weights").hexdigest()
    entry = "- {path: models/model.pt, url: 'https://example.org/m.pt', hash_val: '%s', hash_type: %s}\n"
    large_files = bundle / "large_files.yml"
    large_files.write_text("large_files:\n" + entry % (md5, "md5"))
    assert check_large_files(bundle) == [] and verify_bundle(bundle, mode="min") == []
    large_files.write_text("large_files:\n" + entry % ("0" * 32, "md5"))
    assert_reported(check_large_files(bundle), "models/model.pt does not have the listed md5")
    large_files.write_text("large_files:\n" + entry % (md5, "crc32"))
    assert_reported(check_large_files(bundle), "hash_type 'crc32' is not one of")
    large_files.write_text("large_files:\n- {path: /abs/model.pt, url: ftp://x, hash_val: a, hash_type: md5}\n")
    assert_reported(check_large_files(bundle), "must be relative to the bundle folder")
    large_files.write_text("large_files:\n- {path: models/model.pt, url: 'ftp://x', hash_type: md5}\n")
    assert_reported(check_large_files(bundle), "entry 0 lacks hash_val")
    large_files.write_text("large_files: []\n")
    assert_reported(check_large_files(bundle), "needs a non-empty 'large_files' list")


def test_full_reports_unevaluable_ids(bundle: Path) -> None:
    train = bundle / "configs" / "train.yaml"
    train.write_text(train.read_text().replace("bundle_root: .", "bundle_root: $os.path.abspath('.')"))
    assert verify_bundle(bundle, mode="min") == []  # ``os`` is used but not imported: only evaluation tells
    problems = verify_bundle(bundle, mode="full", device="cpu")
    assert "configs: train.yaml: 'bundle_root' does not evaluate: NameError: name 'os' is not defined" in problems
    assert "configs: train.yaml: 'ckpt_dir' does not evaluate: NameError: name 'os' is not defined" in problems
    assert not any("inference.yaml" in p for p in problems)


def test_full_reports_unscriptable_network(bundle: Path) -> None:
    for name in ("inference.yaml", "train.yaml"):
        config = bundle / "configs" / name
        config.write_text(config.read_text().replace("torch.nn.Conv2d", "tiny_bundle_net.Unscriptable"))
    (bundle / "tiny_bundle_net.py").write_text(  # bundle-local code, importable during the checks
        "import torch\n\n\n"
        "class Unscriptable(torch.nn.Conv2d):\n"
        "    def forward(self, x, *args):\n"
        "        return super().forward(x)\n"
    )
    problems = verify_bundle(bundle, mode="full", device="cpu")
    assert_reported(problems, "TorchScript export failed")
    assert not any("verify_net_in_out" in p for p in problems)
    assert str(bundle.resolve()) not in sys.path


def test_check_format(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "mod.py").write_text('"""Module."""\n\nimport os\n\nprint(os.sep)\n')
    assert check_format(good) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mod.py").write_text("import sys, os\nx=1\n")
    problems = check_format(bad)
    assert_reported(problems, "black failed", "isort failed", "flake8 failed")
    assert check_format(tmp_path / "good" / "missing") == []


def test_verify_metadata_cli_offline(bundle: Path) -> None:
    """MONAI's own ``verify_metadata`` validates against the stored schema without downloading it."""
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "verify_metadata",
        "--meta_file",
        str(bundle / "configs" / "metadata.json"),
        "--filepath",
        str(META_SCHEMA_FILE),
        "--hash_val",
        META_SCHEMA_SHA256,
        "--hash_type",
        "sha256",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=OFFLINE_ENV, cwd=bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr


def test_script(bundle: Path) -> None:
    script = [sys.executable, str(REPO_ROOT / "scripts" / "verify_bundle.py")]
    ok = subprocess.run([*script, str(bundle)], capture_output=True, text=True, env=OFFLINE_ENV)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "min verification passed" in ok.stdout
    (bundle / "LICENSE").unlink()
    failed = subprocess.run([*script, str(bundle), "--mode", "min"], capture_output=True, text=True, env=OFFLINE_ENV)
    assert failed.returncode == 1
    assert "files: missing LICENSE" in failed.stdout


def _real_bundle_params() -> list[Any]:
    if REAL_BUNDLES:
        return [pytest.param(b, id=b.name) for b in REAL_BUNDLES]
    return [pytest.param(None, marks=pytest.mark.skip(reason="no bundle with configs/metadata.json under bundles/"))]


@pytest.mark.parametrize("real_bundle", _real_bundle_params())
def test_real_bundle_min(real_bundle: Path) -> None:
    assert verify_bundle(real_bundle, mode="min") == []


@pytest.mark.slow
@pytest.mark.parametrize("real_bundle", _real_bundle_params())
def test_real_bundle_full(real_bundle: Path) -> None:
    """Every bundle passes full mode; a bundle on the zoo's exclusion lists (``ZOO_EXCLUSIONS``) says why in its
    model card, and is excluded because its network really fails those checks."""
    assert verify_bundle(real_bundle, mode="full", device="cpu", fresh_weights=True) == []
    excluded = ZOO_EXCLUSIONS.get(real_bundle.name)
    if excluded:
        card = (real_bundle / "docs" / "README.md").read_text()
        assert "bundle_custom_data.py" in card and all(check in card for check in excluded), excluded
        saved = ZOO_EXCLUSIONS.pop(real_bundle.name)
        try:
            problems = verify_bundle(real_bundle, mode="full", device="cpu", fresh_weights=True)
        finally:
            ZOO_EXCLUSIONS[real_bundle.name] = saved
        assert any(p.startswith("network: verify_net_in_out failed") for p in problems), problems
        assert any(p.startswith("network: TorchScript export failed") for p in problems), problems


def test_real_bundles_verify_metadata_offline() -> None:
    """MONAI's ``verify_metadata`` (the function behind ``python -m monai.bundle verify_metadata``, whose command line
    :func:`test_verify_metadata_cli_offline` runs) accepts every real bundle's metadata against the stored schema,
    offline; one interpreter checks all bundles."""
    code = (
        "import json, sys\n"
        "from monai.bundle import verify_metadata\n"
        "for meta in json.loads(sys.argv[1]):\n"
        "    verify_metadata(meta_file=meta, filepath=sys.argv[2], hash_val=sys.argv[3], hash_type='sha256')\n"
        "    print('verified', meta)\n"
    )
    metas = [str(b / "configs" / "metadata.json") for b in REAL_BUNDLES]
    cmd = [sys.executable, "-c", code, json.dumps(metas), str(META_SCHEMA_FILE), META_SCHEMA_SHA256]
    result = subprocess.run(cmd, capture_output=True, text=True, env=OFFLINE_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert [x for x in result.stdout.splitlines() if x.startswith("verified ")] == [f"verified {m}" for m in metas]
    assert output.count("metadata is verified with no error") == len(metas)
