"""End-to-end tests of bundles/simgan through MONAI's bundle runner, on tiny phantom data (2D and 3D)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from common.data import validate_datalist
from common.engines import latest_checkpoint

NAME = "simgan"


def configs(root, main, *variants):
    return [str(root / "configs" / main)] + [str(root / "configs" / "variants" / v) for v in variants]


def run_workflow(files, run_id, **override):
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, run_id=run_id, logging_file=False, **override)
    workflow.initialize()
    result = workflow.run()
    workflow.finalize()
    return workflow, result


def check_refined_datalist(root, spatial_shape, method):
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


@pytest.mark.parametrize(
    "variants,spatial_shape",
    [(("tiny.yaml",), (16, 16)), (("3d.yaml", "tiny_3d.yaml"), (16, 16, 16))],
    ids=["2d", "3d"],
)
def test_train_infer_evaluate(bundle_copy, variants, spatial_shape):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", *variants), "training")
    ckpt = latest_checkpoint(root / "models")
    state = torch.load(ckpt, weights_only=True)
    expected = {"refiner", "discriminator", "optimizer_refiner", "optimizer_discriminator", "history_buffer"}
    assert expected | {"scheduler_refiner", "trainer"} <= set(state)
    num_steps = wf.parser.get_parsed_content("num_steps")
    assert state["trainer"]["iteration"] >= num_steps
    assert state["history_buffer"]["images"].shape[0] > 0  # the discriminator saw refined images
    assert state["history_buffer"]["images"].shape[2:] == spatial_shape
    refiner = torch.load(root / "models" / "model.pt", weights_only=True)
    assert set(refiner) == set(wf.parser.get_parsed_content("refiner").state_dict())

    run_workflow(configs(root, "inference.yaml", *variants), "inference")
    check_refined_datalist(root, spatial_shape, "simgan")

    run_workflow(configs(root, "evaluate.yaml", *variants), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "fallback" in metrics["feature_extractor"]
    for key in ("fid_synthetic", "fid_refined", "kid_mean_synthetic", "kid_mean_refined"):
        assert np.isfinite(metrics[key]), key
    for key in ("outlier_rejection_rate_synthetic", "outlier_rejection_rate_refined"):
        assert 0.0 <= metrics[key] <= 1.0


def test_resume_continues_the_iteration_count(bundle_copy):
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml")
    run_workflow(files, "training", num_steps=2)
    first = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert first["trainer"]["iteration"] == 2
    wf, _ = run_workflow(files, "training", num_steps=6, resume=True)
    handler = wf.parser.get_parsed_content("train#handlers")[0]
    assert handler.loaded_from is not None
    final = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert final["trainer"]["iteration"] == 6
    # the step-based schedule continued too: the learning rate was halved at lr_halve_step = 3
    lr = final["optimizer_refiner"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.0005)
    assert final["history_buffer"]["images"].shape[0] == 4  # the restored buffer kept filling


def test_missing_synthetic_datalist_fails_clearly(bundle_copy, tmp_path):
    root = bundle_copy(NAME)
    missing = tmp_path / "nowhere" / "datalist.json"
    with pytest.raises(Exception) as err:
        run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training", synthetic_datalist=str(missing))
    text = str(err.value)
    cause = err.value
    while cause is not None:
        text += str(cause)
        cause = cause.__cause__
    assert str(missing) in text
