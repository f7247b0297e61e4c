"""The Table 2 grid of Han's thesis (sec. 4): PGGAN per class -> discarding -> MUNIT/SimGAN refinement with the step
chosen by validation accuracy -> ResNet-50 classification, 20 setups. Parsing, the dry run, the config ids its
overrides name, and the glue steps (merge, filter, step selection) executed on stand-in files; no bundle run. The
calibrated grid against it, the CDA-GAN calibrated grids' data and the `classification` calibration's run size."""

import ast
import json
import re
from pathlib import Path

import pytest
import yaml
from common.experiments import GridRunner, load_grid
from common.experiments.calibration import FAMILIES
from monai.bundle import ConfigParser
from monai.bundle.utils import merge_kv

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "scripts" / "experiments" / "thesis_classification_table2.yaml"
SETUPS = [
    "(1) real images",
    "(2) + 2x classic DA",
    "(3) + 4x classic DA",
    "(4) + 2x PGGAN DA",
    "(5) + 2x PGGAN DA w/o discarding",
    "(6) + 2x classic DA & 2x PGGAN DA",
    "(7) + 2x MUNIT DA",
    "(8) + 2x classic DA & 2x MUNIT DA",
    "(9) + 2x SimGAN DA",
    "(10) + 2x classic DA & 2x SimGAN DA",
]
STEPS = (200, 500, 1000)
REFINERS = ("munit", "simgan")


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    spec = load_grid(GRID, root=REPO)
    spec.seeds = spec.seeds[:1]  # the plans of the other seeds differ only in --seed
    spec.output_dir = str(tmp_path_factory.mktemp("grid") / "out")
    lines: list[str] = []
    runner = GridRunner(spec, python="python", dry_run=True, log=lines.append)
    records = runner.run()
    plans = {p.name: p for p in runner.generator_plans()}
    return spec, records, plans, lines


def test_grid_has_table2_setups_metrics_and_chain():
    spec = load_grid(GRID, root=REPO)
    assert [m.name for m in spec.methods] == SETUPS + [f"{s}, ImageNet" for s in SETUPS]
    assert [(m.name, m.label) for m in spec.metrics] == [
        ("acc", "Accuracy"),
        ("recall", "Sensitivity"),
        ("specificity", "Specificity"),
    ]
    assert Path(spec.bundle).name == "classification" and [Path(v).name for v in spec.common_variants] == [
        "thesis.yaml"
    ]
    chain = ["real_subset", "pggan_tumour", "pggan_non_tumour", "pggan_sets"]
    for r in REFINERS:
        chain += [f"{r}_tumour", f"{r}_non_tumour", f"{r}_sets", *[f"clf_{r}_s{s}" for s in STEPS], f"{r}_selected"]
    assert list(spec.generators) == chain  # declaration order is run order
    g = spec.generators
    assert g["pggan_non_tumour"].variants == ["tiny.yaml", "non_tumour.yaml"] and g["pggan_tumour"].seed != 1
    for r in REFINERS:
        for cls, name in ((1, f"{r}_tumour"), (0, f"{r}_non_tumour")):
            assert g[name].variants == ["tiny.yaml", "pggan_source.yaml"] and g[name].overrides["refine_class"] == cls
            assert g[name].overrides["synthetic_datalist"] == "${generators.pggan_sets.kept}"  # not degraded images
            assert g[name].overrides["checkpoint_epoch_level"] is False
            assert all(s % g[name].overrides["save_interval"] == 0 for s in STEPS)
            assert max(STEPS) == g[name].overrides["num_steps"]
            assert [run["checkpoint"] for run in g[name].inference_runs] == [
                f"$os.path.join(@ckpt_dir, 'checkpoint_{s}.pt')" for s in STEPS
            ]
        for s in STEPS:  # the selection classifiers: thesis preset, classic DA, the step's refined images
            clf = g[f"clf_{r}_s{s}"]
            assert clf.variants == ["thesis.yaml", "classic.yaml", "synthetic.yaml"]
            assert clf.overrides["synthetic_datalist"] == f"${{generators.{r}_sets.s{s}}}"
            assert clf.inference_runs == [{"inference_section": "validation"}]
    ratios = {m.name: m.overrides.get("synthetic_ratio") for m in spec.methods}
    imagenet = [m for m in spec.methods if m.name.endswith("ImageNet")]
    assert all(m.overrides["pretrained_weights"] == "${vars.imagenet_weights}" for m in imagenet)
    assert not any("pretrained_weights" in m.overrides for m in spec.methods if m not in imagenet)
    for name, ratio in ratios.items():  # every augmented setup has more synthetic than real images
        assert (ratio is None) == name.startswith("(1)") and (ratio is None or ratio > 1)
        assert ratio in (None, 4.0) if "&" in name or name.startswith("(3)") else ratio in (None, 2.0)


def test_dry_run_wires_each_setup_to_its_generator_output(dry):
    spec, records, plans, lines = dry
    out = Path(spec.output_dir)
    assert not out.exists()
    assert [r["status"] for r in records] == ["dry_run"] * 20 * len(spec.seeds)
    gen = out / "generators"
    expected = {
        "(1)": None,
        "(2)": gen / "real_subset" / "phantom" / "eval" / "real" / "datalist.json",
        "(4)": gen / "pggan_sets" / "phantom" / "eval" / "kept" / "datalist.json",
        "(5)": gen / "pggan_sets" / "phantom" / "eval" / "all" / "datalist.json",
        "(6)": gen / "pggan_sets" / "phantom" / "eval" / "classic_kept" / "datalist.json",
        "(7)": gen / "munit_selected" / "phantom" / "eval" / "selected" / "datalist.json",
        "(8)": gen / "munit_selected" / "phantom" / "eval" / "classic_selected" / "datalist.json",
        "(9)": gen / "simgan_selected" / "phantom" / "eval" / "selected" / "datalist.json",
        "(10)": gen / "simgan_selected" / "phantom" / "eval" / "classic_selected" / "datalist.json",
    }
    expected["(3)"] = expected["(2)"]
    for rec in records:
        o = rec["overrides"]
        want = expected[rec["method"].split()[0]]
        assert o.get("synthetic_datalist") == (None if want is None else str(want)), rec["method"]
        gan = rec["method"].split()[0] not in ("(1)", "(2)", "(3)")
        assert o.get("synthetic_channels") == ([1] if gan else None)  # one-channel T1c GAN images
        assert o["early_stop_patience"] > 0 and o["image_size"] == spec.vars["image_size"]
        assert o.get("pretrained_weights") == (spec.vars["imagenet_weights"] if "ImageNet" in rec["method"] else None)
    # the refiners read the kept PGGAN images; their saved steps refine into separate folders
    kept = str(expected["(4)"])
    for r in REFINERS:
        for part in ("tumour", "non_tumour"):
            plan = plans[f"{r}_{part}"]
            assert plan.overrides["synthetic_datalist"] == kept
            refined = [s.overrides["refined_dir"] for s in plan.steps if s.workflow == "inference"]
            assert refined == [f"$os.path.join(@output_dir, 'refined_{s}')" for s in STEPS]
    # 20 setups per seed, + refiners, clf, PGGANs
    assert sum("monai.bundle run training" in line for line in lines) == 20 * len(spec.seeds) + 4 + 6 + 2
    # the overrides files the runner would write keep their types
    assert yaml.safe_load(yaml.safe_dump(plans["munit_tumour"].overrides))["checkpoint_epoch_level"] is False


def _merged(files) -> dict:
    parser = ConfigParser(config={})
    for f in files:
        for k, v in ConfigParser.load_config_file(str(f)).items():
            merge_kv(parser, k, v)
    return parser.get()


def _has_id(config: dict, key: str) -> bool:
    """The id exists, or it is a new keyword argument of an existing ``_target_`` component."""
    node = config
    parts = key.split("#")
    for i, part in enumerate(parts):
        part = int(part) if isinstance(node, list) and part.isdigit() else part
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return i == len(parts) - 1 and isinstance(node, dict) and "_target_" in node
    return True


def _expressions(value):
    if isinstance(value, str) and value.startswith("$"):
        yield value[1:]
    elif isinstance(value, dict):
        for v in value.values():
            yield from _expressions(v)
    elif isinstance(value, list):
        for v in value:
            yield from _expressions(v)


def test_every_override_names_an_existing_id_and_parses(dry):
    _check_ids_and_expressions(*dry[:3])


def _check_ids_and_expressions(spec, records, plans):
    """Every override of a dry run names an id of the configs it is merged into; every added expression parses."""
    checked = 0
    for plan in plans.values():
        configs = [_merged(step.files) for step in plan.steps]
        for key in plan.overrides:  # shared by the generator's training and inference: in one of them at least,
            # and a nested id (a#b) in every one of them, since MONAI cannot update an item below a missing id
            found = [_has_id(c, key) for c in configs]
            assert all(found) if "#" in key else any(found), f"{plan.name}: no id {key!r} in its configs"
            checked += 1
        for step, config in zip(plan.steps, configs):
            for key in step.overrides or {}:
                assert _has_id(config, key), f"{plan.name} {step.name}: no id {key!r} in {step.files}"
                checked += 1
    for rec in records:
        config = _merged([c for c in re.findall(r"'([^']+\.yaml)'", " ".join(rec["commands"])) if "overrides" not in c])
        for key in rec["overrides"]:
            assert _has_id(config, key), f"{rec['method']}: no id {key!r}"
            checked += 1
    assert checked > 200
    for plan in plans.values():  # the Python of every expression the grid adds is valid
        for expr in _expressions([plan.overrides, *[s.overrides or {} for s in plan.steps]]):
            ast.parse(re.sub(r"@[\w#]+", "x", expr))


def _run_expressions(plan, files, tmp_eval, **extra):
    """Executes a train: false generator's `inference` as `monai.bundle run inference` would."""
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update({**plan.overrides, "output_dir": str(tmp_eval), "ckpt_dir": str(tmp_eval.parent / "models")})
    parser.update(extra)
    return parser.get_parsed_content("inference")


def test_merge_and_step_selection_glue_runs_on_stand_in_files(dry, tmp_path):
    spec, _, plans, _ = dry
    out = Path(spec.output_dir)
    real = out / "data" / "phantom" / "datalist.json"
    real.parent.mkdir(parents=True)
    val = [{"image": [f"v{i}.nii.gz"] * 4, "class": i % 2} for i in range(4)]
    real.write_text(json.dumps({"training": [{"image": ["t.nii.gz"] * 4, "class": 1}], "validation": val}))
    for name in ["t.nii.gz"] + [e["image"][0] for e in val]:  # the copy rebases the paths of existing files
        (real.parent / name).touch()
    files = [REPO / "bundles" / "classification" / "configs" / "inference.yaml"]
    # the real slices as the runner hands them to the generators (here without a split: the whole stand-in)
    subset = plans["real_subset"]
    _run_expressions(subset, files, Path(subset.outputs["output_dir"]), datalist=str(real))
    copied = json.loads(Path(subset.outputs["datalist"]).read_text())
    assert len(copied["training"]) == 1 and len(copied["validation"]) == 4
    # the refiners' outputs per step and class, and the selection classifiers' validation predictions
    good = {200: [0, 1, 1, 1], 500: [0, 1, 0, 1], 1000: [1, 1, 1, 1]}  # step 500 is the most accurate
    for s in STEPS:
        for part, cls in (("tumour", 1), ("non_tumour", 0)):
            f = Path(plans[f"munit_{part}"].outputs[f"s{s}"])
            f.parent.mkdir(parents=True)
            f.write_text(json.dumps({"training": [{"image": f"r{s}_{cls}.nii.gz", "class": cls, "synthetic": True}]}))
        p = Path(plans[f"clf_munit_s{s}"].outputs["predictions"])
        p.parent.mkdir(parents=True)
        preds = [{"image": str(real.parent / e["image"][0]), "pred": g} for e, g in zip(val, good[s])]
        p.write_text(json.dumps({"predictions": preds}))
    sets = plans["munit_sets"]
    _run_expressions(sets, files, Path(sets.outputs["output_dir"]))
    merged = json.loads(Path(sets.outputs["s500"]).read_text())["training"]
    assert sorted(e["class"] for e in merged) == [0, 1]
    selected = plans["munit_selected"]
    _run_expressions(selected, files, Path(selected.outputs["output_dir"]))
    record = json.loads((Path(selected.outputs["selected"]).parent / "selection.json").read_text())
    assert record["selected_step"] == "500" and record["accuracy"]["500"] == 1.0
    chosen = json.loads(Path(selected.outputs["selected"]).read_text())["training"]
    assert sorted(Path(e["image"]).name for e in chosen) == ["r500_0.nii.gz", "r500_1.nii.gz"]
    pool = json.loads(Path(selected.outputs["classic_selected"]).read_text())["training"]
    assert len(pool) == 2 * 1 + 2  # the real training slice twice, the two refined images once


CALIBRATED_GRID = REPO / "scripts" / "experiments" / "thesis_classification_calibrated_table2.yaml"
CDA_GAN_CALIBRATED_GRID = REPO / "scripts" / "experiments" / "phantom_classification_calibrated_gan.yaml"


@pytest.fixture(scope="module")
def dry_calibrated(tmp_path_factory):
    spec = load_grid(CALIBRATED_GRID, root=REPO)
    spec.seeds = spec.seeds[:1]
    spec.output_dir = str(tmp_path_factory.mktemp("calibrated") / "out")
    runner = GridRunner(spec, python="python", dry_run=True, log=lambda _: None)
    records = runner.run()
    return spec, records, {p.name: p for p in runner.generator_plans()}


def test_calibrated_grid_is_table2_on_the_calibrated_phantom_with_the_calibrated_resnet50():
    """The calibrated Table 2 grid: the Table 2 grid's ten from-scratch setups and its generator chain, on the data of
    the CDA-GAN calibrated grids (the same phantom and 8-patient subset), with the thesis's ResNet-50 at the run size
    of the `classification` calibration (widen, batch, image size and 300 iterations on the real slices alone)."""
    base, spec = load_grid(GRID, root=REPO), load_grid(CALIBRATED_GRID, root=REPO)
    setups, ablation, (bound,) = spec.methods[: len(SETUPS)], spec.methods[len(SETUPS) : -1], spec.methods[-1:]
    assert [(m.name, m.variants, m.overrides) for m in setups] == [
        (m.name, m.variants, m.overrides) for m in base.methods[: len(SETUPS)]
    ]
    assert [m.name for m in setups] == SETUPS
    # the ablation: (4) and (6) with the images of the PGGANs trained 4x as long
    assert [m.name for m in ablation] == [f"{SETUPS[i]}, PGGAN 4x longer" for i in (3, 5)]
    for m, b in zip(ablation, (setups[3], setups[5])):
        assert m.variants == b.variants
        assert m.overrides == {
            **b.overrides,
            "synthetic_datalist": b.overrides["synthetic_datalist"].replace("pggan_", "pggan_long_"),
        }
    # the upper bound: (1) on every training patient, a reference row, the calibration's 80-patient run size
    assert bound.reference and bound.split == {"mode": "full", "seed": 0} and not bound.variants
    assert not any(m.reference or m.split for m in spec.methods[:-1])
    assert bound.overrides == {"max_epochs": 8, "val_interval": 2}
    assert [m.name for m in spec.metrics] == ["auc"] + [m.name for m in base.metrics]
    assert spec.common_variants == base.common_variants and spec.seeds == [0, 1, 2, 3, 4]
    # the data: the CDA-GAN calibrated grids' phantom and subset
    cda = load_grid(CDA_GAN_CALIBRATED_GRID, root=REPO)
    assert spec.vars["phantom_args"] == cda.vars["phantom_args"]
    assert [d.split for d in spec.datasets] == [d.split for d in cda.datasets]
    phantom = spec.vars["phantom_args"]
    family = FAMILIES["classification"]
    assert phantom["difficulty"] == family["preset"]
    # the classifier: the calibration's run size
    assert {k: spec.overrides[k] for k in family["overrides"]} == family["overrides"]
    assert spec.overrides["batch_size"] == family["batch_size"] and spec.overrides["image_size"] == 64
    small_patients = round(phantom["num_patients"] * phantom["split_fractions"][0] * spec.datasets[0].split["fraction"])
    real_slices = small_patients * phantom["cases_per_patient"]
    assert spec.overrides["max_epochs"] * real_slices // family["batch_size"] == family["iterations"]
    # the chain: the base grid's generators, their outputs, seeds and refiner steps, at the phantom's 64 px
    long_ = ["pggan_long_tumour", "pggan_long_non_tumour", "pggan_long_sets"]
    chain = list(base.generators)
    assert (
        list(spec.generators) == chain[: chain.index("pggan_sets") + 1] + long_ + chain[chain.index("pggan_sets") + 1 :]
    )
    for name, g in spec.generators.items():
        b = base.generators[name.replace("pggan_long_", "pggan_")]
        assert (g.seed, g.outputs, g.per_dataset, g.train) == (b.seed, b.outputs, b.per_dataset, b.train), name
        assert g.inference_runs == b.inference_runs, name
        if name.startswith(("munit_", "simgan_")) and g.train:
            assert g.variants == b.variants, name
            same = {k for k in b.overrides if k not in ("image_size", "phantom_args")}
            assert {k: g.overrides[k] for k in same} == {k: b.overrides[k] for k in same}, name
        if name.startswith("clf_"):  # the selection classifiers are the grid's classifier
            assert g.variants == b.variants
            assert {k: g.overrides[k] for k in spec.overrides} == spec.overrides, name
        if g.train:
            assert g.overrides.get("image_size") in (64, None) and "phantom_args" in g.overrides, name
    pggan = spec.generators["pggan_tumour"].overrides
    assert pggan["image_size"] == pggan["pad_size"] == phantom["image_size"]
    longer = spec.generators["pggan_long_tumour"].overrides  # the same PGGAN, 4x the images per phase
    assert {k: v for k, v in longer.items() if k not in ("fade_in_images", "stabilise_images", "save_interval")} == {
        k: v for k, v in pggan.items() if k not in ("fade_in_images", "stabilise_images", "save_interval")
    }
    assert longer["fade_in_images"] == longer["stabilise_images"] == 4 * pggan["fade_in_images"]
    assert spec.generators["pggan_long_sets"].overrides["inference"] == [
        e.replace("pggan_tumour", "pggan_long_tumour").replace("pggan_non_tumour", "pggan_long_non_tumour")
        for e in spec.generators["pggan_sets"].overrides["inference"]
    ]
    assert spec.generators["pggan_non_tumour"].variants == ["non_tumour.yaml"]


def test_calibrated_grid_dry_run_wires_setups_and_names_existing_ids(dry_calibrated):
    spec, records, plans = dry_calibrated
    assert len(records) == len(SETUPS) + 3  # the setups, the two ablation rows and the upper bound
    gen = Path(spec.output_dir) / "generators"
    for rec in records:
        o = rec["overrides"]
        assert o["early_stop_patience"] == 0 and o["widen_factor"] == 0.25, rec["method"]
        if rec["method"].startswith("(7)"):
            assert o["synthetic_datalist"] == str(
                gen / "munit_selected" / "calibrated_phantom_8_patients" / "eval" / "selected" / "datalist.json"
            )
    _check_ids_and_expressions(spec, records, plans)
    # every generator gets the 8-patient subset, and no override names the whole phantom's datalist (its 80 training
    # patients would leak into the classic-DA draws, the GAN counts, the discarding and the pools)
    split = plans["real_subset"].overrides["datalist"]
    assert split.startswith("$common.data.make_split_datalist(") and "mode='small'" in split
    whole = str(Path(spec.output_dir) / "data" / "calibrated_phantom_8_patients" / "datalist.json")
    for plan in plans.values():
        assert plan.overrides["datalist"].startswith("$common.data.make_split_datalist("), plan.name
        others = {k: v for k, v in plan.overrides.items() if k != "datalist"}  # the split reads it, nothing else
        assert whole not in json.dumps([others, *[s.overrides or {} for s in plan.steps]]), plan.name
    for rec in records:  # the subset, and for the upper bound every training patient
        assert rec["overrides"]["datalist"].startswith("$common.data.make_split_datalist(")
        mode = "full" if rec["method"] == "Upper bound (80 patients)" else "small"
        assert f"mode='{mode}'" in rec["overrides"]["datalist"], rec["method"]
        assert whole not in json.dumps({k: v for k, v in rec["overrides"].items() if k != "datalist"}), rec["method"]


def test_real_subset_step_makes_the_phantom_on_a_fresh_output(dry, tmp_path):
    """The chain's first step runs before anything has made the phantom (no split prepares it in this grid): its
    `initialize` must, or its copy of the real slices finds no datalist."""
    spec, _, plans, _ = dry
    plan = plans["real_subset"]
    small = {**spec.vars["phantom_args"], "num_patients": 6, "cases_per_patient": 1, "image_size": 16}
    small["split_fractions"] = [0.5, 0.17, 0.33]
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "classification" / "configs" / "inference.yaml"))
    eval_dir = tmp_path / "eval"
    parser.update(
        {**plan.overrides, "dataset_dir": str(tmp_path / "data"), "phantom_args": small, "output_dir": str(eval_dir)}
    )
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("inference")
    copied = json.loads((eval_dir / "real" / "datalist.json").read_text())
    whole = json.loads((tmp_path / "data" / "datalist.json").read_text())
    assert len(copied["training"]) == len(whole["training"]) > 0
