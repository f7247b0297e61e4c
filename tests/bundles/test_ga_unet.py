"""End-to-end tests of bundles/ga_unet (paper 002) through MONAI's bundle runner, on tiny phantom data."""

import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import validate_datalist
from common.engines import latest_checkpoint
from common.networks import GAUNetCritic, GAUNetGenerator
from helpers import REPO, configs, evaluate_configs, run_workflow

NAME = "ga_unet"


@pytest.mark.parametrize(
    "variants,spatial_shape,method",
    [
        (("tiny.yaml",), (16, 16), "ga_unet"),
        (("cgan.yaml", "tiny.yaml"), (16, 16), "cgan"),
        (("3d.yaml", "tiny_3d.yaml"), (16, 16, 16), "ga_unet"),
    ],
    ids=["ga_unet-2d", "cgan-2d", "ga_unet-3d"],
)
def test_train_infer_evaluate(bundle_copy, variants, spatial_shape, method):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", *variants), "training")
    generator = wf.parser.get_parsed_content("generator")
    critic = wf.parser.get_parsed_content("critic")
    assert isinstance(generator, GAUNetGenerator) and isinstance(critic, GAUNetCritic)
    assert (generator.class_embedding is not None) == (method != "gan")
    step = wf.parser.get_parsed_content("train#step")
    assert step.image_condition == (method == "ga_unet") and step.gp_weight == 10.0
    ckpt = latest_checkpoint(root / "models")
    state = torch.load(ckpt, weights_only=True)
    assert {"generator", "discriminator", "optimizer_generator", "optimizer_discriminator", "trainer"} <= set(state)
    assert state["trainer"]["iteration"] == wf.parser.get_parsed_content("train#trainer").state.iteration > 0
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "critic.pt").is_file()

    wf, _ = run_workflow(configs(root, "inference.yaml", *variants), "inference", samples_per_image=2)
    synthetic = root / "eval" / "synthetic" / "datalist.json"
    real = wf.parser.get_parsed_content("dataset").data
    summary = validate_datalist(synthetic, spatial_dims=len(spatial_shape), num_channels=4, class_key="class")
    assert summary["num_entries"]["training"] == len(real) == 2 * summary["num_entries"]["training"] // 2
    entries = json.loads(synthetic.read_text())["training"]
    assert [e["class"] for e in entries] == [r["class"] for r in real]  # each synthetic image has its x_i's class
    entry = entries[0]
    assert entry["method"] == method and entry["sample_index"] == 0 and entries[1]["sample_index"] == 1
    sha = hashlib.sha256((root / "models" / "model.pt").read_bytes()).hexdigest()
    assert entry["generator"]["checkpoint_sha256"] == sha
    if method == "ga_unet":  # made from a real image: its files are the provenance
        assert any("t1c" in str(s) for s in entry["source"])
    else:
        assert entry["source"] == "noise"
    arr = nib.load(synthetic.parent / entry["image"][0]).get_fdata()
    assert arr.shape == spatial_shape and 0.0 <= arr.min() and arr.max() <= 1.0

    run_workflow(evaluate_configs(root, *variants), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "fallback" in metrics["feature_extractor"] and "FeatureSVM" in metrics["pa_scorer"]
    for key in ("fid", "pa", "pa_ci95", "pa_real", "copy_fraction", "nn_distance_fake_median"):
        assert np.isfinite(metrics[key]), key
    assert 0.0 <= metrics["pa"] <= 1.0 and metrics["method"] == method


def test_resume_continues_counters_and_optimiser_state(bundle_copy, tmp_path):
    """One epoch, then a resumed second one, equals two uninterrupted epochs: counters, optimiser and weights."""
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml")
    run_workflow(files, "training", max_epochs=1)
    first = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    run_workflow(files, "training", max_epochs=2, resume=True)
    resumed = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert resumed["trainer"]["iteration"] == 2 * first["trainer"]["iteration"]
    adam = resumed["optimizer_generator"]["state"][0]["step"]
    assert int(adam) == resumed["trainer"]["iteration"]  # one generator step per iteration (n_critic 1)
    straight_root = tmp_path / "straight" / NAME
    shutil.copytree(REPO / "bundles" / NAME, straight_root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    run_workflow(configs(straight_root, "train.yaml", "tiny.yaml"), "training", max_epochs=2)
    straight = torch.load(latest_checkpoint(straight_root / "models"), weights_only=True)
    for key in ("generator", "discriminator"):
        for name, value in straight[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)


@pytest.mark.slow
def test_short_training_lowers_fid_without_copying(bundle_copy):
    """30 epochs (90 iterations) at 16x16, with a 10x learning rate to be short: FID (named extractor) below the
    untrained generator's, samples no nearer to the training images than real held-out images are."""
    root = bundle_copy(NAME)
    sizes = {
        "phantom_args": {"num_patients": 16, "cases_per_patient": 2, "image_size": 32, "positive_fraction": 0.5,
                         "seed": 0},
        "image_size": 16, "latent_dim": 16, "generator_channels": [8, 16], "latent_channels": 4, "growth_rate": 8,
        "batch_size": 8, "max_epochs": 30, "sample_interval": 100, "learning_rate": 0.001,
    }  # fmt: skip
    run_workflow(configs(root, "train.yaml"), "training", **sizes)
    wf, _ = run_workflow(evaluate_configs(root), "evaluating", **sizes)
    trained = json.loads((root / "eval" / "metrics.json").read_text())
    evaluation = wf.parser.get_parsed_content("evaluation")
    torch.manual_seed(0)
    evaluation.generator = wf.parser.get_parsed_content("generator_def", lazy=False)  # a new, untrained generator
    evaluation.output_file = str(root / "eval" / "untrained.json")
    untrained = evaluation.run()
    assert trained["feature_extractor"] == untrained["feature_extractor"]
    assert trained["fid"] < untrained["fid"], (trained["fid"], untrained["fid"])
    assert trained["copy_fraction"] <= 0.1 and trained["nn_distance_fake_median"] > trained["nn_distance_real_q05"]


@pytest.mark.parametrize("variants,labels", [(("tiny.yaml",), True), (("gan.yaml", "tiny.yaml"), False)])
def test_synthesis_benchmark_call(variants, labels):
    """The inference config's `benchmark#call` (scripts/benchmark.py --workflow inference) synthesises one batch
    of `benchmark_batch_size` images of the configured shape, with classes exactly when the method uses them."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(REPO / "bundles" / NAME, "inference.yaml", *variants))
    parser["benchmark_batch_size"] = 3
    out = parser.get_parsed_content("benchmark#call")()
    assert out.shape == (3, 4, 16, 16) and parser.get_parsed_content("benchmark#items") == 3
    assert (parser.get_parsed_content("benchmark#labels") is not None) == labels
    assert out.abs().max() <= 1.0
