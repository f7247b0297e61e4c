"""End-to-end tests of bundles/pix2pix (the image-to-image GAN of Han's thesis Table 4) through MONAI's bundle runner,
on the tiny metastasis phantom (2D) and the tiny chest CT phantom (3D)."""

import json

import monai
import nibabel as nib
import numpy as np
import torch
from common.data import validate_datalist
from common.engines import latest_checkpoint
from common.transforms import boxes_to_condition
from helpers import configs, evaluate_configs, run_workflow

NAME = "pix2pix"


def test_train_resume_infer_evaluate_2d(bundle_copy):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training")
    assert all(e["box"] for e in wf.parser.get_parsed_content("train#datalist"))  # trained without normal images
    ckpt = latest_checkpoint(root / "models")
    assert ckpt is not None and ckpt.name == "checkpoint_2.pt"
    state = torch.load(ckpt, weights_only=True)
    assert {"generator", "discriminator", "optimizer_generator", "optimizer_discriminator", "trainer"} <= set(state)
    output = wf.parser.get_parsed_content("train#trainer").state.output
    assert np.isfinite(output["loss_l1"]) and output["loss_g"] >= 100.0 * output["loss_l1"] - 1e-4
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "discriminator.pt").is_file()
    assert list((root / "eval" / "samples").glob("*.png"))

    # resume continues the iteration count (2 more iterations in a second epoch)
    wf, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training", resume=True, max_epochs=2)
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 4
    assert latest_checkpoint(root / "models").name == "checkpoint_4.pt"

    wf, _ = run_workflow(configs(root, "inference.yaml", "tiny.yaml"), "inference")
    synthetic = root / "eval" / "synthetic" / "datalist.json"
    summary = validate_datalist(synthetic, spatial_dims=2, num_channels=1, box_key="box")
    assert summary["num_entries"]["training"] == wf.parser.get_parsed_content("num_samples") == 8
    conditions = wf.parser.get_parsed_content("conditions")
    entries = json.loads(synthetic.read_text())["training"]
    for entry, sample in zip(entries, conditions):
        assert entry["synthetic"] is True and entry["method"] == "pix2pix" and entry["class"] == 1
        assert entry["generator"]["checkpoint_sha256"] and entry["condition_source"].endswith(".nii.gz")
        # the datalist's boxes are the boxes of the condition the image was generated from
        assert entry["box"] and len(entry["box_label"]) == len(entry["box"])
        assert np.array_equal(boxes_to_condition(entry["box"], [16, 16]), sample["condition"])
        image = nib.load(str(synthetic.parent / entry["image"])).get_fdata()
        assert image.shape[:2] == (16, 16) and 0.0 <= image.min() and image.max() <= 1.0
    # test-time dropout: the generator's noise is on in inference
    network = wf.parser.get_parsed_content("network")
    x = torch.as_tensor(conditions[0]["condition"])[None].to(next(network.parameters()).device)
    network.eval()
    with torch.no_grad():
        assert not torch.equal(network(x), network(x))

    run_workflow(evaluate_configs(root, "tiny.yaml"), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["method"] == "pix2pix" and metrics["num_fake"] == 8
    for key in ("fid", "kid_mean", "mmd", "fid_reference", "kid_reference_mean"):
        assert np.isfinite(metrics[key]), key
    # the real-vs-real reference: the generator's own training slices with lesions against the held-out ones
    datalist = wf.parser.get_parsed_content("datalist")
    boxed = [e for e in monai.data.load_decathlon_datalist(datalist, True, "training") if e["box"]]
    assert metrics["reference_section"] == "training" and metrics["num_reference"] == len(boxed)


def test_train_infer_evaluate_3d_in_hounsfield_units(bundle_copy):
    root = bundle_copy(NAME)
    run_workflow(configs(root, "train.yaml", "3d.yaml", "tiny_3d.yaml"), "training")
    assert (root / "models" / "model.pt").is_file()
    run_workflow(configs(root, "inference.yaml", "3d.yaml", "tiny_3d.yaml"), "inference")
    synthetic = root / "eval" / "synthetic" / "datalist.json"
    summary = validate_datalist(synthetic, spatial_dims=3, num_channels=1, box_key="box")
    assert summary["num_entries"]["training"] == 4
    for entry in json.loads(synthetic.read_text())["training"]:
        assert all(0 <= b[a] < b[a + 3] <= 16 for b in entry["box"] for a in range(3))
        image = nib.load(str(synthetic.parent / entry["image"])).get_fdata()
        # written in HU, in the window the detection bundle reads (lung window -1024 .. 400)
        assert image.shape[:3] == (16, 16, 16) and image.min() >= -1024.0 and image.max() <= 400.0
        assert image.max() - image.min() > 1.0

    run_workflow(evaluate_configs(root, "3d.yaml", "tiny_3d.yaml"), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["spatial_dims"] == 3 and metrics["num_fake"] == 4 and metrics["num_real"] >= 2
    assert np.isfinite(metrics["fid"]) and np.isfinite(metrics["mmd"]) and np.isfinite(metrics["fid_reference"])
