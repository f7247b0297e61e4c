"""The Table 4 grid (Han, thesis sec. 5.3): 2D metastasis detection with real slices only vs + synthetic slices at
+1x/2x/3x the real training set from CPGGAN (rows ii-iv), CPGGAN trained also on normal slices (v-vii) and the
image-to-image GAN (viii-x). Parsing and the dry run (the real runs are in bundles/cpggan/docs/README.md), and the
calibrated grid's lesion-free normal subjects made as the runner makes them."""

import json
from pathlib import Path

import monai
import yaml
from common.data.splits import split_counts
from common.experiments import GridRunner, load_grid
from common.experiments.detection_calibration import DETECTION_FAMILIES
from monai.bundle import ConfigWorkflow

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


CALIBRATED_GRID = REPO / "scripts" / "experiments" / "cpggan_detection_calibrated_table4.yaml"


def test_calibrated_grid_is_table4_on_the_calibrated_phantom_with_the_calibrations_detector():
    """The calibrated Table 4 grid: the Table 4 grid's ten setups and metrics, on the `calibrated_detection`
    metastasis phantom with 8 training and 40 test patients, the `detection_yolov3_2d` calibration's detector, step
    count and no classic DA (but in the reference row and the three GAN rows that name it), 5 seeds; the GANs at the
    phantom's 64 px, the 1x sets scored against the real-vs-real reference, and CPGGAN w/ normal trained on another,
    lesion-free phantom set; the upper bound (a reference row) on the 8 training patients and 72 more of the same
    phantom, with the calibration's step count and no classic DA, as in the calibration."""
    base, spec = load_grid(GRID, root=REPO), load_grid(CALIBRATED_GRID, root=REPO)
    bound = spec.methods.pop()
    assert bound.name == "Upper bound (80 patients)" and bound.reference
    assert not any(m.reference for m in spec.methods)
    assert bound.overrides == {"datalist": "${generators.upper_bound_data.datalist}"}  # 400 steps, augment_prob 0
    data = spec.generators.pop("upper_bound_data")
    assert not data.train and data.per_dataset and data.overrides["phantom_kind"] == "brain_metastases"
    assert data.overrides["phantom_args"] == "${vars.phantom_args}"
    assert "add_training_patients(@datalist, " in data.overrides["inference"][0]
    assert ", 72, " in data.overrides["inference"][0]
    methods = [(m.name, m.overrides) for m in spec.methods]
    assert methods.pop(1) == ("Real only + classic DA", {"augment_prob": 0.5})  # the reference row
    assert methods[: len(base.methods)] == [(m.name, m.overrides) for m in base.methods]
    # the thesis's design at 1x: each GAN's 1x set with the classic DA on; the ablation's 1x likewise
    extra = dict(methods[len(base.methods) :])
    for name in ("+ CPGGAN 1x", "+ CPGGAN w/ normal 1x", "+ Image-to-image GAN 1x", "+ CPGGAN 4x longer 1x"):
        assert extra.pop(f"{name} + classic DA") == {**dict(methods)[name], "augment_prob": 0.5}, name
    # the training-length ablation: CPGGAN's settings but 4x as many images per phase
    assert set(extra) == {"+ CPGGAN 4x longer 1x", "+ CPGGAN 4x longer 3x"}
    long_, short = spec.generators["cpggan_long_1x"].overrides, spec.generators["cpggan_1x"].overrides
    assert {k: v for k, v in long_.items() if "_images" not in k} == {
        k: v for k, v in short.items() if "_images" not in k
    }
    assert spec.vars["long_images_per_phase"] == 4 * spec.vars["gan_images_per_phase"]
    assert long_["fade_in_images"] == long_["stabilise_images"] == "${vars.long_images_per_phase}"
    assert [m.name for m in spec.metrics] == [m.name for m in base.metrics]
    assert spec.blocks == "seeds" and spec.seeds == [0, 1, 2, 3, 4]
    family = DETECTION_FAMILIES["detection_yolov3_2d"]
    assert [f"variants/{Path(v).name}" for v in spec.common_variants] == family["variants"]
    phantom = spec.vars["phantom_args"]
    assert spec.overrides["phantom_kind"] == family["phantom_kind"] == "brain_metastases"
    assert phantom["difficulty"] == family["preset"] and phantom["positive_fraction"] == 1.0
    assert split_counts(phantom["num_patients"], phantom["split_fractions"]) == [family["num_small_patients"], 0, 40]
    assert (phantom["image_size"], phantom["cases_per_patient"]) == (family["image_size"], family["cases_per_patient"])
    detector = family["overrides"]  # the classic DA off too (augment_prob 0) but in the reference row
    assert {k: spec.overrides[k] for k in detector} == detector and detector["augment_prob"] == 0.0
    assert spec.overrides["batch_size"] == family["batch_size"] and spec.overrides["val_interval"] == 0
    assert spec.vars["detector_epoch_length"] * spec.vars["detector_epochs"] == family["iterations"]

    assert set(spec.generators) == set(base.generators) | {"normal_subjects", "cpggan_long_1x", "cpggan_long_3x"}
    for name, g in spec.generators.items():
        if name == "normal_subjects":
            continue
        b = base.generators[name.replace("_long", "")]
        assert (g.seed, g.outputs, g.per_dataset) == (b.seed, b.outputs, b.per_dataset), name
        assert g.variants == [v for v in b.variants if v != "tiny.yaml"], name
        assert g.overrides["image_size"] == phantom["image_size"], name
        assert g.overrides["phantom_args"] == "${vars.phantom_args}", name
        assert (g.evaluate_config == "configs/evaluate.yaml") == name.endswith("_1x"), name
        is_normal = name.startswith("cpggan_normal")
        assert (g.overrides.get("normal_datalist") == "${generators.normal_subjects.datalist}") == is_normal, name
    assert 2 ** spec.generators["pix2pix_1x"].overrides["num_downs"] == phantom["image_size"]
    normal = spec.vars["normal_phantom_args"]
    assert normal["positive_fraction"] == 0.0 and normal["seed"] != phantom["seed"]  # other, lesion-free subjects
    assert {k: normal[k] for k in ("image_size", "difficulty")} == {k: phantom[k] for k in ("image_size", "difficulty")}


def test_calibrated_grid_makes_the_normal_subjects_and_feeds_them_to_cpggan_w_normal(tmp_path):
    """The `normal_subjects` entry, run as the runner runs it (cpggan's inference config and the planned overrides),
    writes a lesion-free phantom set of other subjects (training section only), and CPGGAN w/ normal's training
    datalist is the 8 patients' slices with metastases plus those slices."""
    spec = load_grid(CALIBRATED_GRID, root=REPO)
    spec.output_dir = str(tmp_path / "out")
    spec.vars["normal_phantom_args"].update(num_patients=3, image_size=32)
    spec.vars["phantom_args"].update(image_size=32)
    runner = GridRunner(spec, dry_run=True, log=lambda s: None)
    plan = runner.generator_plan(spec.generators["normal_subjects"], spec.datasets[0])
    assert [s.workflow for s in plan.steps] == ["inference"]
    overrides = {**plan.overrides, "ckpt_dir": plan.outputs["ckpt_dir"], "output_dir": plan.outputs["output_dir"]}
    wf = ConfigWorkflow(
        config_file=plan.steps[0].files, workflow_type=None, run_id="inference", logging_file=False, **overrides
    )
    wf.initialize()
    wf.run()
    normal = Path(plan.outputs["datalist"])
    entries = monai.data.load_decathlon_datalist(str(normal), True, "training")
    assert len(entries) == 6 and all(e["box"] == [] and e["class"] == 0 for e in entries)
    assert json.loads(normal.read_text())["parameters"]["positive_fraction"] == 0.0

    runner.generator_outputs[("normal_subjects", spec.datasets[0].slug)] = plan.outputs  # as after its run
    gplan = runner.generator_plan(spec.generators["cpggan_normal_1x"], spec.datasets[0])
    assert gplan.overrides["normal_datalist"] == str(normal)
    wf = ConfigWorkflow(
        config_file=gplan.steps[0].files,
        workflow_type=None,
        run_id="training",
        logging_file=False,
        **{**gplan.overrides, "ckpt_dir": gplan.outputs["ckpt_dir"], "output_dir": gplan.outputs["output_dir"]},
    )
    wf.initialize()
    training = wf.parser.get_parsed_content("train#datalist")
    boxed = [e for e in training if e["box"]]
    assert len(boxed) == 16 and {e["image"] for e in training if not e["box"]} == {e["image"] for e in entries}
