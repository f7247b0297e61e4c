"""End-to-end tests of bundles/stylegan2 (paper 004: B-SG, M-SG, C-SG, MC-SG) through MONAI's bundle runner."""

import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import validate_datalist
from common.engines import latest_checkpoint
from common.networks import StyleGAN2Discriminator, StyleGAN2Generator
from helpers import REPO, configs, evaluate_configs, run_workflow
from monai.bundle import ConfigWorkflow

NAME = "stylegan2"
IMAGE_CHANNELS, NUM_CLASSES = 4, 4


def _check_pairs(datalist, spatial_shape, count, method, checkpoint):
    """The synthetic image+mask datalist: count entries, 4 image files in [0, 1], integer masks in [0, K)."""
    summary = validate_datalist(
        datalist,
        label_key="label",
        spatial_dims=len(spatial_shape),
        num_channels=IMAGE_CHANNELS,
        label_values=list(range(NUM_CLASSES)),
    )
    assert summary["num_entries"]["training"] == count
    entries = json.loads(datalist.read_text())["training"]
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for e in entries:
        assert e["synthetic"] is True and e["method"] == method and e["generator"]["checkpoint_sha256"] == sha
        assert e["source"] == "noise" and e["patient"].startswith("synthetic_")
    labels = []
    for e in entries:
        image = np.stack([nib.load(datalist.parent / f).get_fdata() for f in e["image"]])
        assert image.shape == (IMAGE_CHANNELS, *spatial_shape) and 0.0 <= image.min() and image.max() <= 1.0
        label = nib.load(datalist.parent / e["label"])
        assert label.shape == spatial_shape and np.issubdtype(label.get_data_dtype(), np.integer)
        labels.append(np.asarray(label.dataobj))
    return entries, labels


@pytest.mark.parametrize(
    "variants,spatial_shape", [(("tiny.yaml",), (16, 16)), (("3d.yaml", "tiny_3d.yaml"), (8, 8, 8))], ids=["2d", "3d"]
)
def test_b_sg_train_infer_evaluate(bundle_copy, variants, spatial_shape):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", *variants), "training")
    generator = wf.parser.get_parsed_content("generator")
    assert isinstance(generator, StyleGAN2Generator)
    assert isinstance(wf.parser.get_parsed_content("discriminator"), StyleGAN2Discriminator)
    state = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert {"generator", "discriminator", "generator_ema", "optimizer_generator", "trainer"} <= set(state)
    iterations = state["trainer"]["iteration"]
    assert iterations >= 2  # the tiny variant's lazy intervals are 2: R1 and path length ran
    # the model is the moving average, not the trained generator
    ema = torch.load(root / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(ema[k], v) for k, v in state["generator_ema"].items())
    assert any(not torch.equal(ema[k], v) for k, v in state["generator"].items() if v.is_floating_point())

    wf, _ = run_workflow(configs(root, "inference.yaml", *variants), "inference")
    count = wf.parser.get_parsed_content("num_samples")
    datalist = root / "eval" / "synthetic" / "datalist.json"
    entries, _ = _check_pairs(datalist, spatial_shape, count, "b_sg", root / "models" / "model.pt")
    per_patient = wf.parser.get_parsed_content("slices_per_patient")
    assert len({e["patient"] for e in entries}) == count // per_patient

    run_workflow(evaluate_configs(root, *variants), "evaluating", real_section="training")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert np.isfinite(metrics["image_fid"]) and np.isfinite(metrics["mask_fid"])
    assert "fallback" in metrics["feature_extractor"] and metrics["method"] == "b_sg"
    assert "mask_statistics" in metrics
    # the reference (evaluate.yaml's reference_section: training) is here the real set itself: distance zero
    assert metrics["reference_section"] == "training" and metrics["num_reference"] == metrics["num_real"]
    assert abs(metrics["image_fid_reference"]) < 1e-3 and metrics["mask_area_fraction_wasserstein_reference"] == 0


@pytest.mark.parametrize("variants,spatial_shape", [((), (16, 16)), (("3d.yaml",), (8, 8, 8))], ids=["2d", "3d"])
def test_mc_sg_masks_are_the_conditions(bundle_copy, variants, spatial_shape):
    """M-SG and C-SG train into their own folders; MC-SG writes pairs whose mask is the condition C-SG was given;
    evaluating with --synthetic_method mc_sg scores them."""
    root = bundle_copy(NAME)
    sizes = [*variants, "tiny_3d.yaml" if variants else "tiny.yaml"]
    for method in ("m_sg", "c_sg"):
        wf, _ = run_workflow(configs(root, "train.yaml", f"{method}.yaml", *sizes), "training")
        assert wf.parser.get_parsed_content("generator").out_channels == (NUM_CLASSES if method == "m_sg" else 4)
        assert (root / "models" / method / "model.pt").is_file()
    assert not (root / "models" / "model.pt").exists()  # B-SG's model is untouched

    files = configs(root, "inference.yaml", "mc_sg.yaml", *sizes)
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, run_id="inference", logging_file=False)
    workflow.initialize()
    conditions = []
    image_generator = workflow.parser.get_parsed_content("network")
    image_generator.register_forward_hook(
        lambda m, args, kwargs, out: conditions.append(kwargs["condition"]), with_kwargs=True
    )
    workflow.run()
    workflow.finalize()
    datalist = root / "eval" / "mc_sg" / "synthetic" / "datalist.json"
    count = workflow.parser.get_parsed_content("num_samples")
    entries, labels = _check_pairs(datalist, spatial_shape, count, "mc_sg", root / "models" / "c_sg" / "model.pt")
    condition = torch.cat(conditions)
    assert condition.shape == (count, NUM_CLASSES, *spatial_shape)
    assert torch.all(condition.sum(1) == 1)  # one-hot
    for label, cond in zip(labels, condition):
        np.testing.assert_array_equal(label, cond.argmax(0).numpy())
    mask_sha = hashlib.sha256((root / "models" / "m_sg" / "model.pt").read_bytes()).hexdigest()
    assert all(e["mask_generator"]["checkpoint_sha256"] == mask_sha for e in entries)

    run_workflow(evaluate_configs(root, *sizes), "evaluating", synthetic_method="mc_sg", real_section="training")
    metrics = json.loads((root / "eval" / "mc_sg" / "metrics.json").read_text())
    assert metrics["method"] == "mc_sg" and np.isfinite(metrics["image_fid"]) and np.isfinite(metrics["mask_fid"])


def test_resume_restores_ema_augmentation_and_counters(bundle_copy, tmp_path):
    """One epoch, then a resumed second one, equals two uninterrupted epochs: EMA generator, ADA probability,
    path-length mean, optimisers and counters (ADA adjusts every iteration here)."""
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "ada.yaml", "tiny.yaml")
    override = {"ada_interval": 1, "ada_kimg": 0.01}
    run_workflow(files, "training", max_epochs=1, **override)
    first = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    run_workflow(files, "training", max_epochs=2, resume=True, **override)
    resumed = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert resumed["trainer"]["iteration"] == 2 * first["trainer"]["iteration"]
    straight_root = tmp_path / "straight" / NAME
    shutil.copytree(REPO / "bundles" / NAME, straight_root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    run_workflow(configs(straight_root, "train.yaml", "ada.yaml", "tiny.yaml"), "training", max_epochs=2, **override)
    straight = torch.load(latest_checkpoint(straight_root / "models"), weights_only=True)
    assert set(straight) == set(resumed)
    tensors = 0
    for key, value in straight.items():
        if key in ("trainer", "random_state") or not isinstance(value, dict):
            continue
        for name, tensor in value.items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(tensor, resumed[key][name]), (key, name)
                tensors += 1
    assert tensors > 0 and "generator_ema" in straight


def _lesion_contrast(images, masks):
    """Per channel: mean intensity inside the tumour classes of the one-hot masks minus the mean outside."""
    inside = masks[:, 1:].sum(1) > 0.5
    return torch.stack([x[inside].mean() - x[~inside].mean() for x in images.transpose(0, 1)])


@pytest.mark.slow
def test_c_sg_places_the_lesion_where_the_mask_says(bundle_copy):
    """After 300 iterations on the phantom (32x32, every slice with tumour), C-SG's moving-average generator, given
    the real masks, makes images whose tumour is brighter than the rest in every sequence, as in the real pairs,
    and nearer the real contrast than the untrained generator."""
    import copy

    root = bundle_copy(NAME)
    override = {
        "phantom_args": {"num_patients": 16, "cases_per_patient": 4, "image_size": 32, "positive_fraction": 1.0},
        "image_size": 32,
        "latent_dim": 32,
        "style_dim": 32,
        "mapping_layers": 2,
        "channel_base": 256,
        "channel_max": 32,
        "ema_kimg": 0.05,
        "ema_rampup": None,
        "max_epochs": 75,
        "save_interval": 10**6,
        "sample_interval": 10**6,
    }
    files = configs(root, "train.yaml", "c_sg.yaml")
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, run_id="training", logging_file=False, **override)
    workflow.initialize()
    ema = workflow.parser.get_parsed_content("generator_ema")
    untrained = copy.deepcopy(ema)
    dataset = workflow.parser.get_parsed_content("train#dataset")
    real = torch.stack([dataset[i]["real"] for i in range(len(dataset))])
    masks = torch.stack([dataset[i]["label"] for i in range(len(dataset))])
    workflow.run()
    assert workflow.parser.get_parsed_content("train#trainer").state.iteration >= 300

    def contrast(generator):
        torch.manual_seed(1)
        z = torch.randn(len(masks), 32)
        with torch.no_grad():
            return _lesion_contrast(generator.eval()(z, condition=masks, noise_mode="const"), masks)

    real_contrast, before, after = _lesion_contrast(real, masks), contrast(untrained), contrast(ema)
    assert torch.all(real_contrast > 0.5)  # the phantom's tumour is bright in every sequence
    assert torch.all(after > 0), (before, after, real_contrast)
    assert (after - real_contrast).abs().mean() < (before - real_contrast).abs().mean(), (before, after)
