"""End-to-end tests of bundles/msg_gan through MONAI's bundle runner, on tiny phantom data (2D and 3D)."""

import json

import nibabel as nib
import numpy as np
import torch
from common.data import validate_datalist
from common.engines import latest_checkpoint
from helpers import check_run_summary, configs, evaluate_configs, run_workflow

NAME = "msg_gan"


def test_two_class_generators_resume_infer_evaluate(bundle_copy):
    root = bundle_copy(NAME)
    # the tumour generator: one epoch, then resumed to the second
    wf, _ = run_workflow(configs(root, "train.yaml", "tumour.yaml", "tiny.yaml"), "training", max_epochs=1)
    per_epoch = len(wf.parser.get_parsed_content("train#dataloader"))
    assert per_epoch >= 1
    assert all(int(e["class"]) == 1 for e in wf.parser.get_parsed_content("train#datalist"))
    first = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert first["trainer"]["iteration"] == per_epoch
    assert {"generator", "discriminator", "optimizer_generator", "optimizer_discriminator"} <= set(first)
    run_workflow(configs(root, "train.yaml", "tumour.yaml", "tiny.yaml"), "training", resume=True)
    state = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert state["trainer"]["iteration"] == 2 * per_epoch and state["trainer"]["max_epochs"] == 2
    changed = [k for k in first["generator"] if not torch.equal(first["generator"][k], state["generator"][k])]
    assert changed, "the resumed epoch did not train the generator"
    summary = check_run_summary(root, sample_grid=True)
    assert summary["iteration"] == 2 * per_epoch
    # the non-tumour generator, into its own checkpoint folder
    run_workflow(configs(root, "train.yaml", "non_tumour.yaml", "tiny.yaml"), "training", ckpt_dir=str(root / "m0"))

    # inference of both generators: one datalist per class, and one of both classes (the non-tumour run writes to
    # its own folder and names the tumour generator's datalist, as the experiment grids do)
    run_workflow(configs(root, "inference.yaml", "tumour.yaml", "tiny.yaml"), "inference")
    tumour = root / "eval" / "synthetic" / "datalist_class1.json"
    wf, _ = run_workflow(
        configs(root, "inference.yaml", "non_tumour.yaml", "tiny.yaml"),
        "inference",
        ckpt_dir=str(root / "m0"),
        output_dir=str(root / "eval0"),
        class_datalists=[str(tumour), "$os.path.join(@synthetic_dir, 'datalist_class0.json')"],
    )
    num_samples = wf.parser.get_parsed_content("num_samples")
    folder = root / "eval0" / "synthetic"
    for cls, path in ((0, folder / "datalist_class0.json"), (1, tumour)):
        data = json.loads(path.read_text())
        assert [e["class"] for e in data["training"]] == [cls] * num_samples
    merged = folder / "datalist.json"
    assert validate_datalist(merged, spatial_dims=2, num_channels=4)["num_entries"]["training"] == 2 * num_samples
    entries = json.loads(merged.read_text())["training"]
    assert [e["class"] for e in entries] == [1] * num_samples + [0] * num_samples
    assert len({str(e["image"]) for e in entries}) == len(entries)
    entry = entries[0]  # a tumour image, listed relative to the merged datalist
    assert entry["synthetic"] is True and entry["method"] == "msg_gan" and len(entry["image"]) == 4
    arr = nib.load(folder / entry["image"][0]).get_fdata()
    assert arr.shape == (16, 16) and 0.0 <= arr.min() and arr.max() <= 1.0 and arr.std() > 0

    run_workflow(evaluate_configs(root, "tumour.yaml", "tiny.yaml"), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "fallback" in metrics["feature_extractor"] and metrics["class"] == 1
    for key in ("fid", "kid_mean"):
        assert np.isfinite(metrics[key]), key


def test_train_and_infer_3d(bundle_copy):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", "3d.yaml", "tiny_3d.yaml"), "training")
    assert wf.parser.get_parsed_content("generator").resolutions == [4, 8, 16]
    assert (root / "models" / "model.pt").is_file()
    wf, _ = run_workflow(configs(root, "inference.yaml", "3d.yaml", "tiny_3d.yaml"), "inference")
    entries = json.loads((root / "eval" / "synthetic" / "datalist.json").read_text())["training"]
    assert {e["class"] for e in entries} == {1} and len(entries) == wf.parser.get_parsed_content("num_samples")
    entry = entries[0]
    assert nib.load(root / "eval" / "synthetic" / entry["image"][0]).shape == (16, 16, 16)
