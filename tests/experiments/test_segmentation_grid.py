"""The segmentation grid (CDA-GAN paper 000, Table 3, Algorithm 3 of sec. 3.2): its plan, and one end-to-end run at
the smallest size with the real bundles."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml
from common.experiments import GridRunner, load_grid, parse_grid, slugify

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "scripts" / "experiments" / "phantom_segmentation.yaml"
ENHANCED = "CDA-GAN (enhanced)"


def _first(image) -> str:
    return image[0] if isinstance(image, list) else image


def _images(path: Path, section: str) -> list[str]:
    """The (first) image files of a datalist section, as real paths."""
    data = json.loads(path.read_text())
    return sorted(os.path.realpath(path.parent / _first(e["image"])) for e in data[section])


def test_algorithm3_methods_get_both_rules_of_difference_maps(tmp_path):
    """The enhanced method reads the train-rule maps of the training images and the test-rule maps of the
    validation/test images, both written by its data set's CDA-GAN (two inference commands); no method takes the
    enhanced datalist as a synthetic set."""
    spec = load_grid(GRID, root=REPO)
    spec.output_dir = str(tmp_path / "out")
    runner = GridRunner(spec, dry_run=True, log=lambda s: None)
    runner.run()
    for plan in runner.generator_plans():
        assert [(s.workflow, s.name) for s in plan.steps] == [
            ("training", "training"),
            ("inference", "inference"),
            ("inference", "inference_1"),
        ]
        assert plan.steps[1].overrides is None and plan.steps[2].overrides["difference_rule"] == "test"
        eval_dir = plan.run_dir / "eval"
        assert plan.outputs["enhanced_datalist"] == str(eval_dir / "cross_domain" / "enhanced_datalist.json")
        assert plan.outputs["enhanced_test_datalist"] == str(eval_dir / "cross_domain_test" / "enhanced_datalist.json")
    for plan in runner.run_plans():
        assert "synthetic_datalist" not in plan.overrides
        if plan.method == ENHANCED:
            gen = Path(spec.output_dir) / "generators" / "cda_gan" / slugify(plan.dataset) / "eval"
            assert plan.overrides["enhanced_datalist"] == str(gen / "cross_domain" / "enhanced_datalist.json")
            assert plan.overrides["enhanced_test_datalist"] == str(gen / "cross_domain_test" / "enhanced_datalist.json")
        assert ("datalist" in plan.overrides) == (plan.dataset == "Phantom_s")


@pytest.mark.slow
def test_smallest_segmentation_grid_end_to_end(tmp_path):
    """The grid with the real bundles at its smallest: the BraTS_s-like data set, one seed, the baseline and
    Algorithm 3 (7 bundle commands: CDA-GAN training and its two inference rules, two U-Nets trained and evaluated).
    Also shows that the CDA-GAN of a subset trains on exactly the U-Nets' training images."""
    data = yaml.safe_load(GRID.read_text())
    data["output_dir"] = str(tmp_path / "out")
    data["seeds"] = [1]  # not the configs' default seed: --seed reaches the runs
    # the earlier, smaller phantom (2 test patients instead of the grid's 44): the same route, less to evaluate
    data["vars"]["phantom_args"] = {k: v for k, v in data["vars"]["phantom_args"].items() if k != "split_fractions"}
    data["vars"]["phantom_args"]["num_patients"] = 8
    data["datasets"] = [d for d in data["datasets"] if d["name"] == "Phantom_s"]
    data["methods"] = [m for m in data["methods"] if m["name"] in ("w/o DA", ENHANCED)]
    data["generators"] = {"cda_gan": data["generators"]["cda_gan"]}  # the baselines' CycleGAN family: same route
    spec = parse_grid(data, source=str(GRID), root=REPO)
    runner = GridRunner(spec, python=sys.executable, log=lambda s: None)
    records = runner.run()
    assert [r["status"] for r in [*runner.generator_records, *records]] == ["ok"] * 3, [
        r.get("error") for r in [*runner.generator_records, *records]
    ]
    out = Path(spec.output_dir)
    gen = out / "generators" / "cda_gan" / "phantom_s"
    runs = {r["method"]: Path(r["run_dir"]) for r in records}

    # the CDA-GAN saw the downstream training subset only, and made its synthetic set from it
    source = out / "data" / "phantom_s" / "datalist.json"
    subset = _images(gen / "split_datalist.json", "training")
    assert 0 < len(subset) < len(_images(source, "training"))
    for run_dir in runs.values():
        assert _images(run_dir / "split_datalist.json", "training") == subset
        assert _images(run_dir / "eval" / "datalist_full.json", "training") == subset  # what the U-Net trained on
    synthetic = json.loads((gen / "eval" / "cross_domain" / "synthetic_datalist.json").read_text())["training"]
    assert sorted(os.path.realpath(e["source"]) for e in synthetic) == subset

    # Algorithm 3: train-rule maps of the training images, test-rule maps of the validation and test images
    train_maps = json.loads((gen / "eval" / "cross_domain" / "enhanced_datalist.json").read_text())
    test_maps = json.loads((gen / "eval" / "cross_domain_test" / "enhanced_datalist.json").read_text())
    assert train_maps["difference_rule"] == "train" and test_maps["difference_rule"] == "test"
    assert len(train_maps["training"]) == len(subset)
    held_out = _images(runs["w/o DA"] / "eval" / "datalist_full.json", "validation") + _images(source, "test")
    assert sorted(os.path.realpath(_first(e["image"])) for e in test_maps["training"]) == sorted(held_out)
    for entry in train_maps["training"] + test_maps["training"]:
        files = entry["difference"] if isinstance(entry["difference"], list) else [entry["difference"]]
        assert len(files) == 4 and all(Path(f).is_file() for f in files)  # one map per channel

    # the enhanced U-Net takes 4 image + 4 difference channels, the baseline 4
    def in_channels(run_dir: Path) -> int:
        state = torch.load(run_dir / "models" / "model.pt", map_location="cpu", weights_only=True)
        return next(iter(state.get("model", state).values())).shape[1]

    assert in_channels(runs[ENHANCED]) == 8 and in_channels(runs["w/o DA"]) == 4
    for run_dir in runs.values():
        metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
        assert metrics["seed"] == 1 and 0.0 <= metrics["dice"] <= 1.0
    with open(out / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "dice"]
    assert sorted(r["method"] for r in rows) == sorted(runs)
    table = (out / "tables.md").read_text()
    assert "| Method | Phantom_s: Dice | Phantom_s: Sens | Phantom_s: HD95 | Phantom_s: mIoU |" in table
