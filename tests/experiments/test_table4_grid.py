"""The Table 4 grid (Han, thesis sec. 5.3): 2D metastasis detection with real slices only vs + CPGGAN images at
+1x/2x/3x the real training set. Parsing and the dry run only (the real run is in bundles/cpggan/docs/README.md)."""

from pathlib import Path

import yaml
from common.experiments import GridRunner, load_grid

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "scripts" / "experiments" / "cpggan_detection_table4.yaml"
RATIOS = {"cpggan_1x": 1, "cpggan_2x": 2, "cpggan_3x": 3}


def _dry_run(tmp_path):
    spec = load_grid(GRID, root=REPO)
    spec.output_dir = str(tmp_path / "out")
    lines: list[str] = []
    runner = GridRunner(spec, python="python", dry_run=True, log=lines.append)
    records = runner.run()
    return spec, runner, records, lines


def test_table4_grid_parses():
    spec = load_grid(GRID, root=REPO)
    assert Path(spec.bundle).name == "detection" and spec.seeds
    assert [Path(v).name for v in spec.common_variants] == ["2d.yaml", "tiny_2d.yaml"]
    assert [m.name for m in spec.methods] == ["Real only", "+ CPGGAN 1x", "+ CPGGAN 2x", "+ CPGGAN 3x"]
    assert [m.name for m in spec.metrics] == [
        "sensitivity_iou0.5",
        "fp_per_image_iou0.5",
        "sensitivity_iou0.25",
        "fp_per_image_iou0.25",
        "cpm",
    ]
    assert [m.higher_is_better for m in spec.metrics] == [True, False, True, False, True]
    assert set(spec.generators) == set(RATIOS)
    for g in spec.generators.values():
        assert Path(g.bundle).name == "cpggan" and g.per_dataset
        assert g.outputs["synthetic_datalist"] == "synthetic/datalist.json"
        # CPGGAN generates at the detector's image size, from the same phantom
        assert g.overrides["image_size"] == spec.vars["phantom_args"]["image_size"]
        assert g.overrides["phantom_args"] == "${vars.phantom_args}" == spec.overrides["phantom_args"]
    seeds = [g.seed for g in spec.generators.values()]
    assert len(set(seeds)) == len(seeds)  # each ratio draws its own synthetic set


def test_table4_dry_run_substitutes_each_ratio_datalist(tmp_path):
    spec, runner, records, lines = _dry_run(tmp_path)
    out = Path(spec.output_dir)
    assert not out.exists()  # a dry run writes nothing
    assert [r["status"] for r in records] == ["dry_run"] * 4 * len(spec.seeds)
    assert sum("monai.bundle run training" in line for line in lines) == 3 + 4 * len(spec.seeds)
    assert sum("monai.bundle run inference" in line for line in lines) == 3

    dataset_dir = str(out / "data" / "metastasis_phantom")
    by_method = {r["method"]: r for r in records if r["seed"] == spec.seeds[0]}
    assert "augmented_datalist" not in by_method["Real only"]["overrides"]
    for name, ratio in RATIOS.items():
        expected = out / "generators" / name / "metastasis_phantom" / "eval" / "synthetic" / "datalist.json"
        rec = by_method[f"+ CPGGAN {ratio}x"]
        assert rec["overrides"]["augmented_datalist"] == str(expected)
    for rec in records:
        o = rec["overrides"]
        assert o["dataset_dir"] == dataset_dir and o["phantom_args"] == spec.vars["phantom_args"]
        assert o["max_epochs"] == spec.vars["detector_epochs"]

    plans = {p.name: p for p in runner.generator_plans()}
    ckpt = str(out / "generators" / "cpggan_1x" / "metastasis_phantom" / "models" / "model.pt")
    assert "training" not in plans["cpggan_1x"].overrides and "checkpoint" not in plans["cpggan_1x"].overrides
    for name, ratio in RATIOS.items():
        o = plans[name].overrides
        assert o["dataset_dir"] == dataset_dir and o["phantom_args"] == spec.vars["phantom_args"]
        assert o["num_samples"].startswith("$") and "load_decathlon_datalist(@datalist, True, 'training')" in (
            o["num_samples"]
        )
        assert o["num_samples"].startswith(f"${ratio} * " if ratio > 1 else "$len(")
        if ratio > 1:  # trained once: the other ratios sample from cpggan_1x's generator
            assert o["training"] == [] and o["checkpoint"] == ckpt
    # the overrides file the runner would write keeps these types
    assert yaml.safe_load(yaml.safe_dump(plans["cpggan_2x"].overrides))["training"] == []
