"""Han's thesis chain (sec. 4.2.3-4.2.4) through MONAI's bundle runner at tiny sizes: SimGAN trained and run with
PGGAN-style one-channel T1c images as its source domain (variants/pggan_source.yaml, not the degraded real images),
then the refined images mixed into the thesis classifier (synthetic_channels)."""

import json

import nibabel as nib
import numpy as np
from common.data import merge_datalists
from helpers import configs, run_workflow

TINY = {"image_size": 16, "batch_size": 4, "widen_factor": 0.125}


def _pggan_like_datalist(folder, per_class=3):
    """One-channel 32x32 images of both classes, written as the PGGAN bundle's SyntheticDatalistWriter does."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries = []
    for cls in (1, 0):
        for i in range(per_class):
            name = f"pggan_{cls}_{i}.nii.gz"
            nib.save(nib.Nifti1Image(rng.random((32, 32)).astype(np.float32), np.eye(4)), str(folder / name))
            entries.append({"image": name, "class": cls, "synthetic": True, "generator": {"bundle": "pggan"}})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": entries}))
    return path


def test_simgan_refines_the_pggan_datalist_and_the_classifier_uses_it(bundle_copy, tmp_path):
    root = bundle_copy("simgan")
    source = _pggan_like_datalist(tmp_path / "pggan_tumour")
    files = configs(root, "train.yaml", "tiny.yaml", "pggan_source.yaml")
    wf, _ = run_workflow(files, "training", synthetic_datalist=str(source), num_steps=2)
    domain_a = [e for e in wf.parser.get_parsed_content("train#datalist") if e["domain"] == 1]
    assert sorted(e["image"] for e in domain_a) == sorted(str(source.parent / f"pggan_1_{i}.nii.gz") for i in range(3))
    assert not list((root / "data").glob("*/degraded_synthetic"))  # the degraded stand-in was never made

    run_workflow(
        configs(root, "inference.yaml", "tiny.yaml", "pggan_source.yaml"), "inference", synthetic_datalist=str(source)
    )
    refined_file = root / "eval" / "refined" / "datalist.json"
    refined = json.loads(refined_file.read_text())
    assert len(refined["training"]) == 3 and not refined.get("rejected")  # tumour images only, none discarded here
    for e in refined["training"]:
        assert e["class"] == 1 and e["generator"]["bundle"] == "pggan" and e["refined_by"]["method"] == "simgan"
        src = e["source"] if isinstance(e["source"], str) else e["source"][0]
        assert (refined_file.parent / src).resolve().parent == source.parent
        assert nib.load(refined_file.parent / e["image"]).get_fdata().squeeze().shape == (16, 16)

    # the refined one-channel T1c images join the real 4-channel slices of the thesis classifier
    clf = bundle_copy("classification")
    mixed = merge_datalists([refined_file, source], tmp_path / "mixed" / "datalist.json")
    wf, _ = run_workflow(
        configs(clf, "train.yaml", "tiny.yaml", "thesis.yaml", "synthetic.yaml"),
        "training",
        synthetic_datalist=mixed,
        synthetic_ratio=1.0,
        synthetic_channels=[1],
        max_epochs=1,
        **TINY,
    )
    entries = wf.parser.get_parsed_content("train#entries")
    assert sum(1 for e in entries if e.get("synthetic")) == sum(1 for e in entries if not e.get("synthetic")) > 0
    dataset = wf.parser.get_parsed_content("train#dataset")
    assert all(dataset[i]["image"].shape == (1, 16, 16) for i in range(len(dataset)))
    assert wf.parser.get_parsed_content("train#trainer").state.iteration > 0
