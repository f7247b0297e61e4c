"""End-to-end tests of bundles/classification through MONAI's bundle runner, on tiny phantom data."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from common.bundle.verify import verify_bundle
from common.data import DatalistError, prepare_phantom
from common.engines import latest_checkpoint
from common.experiments.results import case_intervals, read_per_image, read_per_image_csv, write_per_image_csv
from helpers import REPO, configs, evaluate_configs, run_workflow

NAME = "classification"
METRIC_KEYS = ("acc", "auc", "recall", "specificity", "precision", "f1")


def causes(exc):
    """The exception and its causes (the config parser wraps errors raised in expressions)."""
    chain = []
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    return chain


def read_metrics(root):
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
    assert metrics["num_samples"] > 0
    return metrics


VARIANTS = {
    "none": ("tiny.yaml",),
    "oversample": ("oversample.yaml", "tiny.yaml"),
    "undersample": ("undersample.yaml", "tiny.yaml"),
    "classic": ("classic.yaml", "tiny.yaml"),
    "mixup": ("mixup.yaml", "tiny.yaml"),
    "cutmix": ("cutmix.yaml", "tiny.yaml"),
    "cutout": ("cutout.yaml", "tiny.yaml"),
    "resnet50": ("resnet50.yaml", "tiny.yaml"),
    "densenet121": ("densenet121.yaml", "tiny.yaml"),
    "densenet161": ("densenet161.yaml", "tiny.yaml"),
    "small": ("small.yaml", "tiny.yaml"),
    "imbalanced": ("imbalanced.yaml", "tiny.yaml"),
    "3d": ("3d.yaml", "tiny_3d.yaml"),
    "3d-classic": ("3d.yaml", "classic.yaml", "tiny_3d.yaml"),
    "3d-oversample": ("3d.yaml", "oversample.yaml", "tiny_3d.yaml"),
    "3d-undersample": ("3d.yaml", "undersample.yaml", "tiny_3d.yaml"),
    "3d-mixup": ("3d.yaml", "mixup.yaml", "tiny_3d.yaml"),
    "3d-cutmix": ("3d.yaml", "cutmix.yaml", "tiny_3d.yaml"),
    "3d-cutout": ("3d.yaml", "cutout.yaml", "tiny_3d.yaml"),
    "3d-small": ("3d.yaml", "small.yaml", "tiny_3d.yaml"),
    "3d-imbalanced": ("3d.yaml", "imbalanced.yaml", "tiny_3d.yaml"),
}
# DenseNets halve the size 5 times: 32 px is their smallest input
# (and narrower growth here, to keep the test short; the variant files keep the published widths)
SMALL_DENSENET = {"image_size": 32, "network_def#growth_rate": 8, "network_def#init_features": 16}
OVERRIDES = {"densenet121": SMALL_DENSENET, "densenet161": SMALL_DENSENET}
TINY_PHANTOM = {"num_patients": 8, "cases_per_patient": 2, "image_size": 32, "positive_fraction": 0.5, "seed": 0}


TINY_PHANTOM_3D = {"num_patients": 8, "image_size": 16, "positive_fraction": 0.5, "seed": 0}


def make_phantom(root, kind="brain_mr_2d"):
    args = TINY_PHANTOM if kind == "brain_mr_2d" else TINY_PHANTOM_3D
    return prepare_phantom(root / "data" / kind, kind, **args)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_train_evaluate_variant(bundle_copy, name):
    root = bundle_copy(NAME)
    variants, override = VARIANTS[name], OVERRIDES.get(name, {})
    wf, _ = run_workflow(configs(root, "train.yaml", *variants), "training", **override)
    ckpt = latest_checkpoint(root / "models")
    assert ckpt is not None and (root / "models" / "model.pt").is_file()
    state = torch.load(ckpt, weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "trainer"} <= set(state)
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert state["trainer"]["iteration"] == trainer.state.iteration > 0
    best = torch.load(root / "models" / "model.pt", weights_only=True)
    assert set(best) == set(wf.parser.get_parsed_content("network").state_dict())
    assert list((root / "eval" / "runs").glob("events.out.tfevents*"))
    split = json.loads((root / "models" / "datalist_split.json").read_text())
    assert split["split"]["mode"] == wf.parser.get_parsed_content("split_mode")

    run_workflow(evaluate_configs(root, *variants), "evaluating", **override)
    metrics = read_metrics(root)
    if name in ("none", "3d"):
        wf, _ = run_workflow(configs(root, "inference.yaml", *variants), "inference", **override)
        predictions = json.loads((root / "eval" / "predictions.json").read_text())["predictions"]
        assert len(predictions) == metrics["num_samples"]
        for p in predictions:
            assert abs(sum(p["probabilities"]) - 1) < 1e-4 and p["pred"] in (0, 1) and p["image"].endswith(".nii.gz")
    assert metrics["arch"] == wf.parser.get_parsed_content("arch")
    assert metrics["split_mode"] == split["split"]["mode"]


def test_svm_baseline(bundle_copy):
    root = bundle_copy(NAME)
    run_workflow(configs(root, "train.yaml", "svm.yaml", "tiny.yaml"), "training")
    assert (root / "models" / "svm_model.npz").is_file()
    val = json.loads((root / "eval" / "svm_validation.json").read_text())
    assert val["classifier"] == "svm" and 0 <= val["auc"] <= 1
    wf, _ = run_workflow(evaluate_configs(root, "svm.yaml", "tiny.yaml"), "evaluating")
    metrics = read_metrics(root)
    assert metrics["arch"] == "svm"
    # per-image scores like the networks': the test images in datalist order, giving the tables' AUC the run's own
    per_image = read_per_image(root / "eval" / "per_image.json")
    entries = wf.parser.get_parsed_content("test#dataset#data")
    assert per_image["ids"] == [str(Path(e["image"][0]).resolve()) for e in entries]
    assert per_image["label"] == [float(e["class"]) for e in entries]
    assert per_image["pred"] == [float(s > 0.5) for s in per_image["score"]]
    record = {"dataset": "phantom", "method": "svm", "seed": 0, "status": "ok", "per_image": per_image}
    write_per_image_csv([record], root / "eval" / "per_image.csv")
    auc = case_intervals(read_per_image_csv(root / "eval" / "per_image.csv"), ["auc"], n_resamples=100)
    assert auc[("phantom", "svm", "auc")].estimate == pytest.approx(metrics["auc"])


def _write_synthetic(root, paired, kind="brain_mr_2d"):
    """Real training images of the phantom relabelled as a generator's synthetic set (class flipped, as Algorithm 2's
    translations), with `source` = the real image; plus one test image when `paired` is False, to be filtered."""
    datalist = json.loads((root / "data" / kind / "datalist.json").read_text())
    base = root / "data" / kind
    entries = [
        {
            "image": [str(base / f) for f in e["image"]],
            "class": 1 - e["class"],
            "synthetic": True,
            "source": str(base / e["image"][0]),
        }
        for e in datalist["training"]
    ]
    path = root / "synthetic" / "synthetic_datalist.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": "relabelled phantom", "training": entries}))
    return path, len(datalist["training"])


@pytest.mark.parametrize(
    "variant,ratio,spatial_dims",
    [
        ("synthetic.yaml", 0.5, 2),
        ("paired.yaml", 1.0, 2),
        ("synthetic.yaml", 0.2, 2),
        ("synthetic.yaml", 0.5, 3),
        ("paired.yaml", 1.0, 3),
    ],
)
def test_synthetic_and_paired(bundle_copy, variant, ratio, spatial_dims):
    root = bundle_copy(NAME)
    kind = f"brain_mr_{spatial_dims}d"
    make_phantom(root, kind)
    path, num_real = _write_synthetic(root, variant == "paired.yaml", kind)
    sizes = ("tiny.yaml",) if spatial_dims == 2 else ("3d.yaml", "tiny_3d.yaml")
    wf, _ = run_workflow(configs(root, "train.yaml", variant, *sizes), "training", synthetic_ratio=ratio)
    entries = wf.parser.get_parsed_content("train#entries")
    synthetic = [e for e in entries if e.get("synthetic")]
    assert len(entries) == num_real + round(ratio * num_real)
    assert len(synthetic) == round(ratio * num_real)
    if variant == "paired.yaml":
        real_images = {e["image"][0] for e in entries if not e.get("synthetic")}
        assert {e["source"] for e in synthetic} == real_images
    run_workflow(evaluate_configs(root, variant, *sizes), "evaluating", synthetic_ratio=ratio)
    m = read_metrics(root)  # settings are numbers and booleans, not strings
    assert m["synthetic_ratio"] == ratio and m["paired"] is (variant == "paired.yaml") and isinstance(m["seed"], int)


def test_synthetic_without_class_is_rejected(bundle_copy):
    root = bundle_copy(NAME)
    make_phantom(root)
    path, _ = _write_synthetic(root, False)
    data = json.loads(path.read_text())
    for e in data["training"]:
        del e["class"]
    path.write_text(json.dumps(data))
    with pytest.raises(Exception) as err:
        run_workflow(configs(root, "train.yaml", "synthetic.yaml", "tiny.yaml"), "training")
    messages = [str(e) for e in causes(err.value)]
    assert any("no 'class' label" in m and "synthetic_datalist.json" in m for m in messages), messages


def test_resume_continues_the_iteration_count(bundle_copy):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training", max_epochs=1)
    first = wf.parser.get_parsed_content("train#trainer").state.iteration
    wf, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training", max_epochs=2, resume=True)
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 and trainer.state.iteration == 2 * first
    state = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert state["trainer"]["iteration"] == 2 * first


def test_nan_image_is_rejected_before_training(bundle_copy):
    root = bundle_copy(NAME)
    make_phantom(root)
    datalist = json.loads((root / "data" / "brain_mr_2d" / "datalist.json").read_text())
    bad = root / "data" / "brain_mr_2d" / datalist["training"][1]["image"][2]
    img = nib.load(bad)
    data = np.asarray(img.dataobj, dtype=np.float32).copy()
    data[3, 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), bad)
    with pytest.raises(Exception) as err:
        run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training")
    errors = [e for e in causes(err.value) if isinstance(e, DatalistError)]
    assert errors and bad.name in str(errors[0]) and "NaN" in str(errors[0])
    assert not (root / "models").exists() or latest_checkpoint(root / "models") is None


def test_functional_classifier_separates_phantom_classes(bundle_copy):
    """A short training on the phantom gives a test AUC well above chance."""
    root = bundle_copy(NAME)
    override = {
        "phantom_args": {"num_patients": 12, "cases_per_patient": 3, "image_size": 32, "positive_fraction": 0.5},
        "image_size": 32,
        "widen_factor": 0.25,
        "batch_size": 4,
        "max_epochs": 3,
    }
    run_workflow(configs(root, "train.yaml"), "training", **override)
    wf, _ = run_workflow(evaluate_configs(root), "evaluating", **override)
    metrics = read_metrics(root)
    assert metrics["num_samples"] >= 6
    assert metrics["auc"] > 0.8, metrics

    # per_image.json: the test images in datalist order, named so that the grids resample by patient, and giving
    # the tables' bootstrap AUC the run's own AUC
    per_image = read_per_image(root / "eval" / "per_image.json")
    entries = wf.parser.get_parsed_content("test#dataset#data")
    assert per_image["ids"] == [str(Path(e["image"][0]).resolve()) for e in entries]
    assert len(per_image["ids"]) == metrics["num_samples"] and set(per_image["label"]) == {0.0, 1.0}
    record = {"dataset": "phantom", "method": "none", "seed": 0, "status": "ok", "per_image": per_image}
    write_per_image_csv([record], root / "eval" / "per_image.csv")
    auc = case_intervals(read_per_image_csv(root / "eval" / "per_image.csv"), ["auc"], n_resamples=100)
    assert auc[("phantom", "none", "auc")].estimate == pytest.approx(metrics["auc"])
    assert auc[("phantom", "none", "auc")].unit == "patients"


def test_verify_bundle_full():
    bundle = REPO / "bundles" / NAME
    assert verify_bundle(bundle, mode="full", device="cpu", fresh_weights=True) == []
