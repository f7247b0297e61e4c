"""End-to-end tests of bundles/simgan through MONAI's bundle runner, on tiny phantom data (2D and 3D)."""

import json

import numpy as np
import pytest
import torch
from common.engines import latest_checkpoint
from helpers import check_refined_datalist, configs, evaluate_configs, run_workflow

NAME = "simgan"


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

    run_workflow(evaluate_configs(root, *variants), "evaluating")
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
