"""Tests of RunSummaryHandler on a tiny ignite engine, and of the QuickGenerativeCheck it is given as metrics."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from common.evaluation import QuickGenerativeCheck
from common.handlers import RunSummaryHandler, display_path
from common.utils import atomic_write_json
from ignite.engine import Engine

from tests.builders import blobs

NUM_TRAIN, NUM_TEST, SIZE = 10, 6, 16


def _bundle(root: Path, samples: bool = True) -> Path:
    """A fake bundle folder after training: configs, two checkpoints, model.pt and two sample grids."""
    for name in ("train.yaml", "inference.yaml", "evaluate.yaml", "variants/tiny.yaml"):
        (root / "configs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "configs" / name).write_text("{}\n")
    models = root / "models"
    models.mkdir()
    (models / "checkpoint_120.pt").write_bytes(b"x")
    time.sleep(0.01)
    (models / "checkpoint_90.pt").write_bytes(b"x")  # written later, but an earlier iteration
    (models / "model.pt").write_bytes(b"x")
    if samples:
        (root / "eval" / "samples").mkdir(parents=True)
        (root / "eval" / "samples" / "samples_epoch0002.png").write_bytes(b"x")
        time.sleep(0.01)
        (root / "eval" / "samples" / "samples_epoch0003.png").write_bytes(b"x")
    return root


def _run(handler: RunSummaryHandler, epochs: int = 3) -> Engine:
    engine = Engine(lambda e, b: {"loss": 0.0})
    handler.attach(engine)
    engine.run([0, 1], max_epochs=epochs)
    return engine


def _handler(root: Path, **kwargs) -> RunSummaryHandler:
    return RunSummaryHandler(
        bundle_root=root,
        ckpt_dir=root / "models",
        model_files={"model.pt": "generator"},
        sample_dir=root / "eval" / "samples",
        output_file=root / "eval" / "summary.json",
        **kwargs,
    )


def test_display_path(tmp_path):
    assert display_path(tmp_path / "a" / "b.yaml", tmp_path) == os.path.join("a", "b.yaml")
    elsewhere = tmp_path / "x"
    elsewhere.mkdir()
    assert display_path(tmp_path / "a" / "b.yaml", elsewhere) == str(tmp_path / "a" / "b.yaml")


def test_summary_names_the_newest_files_and_the_commands(tmp_path, monkeypatch, caplog):
    root = _bundle(tmp_path / "bundles" / "toy")
    monkeypatch.chdir(tmp_path)  # as from the repository root
    handler = _handler(root)
    with caplog.at_level(logging.INFO, logger="common.handlers"):
        _run(handler)
    summary = json.loads((root / "eval" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(handler.summary))
    assert summary["epoch"] == 3 and summary["iteration"] == 6 and summary["missing"] == []
    assert summary["checkpoint"] == str(root / "models" / "checkpoint_120.pt")
    assert summary["model_files"] == {"model.pt": str(root / "models" / "model.pt")}
    assert summary["sample_grid"] == str(root / "eval" / "samples" / "samples_epoch0003.png")
    assert "metrics" not in summary and "metrics_error" not in summary
    commands = summary["commands"]
    assert commands["inference"] == (
        "python -m monai.bundle run inference --config_file bundles/toy/configs/inference.yaml"
    )
    assert commands["evaluating"] == (
        "python -m monai.bundle run evaluating --config_file "
        "\"['bundles/toy/configs/train.yaml','bundles/toy/configs/evaluate.yaml']\""
    )
    assert "bundles/toy/configs/variants/tiny.yaml" in commands["variants"]
    log = caplog.text
    for shown in ("bundles/toy/models/checkpoint_120.pt", "bundles/toy/models/model.pt", commands["evaluating"]):
        assert shown in log
    # from the bundle folder the same commands use configs/... paths
    monkeypatch.chdir(root)
    assert handler.commands()["inference"].endswith("--config_file configs/inference.yaml")


def test_missing_files_are_reported_not_raised(tmp_path, caplog):
    root = _bundle(tmp_path / "toy", samples=False)
    (root / "models" / "model.pt").unlink()
    handler = _handler(root, metrics=lambda: 1 / 0)
    with caplog.at_level(logging.INFO, logger="common.handlers"):
        _run(handler)
    summary = json.loads((root / "eval" / "summary.json").read_text())
    assert summary["sample_grid"] is None and summary["model_files"] == {"model.pt": None}
    assert summary["checkpoint"] == str(root / "models" / "checkpoint_120.pt")
    missing = "\n".join(summary["missing"])
    assert "sample folder" in missing and "model.pt" in missing
    assert summary["metrics_error"].startswith("ZeroDivisionError")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sample folder" in w for w in warnings) and any("model.pt" in w for w in warnings)
    assert "(missing)" in caplog.text


def _datalist(folder: Path) -> Path:
    """A datalist of ``.npy`` images in [-1, 1], ``(1, SIZE, SIZE)``: NUM_TRAIN training and NUM_TEST test ones."""
    data = {}
    for section, n, seed in (("training", NUM_TRAIN, 0), ("test", NUM_TEST, 1)):
        images = blobs(n, seed, SIZE) * 2 - 1
        data[section] = []
        for i, image in enumerate(images):
            np.save(folder / f"{section}_{i}.npy", image.astype(np.float32))
            data[section].append({"image": f"{section}_{i}.npy"})
    atomic_write_json(data, folder / "datalist.json")
    return folder / "datalist.json"


def _load(entry: dict) -> dict:
    return {"image": torch.from_numpy(np.load(entry["image"]))}


def _generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, SIZE * SIZE), torch.nn.Unflatten(1, (1, SIZE, SIZE)), torch.nn.Tanh())


def test_quick_check_in_the_summary(tmp_path, caplog):
    datalist = _datalist(tmp_path)
    generator = _generator().train()
    check = QuickGenerativeCheck(
        datalist, _load, spatial_dims=2, in_channels=1, generator=generator, latent_size=4, num_samples=8
    )
    root = _bundle(tmp_path / "toy")
    rng_before = torch.random.get_rng_state()
    with caplog.at_level(logging.INFO, logger="common"):
        _run(_handler(root, metrics=check))
    assert torch.equal(torch.random.get_rng_state(), rng_before) and generator.training
    summary = json.loads((root / "eval" / "summary.json").read_text())
    metrics = summary["metrics"]
    assert "fallback" in metrics["feature_extractor"] and summary["metrics_seconds"] > 0
    generated, reference, real = metrics["generated"], metrics["reference"], metrics["real"]
    assert (generated["num_images"], reference["num_images"], real["num_images"]) == (8, 8, NUM_TEST)
    assert (reference["section"], real["section"]) == ("training", "test")
    for key in ("fid", "kid_mean", "kid_std", "ssim_diversity", "mmd"):
        assert math.isfinite(generated[key]) and math.isfinite(reference[key]), key
    # the real training blobs are much closer to the real test blobs than the untrained generator's output
    assert reference["fid"] < generated["fid"] and reference["mmd"] < generated["mmd"]
    assert 0.0 < real["ssim_diversity"] <= 1.0
    assert f"fid {reference['fid']:.4g}" in caplog.text and metrics["feature_extractor"] in caplog.text


def test_quick_check_of_real_images_matches_the_reference(tmp_path):
    datalist = _datalist(tmp_path)
    reference = QuickGenerativeCheck(datalist, _load, 2, 1, sample_fn=lambda n: torch.zeros(n, 1, SIZE, SIZE))
    # a "generator" drawing exactly the reference subset of the training images: the same FID as the reference
    subset = reference._real("training", 6, shuffle=True) * 2 - 1
    check = QuickGenerativeCheck(datalist, _load, 2, 1, sample_fn=lambda n: subset[:n], num_samples=6)
    results = check()
    generated, reference = results["generated"], results["reference"]
    assert generated["num_images"] == reference["num_images"] == 6
    assert generated["fid"] == pytest.approx(reference["fid"], rel=1e-5, abs=1e-6)
    assert generated["mmd"] == pytest.approx(reference["mmd"], rel=1e-5, abs=1e-6)


def test_quick_check_without_a_test_split_fails_clearly(tmp_path):
    datalist = _datalist(tmp_path)
    check = QuickGenerativeCheck(datalist, _load, 2, 1, sample_fn=lambda n: torch.zeros(n, 1, SIZE, SIZE))
    check.real_section = "validation"
    with pytest.raises(Exception, match="validation"):
        check()
