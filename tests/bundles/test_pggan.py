"""End-to-end tests of bundles/pggan through MONAI's bundle runner, on tiny phantom data (2D and 3D)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import validate_datalist
from common.engines import latest_checkpoint
from helpers import check_run_summary, configs, evaluate_configs, run_workflow

NAME = "pggan"


@pytest.mark.parametrize(
    "variants,spatial_shape,cls",
    [
        (("tiny.yaml",), (16, 16), 1),
        (("non_tumour.yaml", "tiny.yaml"), (16, 16), 0),
        (("3d.yaml", "tiny_3d.yaml"), (16, 16, 16), 1),
    ],
    ids=["tumour-2d", "non-tumour-2d", "tumour-3d"],
)
def test_train_infer_evaluate(bundle_copy, variants, spatial_shape, cls):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", *variants), "training")
    schedule = wf.parser.get_parsed_content("schedule")
    assert all(int(e["class"]) == cls for e in wf.parser.get_parsed_content("train#datalist"))
    state = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert {"generator", "discriminator", "optimizer_generator", "schedule", "trainer"} <= set(state)
    assert state["trainer"]["iteration"] == schedule.total_iterations
    assert state["schedule"]["stage"] == 2 and state["schedule"]["images_shown"] == schedule.total_images
    assert (root / "models" / "model.pt").is_file()
    summary = check_run_summary(root, sample_grid=True)
    assert summary["iteration"] == schedule.total_iterations and summary["sample_grid"].endswith(".png")

    wf, _ = run_workflow(configs(root, "inference.yaml", *variants), "inference")
    synthetic = root / "eval" / "synthetic" / "datalist.json"
    summary = validate_datalist(synthetic, spatial_dims=len(spatial_shape), num_channels=1)
    assert summary["num_entries"]["training"] == wf.parser.get_parsed_content("num_samples")
    entry = json.loads(synthetic.read_text())["training"][0]
    assert entry["synthetic"] is True and entry["class"] == cls and entry["method"] == "pggan"
    arr = nib.load(synthetic.parent / entry["image"]).get_fdata()
    assert arr.shape == spatial_shape and 0.0 <= arr.min() and arr.max() <= 1.0 and arr.std() > 0

    run_workflow(evaluate_configs(root, *variants), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "fallback" in metrics["feature_extractor"] and metrics["class"] == cls
    for key in ("fid", "kid_mean"):
        assert np.isfinite(metrics[key]), key
