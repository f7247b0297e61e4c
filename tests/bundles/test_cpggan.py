"""End-to-end test of bundles/cpggan through MONAI's bundle runner, on the tiny metastasis phantom."""

import json

import numpy as np
from monai.bundle import ConfigWorkflow

from common.data import validate_datalist
from common.engines import latest_checkpoint

NAME = "cpggan"


def run_workflow(files, run_id, **override):
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, run_id=run_id, logging_file=False, **override)
    workflow.initialize()
    result = workflow.run()
    workflow.finalize()
    return workflow, result


def test_train_infer_evaluate(bundle_copy):
    root = bundle_copy(NAME)

    def files(main):
        return [str(root / "configs" / main), str(root / "configs" / "variants" / "tiny.yaml")]

    wf, _ = run_workflow(files("train.yaml"), "training")
    assert all(e["box"] for e in wf.parser.get_parsed_content("train#datalist"))
    assert latest_checkpoint(root / "models") is not None and (root / "models" / "model.pt").is_file()

    wf, _ = run_workflow(files("inference.yaml"), "inference")
    synthetic = root / "eval" / "synthetic" / "datalist.json"
    summary = validate_datalist(synthetic, spatial_dims=2, num_channels=1, box_key="box")
    assert summary["num_entries"]["training"] == wf.parser.get_parsed_content("num_samples")
    for entry in json.loads(synthetic.read_text())["training"]:
        assert entry["synthetic"] is True and entry["box"] and len(entry["box_label"]) == len(entry["box"])
        assert entry["generator"]["checkpoint_sha256"] and entry["condition_source"].endswith(".nii.gz")
        for box in entry["box"]:
            assert 0 <= box[0] < box[2] <= 16 and 0 <= box[1] < box[3] <= 16

    run_workflow(files("evaluate.yaml"), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    for key in ("fid", "kid_mean", "box_change_inside", "box_change_outside"):
        assert np.isfinite(metrics[key]), key
