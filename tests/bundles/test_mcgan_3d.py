"""End-to-end tests of bundles/mcgan_3d through MONAI's bundle runner, on the tiny chest CT phantom."""

import json

import nibabel as nib
import numpy as np
import torch
from common.data import validate_datalist
from common.engines import latest_checkpoint
from helpers import configs, evaluate_configs, run_workflow

NAME = "mcgan_3d"


def test_train_resume_infer_evaluate(bundle_copy):
    root = bundle_copy(NAME)
    wf, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml", "l1.yaml"), "training")
    ckpt = latest_checkpoint(root / "models")
    assert ckpt is not None and ckpt.name == "checkpoint_2.pt"
    state = torch.load(ckpt, weights_only=True)
    expected = {"generator", "context_discriminator", "nodule_discriminator", "trainer"}
    expected |= {f"optimizer_{k}" for k in ("generator", "context_discriminator", "nodule_discriminator")}
    assert expected <= set(state)
    for name in ("model.pt", "context_discriminator.pt", "nodule_discriminator.pt"):
        assert (root / "models" / name).is_file()
    assert "loss_l1" in wf.parser.get_parsed_content("train#trainer").state.output
    assert list((root / "eval" / "samples").glob("samples_epoch*.png"))

    # resume continues the iteration count (2 more iterations in a second epoch)
    wf, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml", "l1.yaml"), "training", resume=True, max_epochs=2)
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 4
    assert latest_checkpoint(root / "models").name == "checkpoint_4.pt"

    real = json.loads((root / "data" / "chest_ct" / "datalist.json").read_text())["training"]
    real_boxes = [len(e["box"]) for e in real]
    # ratio 1 with the default placement (thesis sec. 6.2.1: each real nodule regenerated at its own box, shifted and
    # zoomed up to 10 %, in its place); ratio 2 with random_lung placement (one more nodule per real one, in the lung)
    for ratio, placement in ((1, "real_nodule"), (2, "random_lung")):
        overrides = {} if placement == "real_nodule" else {"placement": placement}
        run_workflow(configs(root, "inference.yaml", "tiny.yaml"), "inference", ratio=ratio, **overrides)
        synthetic = root / "eval" / f"synthetic_{ratio}x" / "datalist.json"
        summary = validate_datalist(synthetic, spatial_dims=3, num_channels=1, box_key="box")
        assert summary["num_entries"]["training"] == ratio * len(real)
        data = json.loads(synthetic.read_text())
        entries = data["training"]
        assert data["placement"] == placement
        per_real = 1 if placement == "real_nodule" else 2
        assert [len(e["box"]) for e in entries] == [per_real * n for n in real_boxes] * ratio
        assert summary["num_boxes"]["training"] == per_real * ratio * sum(real_boxes)
        for e, src in zip(entries, real * ratio):
            assert e["synthetic"] is True and e["synthetic_box"].count(True) == len(src["box"])
            assert e["size"][-len(src["box"]) :] == src["size"]
            assert e["attenuation"][-len(src["box"]) :] == src["attenuation"]
            assert len(e["box_label"]) == len(e["box"]) and e["generator"]["checkpoint_sha256"]
            if placement == "real_nodule":
                for new_box, real_box in zip(np.array(e["box"], float), np.array(src["box"], float)):
                    extent = real_box[3:] - real_box[:3]
                    shift = (new_box[:3] + new_box[3:]) / 2 - (real_box[:3] + real_box[3:]) / 2
                    assert np.all(np.abs(shift) <= 0.1 * extent + 0.5)
                    assert np.all(np.abs(new_box[3:] - new_box[:3] - extent) <= 0.1 * extent + 0.5)
        first, src = entries[0], real[0]
        out = nib.load(synthetic.parent / first["image"])
        ref = nib.load(root / "data" / "chest_ct" / src["image"])
        np.testing.assert_allclose(out.affine, ref.affine)
        a, b = out.get_fdata(), ref.get_fdata()
        assert a.min() >= b.min() - 1e-3 and a.max() <= b.max() + 1e-3
        changed = np.argwhere(a != b)
        assert len(changed) > 0
        lo, hi = changed.min(0), changed.max(0)
        boxes = np.array([bx for bx, s in zip(first["box"], first["synthetic_box"]) if s])
        assert np.all(lo >= boxes[:, :3].min(0) - 3) and np.all(hi < boxes[:, 3:].max(0) + 3)

    run_workflow(evaluate_configs(root, "tiny.yaml"), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "fallback" in metrics["feature_extractor"]
    assert np.isfinite(metrics["fid"]) and np.isfinite(metrics["kid_mean"])
    assert metrics["num_nodules"] == metrics["overall"]["n"] >= 2
    # the default real-vs-real reference: the training scans' real nodules against the held-out real ones
    assert metrics["reference_sections"] == ["training"] and metrics["num_reference"] >= 2
    assert np.isfinite(metrics["fid_reference"]) and np.isfinite(metrics["kid_reference_mean"])
    assert set(metrics["by_size"]) == {"small", "medium", "large"}
    assert set(metrics["by_attenuation"]) == {"solid", "part-solid", "ground-glass"}
    assert sum(g["n"] for g in metrics["by_condition"].values()) == metrics["num_nodules"]
    assert (root / "eval" / "nodules.png").is_file()
