"""The Table 4 grid (Han, thesis sec. 5.3): 2D metastasis detection with real slices only vs + synthetic slices at
+1x/2x/3x the real training set from CPGGAN (rows ii-iv), CPGGAN trained also on normal slices (v-vii) and the
image-to-image GAN (viii-x). Parsing and the dry run only (the real run is in bundles/cpggan/docs/README.md)."""

from pathlib import Path

import yaml
from common.experiments import GridRunner, load_grid

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "scripts" / "experiments" / "cpggan_detection_table4.yaml"
#: generator entry -> (bundle, variants, method name prefix, ratio, the entry whose checkpoint it samples from)
GENERATORS = {
    f"{prefix}_{r}x": (bundle, variants, label, r, f"{prefix}_1x")
    for prefix, bundle, variants, label in (
        ("cpggan", "cpggan", ["tiny.yaml"], "+ CPGGAN"),
        ("cpggan_normal", "cpggan", ["tiny.yaml", "with_normal.yaml"], "+ CPGGAN w/ normal"),
        ("pix2pix", "pix2pix", ["tiny.yaml"], "+ Image-to-image GAN"),
    )
    for r in (1, 2, 3)
}


def _dry_run(tmp_path):
    spec = load_grid(GRID, root=REPO)
    spec.output_dir = str(tmp_path / "out")
    lines: list[str] = []
    runner = GridRunner(spec, python="python", dry_run=True, log=lines.append)
    records = runner.run()
    return spec, runner, records, lines


def test_table4_grid_parses_the_ten_setups():
    spec = load_grid(GRID, root=REPO)
    assert Path(spec.bundle).name == "detection" and spec.seeds
    assert [Path(v).name for v in spec.common_variants] == ["2d.yaml", "yolov3.yaml", "tiny_2d.yaml"]
    assert [m.name for m in spec.methods] == ["Real only"] + [
        f"{label} {r}x" for _, _, label, r, _ in GENERATORS.values()
    ]
    assert [m.name for m in spec.metrics] == [
        "sensitivity_iou0.5",
        "fp_per_image_iou0.5",
        "sensitivity_iou0.25",
        "fp_per_image_iou0.25",
        "cpm",
    ]
    assert [m.higher_is_better for m in spec.metrics] == [True, False, True, False, True]
    assert set(spec.generators) == set(GENERATORS)
    for name, g in spec.generators.items():
        bundle, variants, _, _, _ = GENERATORS[name]
        assert Path(g.bundle).name == bundle and g.per_dataset, name
        assert [Path(v).name for v in g.variants] == variants, name
        assert g.outputs["synthetic_datalist"] == "synthetic/datalist.json"
        # every GAN generates at the detector's image size, from the same phantom
        assert g.overrides["image_size"] == spec.vars["phantom_args"]["image_size"]
        assert g.overrides["phantom_args"] == "${vars.phantom_args}" == spec.overrides["phantom_args"]
    # the pix2pix U-Net reaches a 1x1 bottleneck at the phantom's size
    assert 2 ** spec.generators["pix2pix_1x"].overrides["num_downs"] == spec.vars["phantom_args"]["image_size"]
    for family in ("cpggan", "cpggan_normal", "pix2pix"):
        seeds = [spec.generators[f"{family}_{r}x"].seed for r in (1, 2, 3)]
        assert len(set(seeds)) == 3  # each ratio draws its own synthetic set


def test_table4_dry_run_substitutes_each_ratio_datalist(tmp_path):
    spec, runner, records, lines = _dry_run(tmp_path)
    out = Path(spec.output_dir)
    assert not out.exists()  # a dry run writes nothing
    assert [r["status"] for r in records] == ["dry_run"] * 10 * len(spec.seeds)
    assert sum("monai.bundle run training" in line for line in lines) == 9 + 10 * len(spec.seeds)
    assert sum("monai.bundle run inference" in line for line in lines) == 9

    dataset_dir = str(out / "data" / "metastasis_phantom")
    by_method = {r["method"]: r for r in records if r["seed"] == spec.seeds[0]}
    assert "augmented_datalist" not in by_method["Real only"]["overrides"]
    for name, (_, _, label, ratio, _) in GENERATORS.items():
        expected = out / "generators" / name / "metastasis_phantom" / "eval" / "synthetic" / "datalist.json"
        rec = by_method[f"{label} {ratio}x"]
        assert rec["overrides"]["augmented_datalist"] == str(expected)
    for rec in records:
        o = rec["overrides"]
        assert o["dataset_dir"] == dataset_dir and o["phantom_args"] == spec.vars["phantom_args"]
        assert o["max_epochs"] == spec.vars["detector_epochs"]

    plans = {p.name: p for p in runner.generator_plans()}
    for name, (bundle, variants, _, ratio, source) in GENERATORS.items():
        o = plans[name].overrides
        assert o["dataset_dir"] == dataset_dir and o["phantom_args"] == spec.vars["phantom_args"]
        assert o["num_samples"].startswith("$") and "load_decathlon_datalist(@datalist, True, 'training')" in (
            o["num_samples"]
        )
        assert o["num_samples"].startswith(f"${ratio} * " if ratio > 1 else "$len(")
        ckpt = str(out / "generators" / source / "metastasis_phantom" / "models" / "model.pt")
        if ratio > 1:  # trained once: the other ratios sample from the 1x entry's generator
            assert o["training"] == [] and o["checkpoint"] == ckpt
        else:
            assert "training" not in o and "checkpoint" not in o
        train = [line for line in lines if "run training" in line and f"/generators/{name}/" in line]
        assert len(train) == 1 and f"bundles/{bundle}/configs/train.yaml" in train[0], name
        assert all(f"configs/variants/{v}" in train[0] for v in variants), name
    # the overrides file the runner would write keeps these types
    assert yaml.safe_load(yaml.safe_dump(plans["cpggan_2x"].overrides))["training"] == []
