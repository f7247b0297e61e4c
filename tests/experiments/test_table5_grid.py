"""The Table 5 grid (Han, paper 003 sec. 6.2.2 / 6.3.2): detection with real scans only vs + 1x/2x/3x 3D MCGAN
augmentation without/with the l1 loss, as one ``scripts/run_experiment.py`` grid."""

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml
from common.data.splits import split_counts
from common.evaluation import run_for_each
from common.experiments import GridRunner, load_grid, parse_grid
from common.experiments.detection_calibration import DETECTION_FAMILIES
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "scripts" / "experiments" / "mcgan_detection_table5.yaml"
METHODS = [
    "real images",
    "+ 1x MCGAN",
    "+ 2x MCGAN",
    "+ 3x MCGAN",
    "+ 1x MCGAN w/ l1",
    "+ 2x MCGAN w/ l1",
    "+ 3x MCGAN w/ l1",
]


def _expected_metric_keys() -> list[str]:
    """The flat metrics.json keys of bundles/detection's evaluate overlay (merged on train.yaml) that Table 5
    reports, in Table 5's order."""
    configs = REPO / "bundles" / "detection" / "configs"
    cfg = {
        k: v
        for name in ("train.yaml", "evaluate.yaml")
        for k, v in yaml.safe_load((configs / name).read_text()).items()
    }
    keys = ["cpm"] + [f"sens@{float(r):g}" for r in cfg["fp_rates"]]
    for attribute in ("size", "attenuation"):
        keys += [f"cpm_{attribute}_{v}" for v in cfg["attribute_values"][attribute]]
    return keys


def _method(name: str) -> tuple[str | None, int | None]:
    """(generator, ratio) of a method name."""
    if name == "real images":
        return None, None
    return ("mcgan_l1" if "l1" in name else "mcgan"), int(name.split()[1][0])


def test_grid_parses_with_table5_methods_metrics_and_generators(tmp_path):
    spec = load_grid(GRID, root=REPO)
    assert [m.name for m in spec.methods] == METHODS
    assert [m.name for m in spec.metrics] == _expected_metric_keys()
    assert [m.label for m in spec.metrics][-3:] == ["Solid", "Part-solid", "GGN"]
    assert all(m.higher_is_better for m in spec.metrics)
    assert set(spec.generators) == {"mcgan", "mcgan_l1"}
    for name, g in spec.generators.items():
        assert Path(g.bundle) == REPO / "bundles" / "mcgan_3d" and g.per_dataset
        assert g.variants == (["small.yaml", "l1.yaml"] if name == "mcgan_l1" else ["small.yaml"])
        assert g.outputs == {f"augmented_{r}x": f"synthetic_{r}x/datalist.json" for r in (1, 2, 3)}
        assert g.overrides["ratios"] == [1, 2, 3] and "run_for_each" in g.overrides["inference"][0]
    # eq. 2 really is the l1 variant: lambda_l1 100 (eq. 1: 0 in train.yaml)
    l1 = yaml.safe_load((REPO / "bundles" / "mcgan_3d" / "configs" / "variants" / "l1.yaml").read_text())
    assert l1["lambda_l1"] > 0


def test_dry_run_substitutes_each_ratio_and_loss_and_equal_iterations(tmp_path):
    spec = load_grid(GRID, root=REPO)
    spec.output_dir = str(tmp_path / "out")
    lines: list[str] = []
    records = GridRunner(spec, dry_run=True, log=lines.append).run()
    assert not (tmp_path / "out").exists()
    seeds = yaml.safe_load(GRID.read_text())["seeds"]
    assert sorted(r["method"] for r in records) == sorted(METHODS * len(seeds)) and len(seeds) == 5
    assert {r["status"] for r in records} == {"dry_run"}
    gen_cmds = [s for s in lines if "mcgan_3d/configs" in s]
    assert len(gen_cmds) == 4  # two generators x (training, inference)
    assert sum("l1.yaml" in s for s in gen_cmds) == 2 and all("/generators/mcgan_l1/" in s for s in gen_cmds[2:])
    phantom = yaml.safe_load(GRID.read_text())["vars"]["phantom_args"]
    iterations = set()
    for rec in records:
        over = rec["overrides"]
        gen, ratio = _method(rec["method"])
        assert over["dataset_dir"] == str(tmp_path / "out" / "data" / "phantom")
        assert over["phantom_args"] == phantom and over["learning_rate"] == 0.01
        if gen is None:
            assert "augmented_datalist" not in over
        else:
            expected = (
                tmp_path / "out" / "generators" / gen / "phantom" / "eval" / f"synthetic_{ratio}x" / "datalist.json"
            )
            assert over["augmented_datalist"] == str(expected)
        assert any("detection/configs/train.yaml" in c and "variants" not in c for c in rec["commands"])
        # the thesis fixes SGD steps: epoch_length x max_epochs is the same for every method, whatever its data
        iterations.add(over["epoch_length"] * over["max_epochs"])
    assert iterations == {400}


class _Job:
    def __init__(self, out):
        self.ratio, self.output_dir, self.calls = 1, Path(out), []

    def run(self):
        self.calls.append((self.ratio, self.output_dir))
        return self.ratio * 10


def test_run_for_each_sets_formats_calls_and_restores(tmp_path):
    job = _Job(tmp_path / "base")
    out = run_for_each(job, "ratio", [1, 3], output_dir=str(tmp_path / "s_{ratio}x"))
    assert out == [10, 30]
    assert job.calls == [(1, tmp_path / "s_1x"), (3, tmp_path / "s_3x")]
    assert all(isinstance(p, Path) for _, p in job.calls)  # a Path attribute stays a Path
    assert job.ratio == 1 and job.output_dir == tmp_path / "base"
    with pytest.raises(AttributeError, match="nope"):
        run_for_each(job, "nope", [1])
    with pytest.raises(ValueError, match="at least one"):
        run_for_each(job, "ratio", [])


@pytest.mark.slow
def test_reduced_table5_grid_end_to_end(tmp_path):
    """The grid with the real bundles at the smallest sizes: both bundles' tiny.yaml, 4 phantom scans of 32^3
    (2 training, 2 test), 1 MCGAN iteration, 2 detector iterations per method, and three of the seven methods (no
    augmentation, one of each generator: the dry run above checks all seven's overrides): 10 bundle commands of
    ~10 s start-up each, hence `slow`."""
    data = yaml.safe_load(GRID.read_text())
    data["output_dir"] = str(tmp_path / "out")
    data["seeds"] = [0]
    kept = ["real images", "+ 1x MCGAN", "+ 3x MCGAN w/ l1"]
    data["methods"] = [m for m in data["methods"] if m["name"] in kept]
    data["vars"]["phantom_args"].update(num_cases=4, image_size=32)
    data["vars"].update(detector_epoch_length=2, detector_epochs=1, mcgan_epoch_length=1, mcgan_epochs=1)
    data["common_variants"] = ["tiny.yaml"]
    for key in ("backbone_channels", "fpn_channels", "representation_size"):
        data["overrides"].pop(key)
    data["overrides"]["infer_roi_size"] = [32, 32, 32]
    for name, generator in data["generators"].items():
        generator["variants"] = ["tiny.yaml", "l1.yaml"] if name == "mcgan_l1" else ["tiny.yaml"]
    spec = parse_grid(data, source=str(GRID), root=REPO)
    records = GridRunner(spec, python=sys.executable, log=lambda s: None).run()
    assert [r["status"] for r in records] == ["ok"] * 3, [r.get("error") for r in records]
    out = Path(spec.output_dir)

    # each generator wrote 1x/2x/3x sets of the 2 training scans, from one checkpoint; eq. 1 and eq. 2 differ
    shas = {}
    for gen in ("mcgan", "mcgan_l1"):
        for r in (1, 2, 3):
            path = out / "generators" / gen / "phantom" / "eval" / f"synthetic_{r}x" / "datalist.json"
            d = json.loads(path.read_text())
            assert d["ratio"] == r and len(d["training"]) == 2 * r
            assert all((path.parent / e["image"]).is_file() and e["synthetic"] for e in d["training"])
            shas.setdefault(gen, set()).add(d["generator"]["checkpoint_sha256"])
    assert len(shas["mcgan"]) == len(shas["mcgan_l1"]) == 1 and shas["mcgan"] != shas["mcgan_l1"]

    # the detector trained on real + augmented scans: its training validated and loaded the augmented datalist
    log = (out / "runs" / "phantom" / "3x_mcgan_w__l1" / "seed0" / "logs" / "training.log").read_text()
    assert "synthetic_3x/datalist.json' is valid: training=6 entries" in log
    metrics = json.loads((out / "runs" / "phantom" / "1x_mcgan" / "seed0" / "eval" / "metrics.json").read_text())
    assert metrics["augmented_datalist"].endswith("mcgan/phantom/eval/synthetic_1x/datalist.json")
    assert set(_expected_metric_keys()) <= set(metrics)

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows if r["metric"] == "cpm"} == set(kept)
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows if r["metric"] == "cpm")
    table = (out / "tables.md").read_text()
    assert "| Method | Phantom: CPM | Phantom: 1/8 |" in table and "Phantom: GGN |" in table
    assert all(f"| {m} |" in table for m in kept) and "| + 2x MCGAN |" not in table


def test_generator_overrides_find_the_sweep(tmp_path):
    """The grid's `inference` override of mcgan_3d finds `run_for_each` in the runtime package `common.evaluation`
    with the bundle's own imports, no tool package needed (checked by parsing, without running)."""
    spec = load_grid(GRID, root=REPO)
    overrides = dict(spec.generators["mcgan"].overrides)
    assert not any(k.startswith("+") for k in overrides)
    overrides["check"] = "$common.evaluation.run_for_each"
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(overrides))
    configs = REPO / "bundles" / "mcgan_3d" / "configs"
    files = [str(configs / "inference.yaml"), str(configs / "variants" / "small.yaml"), str(path)]
    parser = ConfigParser(ConfigParser.load_config_files(files))
    parser.parse()
    assert parser.get_parsed_content("check") is run_for_each


CALIBRATED_GRID = REPO / "scripts" / "experiments" / "mcgan_detection_calibrated_table5.yaml"


def test_calibrated_grid_is_table5_on_the_calibrated_phantom_with_the_calibrations_detector():
    """The calibrated Table 5 grid: the Table 5 grid's methods, metrics and generators, on the `calibrated_detection`
    chest CT phantom with 8 training and 40 test scans, the calibration's detector and step count, 5 seeds, and the
    MCGANs evaluated on the test nodules against the training nodules (the real-vs-real reference)."""
    base, spec = load_grid(GRID, root=REPO), load_grid(CALIBRATED_GRID, root=REPO)
    methods, (bound,) = spec.methods[:-1], spec.methods[-1:]
    assert [m.name for m in methods] == METHODS
    assert [(m.name, m.overrides) for m in methods] == [(m.name, m.overrides) for m in base.methods]
    # the upper bound: real images on the 8 training scans and 72 more of the same phantom, the same 40 test scans
    assert bound.reference and not any(m.reference for m in methods)
    assert bound.overrides == {
        "datalist": "${generators.upper_bound_data.datalist}",
        "max_epochs": "${vars.upper_bound_epochs}",
    }
    data = spec.generators.pop("upper_bound_data")
    assert not data.train and data.per_dataset and data.overrides["phantom_kind"] == "chest_ct"
    assert (
        "add_training_patients(@datalist, " in data.overrides["inference"][0]
        and ", 72, " in data.overrides["inference"][0]
    )
    assert [m.name for m in spec.metrics] == [m.name for m in base.metrics]
    assert spec.blocks == "seeds" and spec.seeds == [0, 1, 2, 3, 4]
    phantom = spec.vars["phantom_args"]
    assert phantom["difficulty"] == "calibrated_detection" and spec.overrides["phantom_kind"] == "chest_ct"
    assert split_counts(phantom["num_cases"], phantom["split_fractions"]) == [8, 0, 40]
    family = DETECTION_FAMILIES["detection_3d"]
    assert phantom["image_size"] == family["image_size"] and family["num_small_patients"] == 8
    detector = {k: v for k, v in family["overrides"].items() if k != "augment_prob"}  # the thesis's classic DA is on
    assert {k: spec.overrides[k] for k in detector} == detector and "augment_prob" not in spec.overrides
    # the calibration's schedules: every method the baseline's steps, the upper bound (ten times the scans) longer
    assert spec.vars["detector_epoch_length"] * spec.vars["detector_epochs"] == family["iterations"]
    upper_steps = spec.vars["detector_epoch_length"] * spec.vars["upper_bound_epochs"]
    assert upper_steps == family["iterations"] * family["upper_bound_steps_factor"] > family["iterations"]
    assert set(spec.generators) == set(base.generators)
    for name, g in spec.generators.items():
        b = base.generators[name]
        assert (g.variants, g.outputs, g.per_dataset, g.seed) == (b.variants, b.outputs, b.per_dataset, b.seed)
        assert g.overrides["inference"] == b.overrides["inference"]
        assert g.overrides["phantom_args"] == "${vars.phantom_args}"
        assert g.evaluate_config == "configs/evaluate.yaml"
        assert g.evaluate_overrides == {"eval_sections": ["test"], "reference_sections": ["training"]}
