"""End-to-end tests of bundles/munit through MONAI's bundle runner, on tiny phantom data (2D and 3D)."""

import json

import numpy as np
import pytest
import torch
from common.engines import latest_checkpoint
from helpers import check_refined_datalist, check_run_summary, configs, evaluate_configs, run_workflow
from monai.bundle import ConfigWorkflow

NAME = "munit"


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
    expected = {"generator", "dis_a", "dis_b", "optimizer_generator", "optimizer_discriminators"}
    assert expected | {"scheduler_generator", "trainer"} <= set(state)
    num_steps = wf.parser.get_parsed_content("num_steps")
    assert state["trainer"]["iteration"] >= num_steps
    summary = check_run_summary(root, sample_grid=False)
    assert summary["checkpoint"] == str(ckpt) and summary["sample_grid"] is None
    # model.pt is the generator (both auto-encoders + the fixed style) and loads into the inference network
    model = torch.load(root / "models" / "model.pt", weights_only=True)
    assert "fixed_style" in model
    inference = ConfigWorkflow(configs(root, "inference.yaml", *variants), workflow_type=None, logging_file=False)
    net = inference.parser.get_parsed_content("network_def")
    net.load_state_dict(model)
    x = torch.rand(1, 1, *spatial_shape) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(net.eval())(x), net(x), atol=1e-5)

    run_workflow(configs(root, "inference.yaml", *variants), "inference")
    check_refined_datalist(root, spatial_shape, "munit")

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
    run_workflow(files, "training", num_steps=4)  # one epoch: 4 synthetic images, batch 1
    first = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert first["trainer"]["iteration"] == 4
    wf, _ = run_workflow(files, "training", num_steps=8, resume=True)
    handler = wf.parser.get_parsed_content("train#handlers")[0]
    assert handler.loaded_from is not None
    final = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert final["trainer"]["iteration"] == 8
    # the step-based schedule continued too: the learning rate was halved at lr_step = 3
    assert final["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.5 ** (8 // 3))
    assert not torch.equal(final["generator"]["gen_b.dec.mlp.0.weight"], first["generator"]["gen_b.dec.mlp.0.weight"])


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
