"""Grid runner on fake bundles: commands, CSV rows, tables, statistics, plots, resume, failures, generator
substitution, data subsets, the exit status of the command line. The real ``python -m monai.bundle run`` on the
commands the runner builds is tested by test_segmentation_grid.py's end-to-end run."""

import csv
import importlib.util
import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from common.experiments import GridError, GridRunner, build_reports, parse_grid, read_metrics

from tests.experiments.helpers import n_calls, write_yaml

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
OUTS = {"synthetic_datalist": "synthetic/datalist.json"}


def _grid(tmp_path, down, gen, **extra):
    data = {
        "name": "fake grid",
        "output_dir": str(tmp_path / "out"),
        "bundle": str(down),
        "seeds": [0, 1],
        "metrics": ["acc", {"name": "hd95", "label": "HD95"}, "syn_count"],
        "datasets": [{"name": "A"}, {"name": "B", "overrides": {"bonus": 0.2}}],
        "methods": [
            {"name": "base"},
            {"name": "good", "variants": ["good.yaml"]},
            {
                "name": "syn 50%",
                "variants": ["synthetic.yaml"],
                "overrides": {"synthetic_datalist": "${generators.g.synthetic_datalist}"},
            },
        ],
        "generators": {
            "g": {"bundle": str(gen), "overrides": {"num_samples": 7}, "per_dataset": True, "outputs": OUTS}
        },
        "ratio_plot": {"x_label": "synthetic ratio (%)", "baseline": "base", "curves": {"G": {"syn 50%": 50}}},
    }
    data.update(extra)
    return parse_grid(data, source="fake.yaml")


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_grid_results_tables_statistics_plots_and_resume(fake_env, tmp_path):
    python, calls, down, gen = fake_env
    spec = _grid(tmp_path, down, gen)
    out = Path(spec.output_dir)
    records = GridRunner(spec, python=python, log=lambda s: None).run()
    assert [r["status"] for r in records] == ["ok"] * 12
    # 2 generators (per data set) x 2 commands + 12 runs x 2 commands
    assert n_calls(calls) == 4 + 24

    rows = _read_csv(out / "results.csv")
    assert len(rows) == 12 * 3  # numeric metrics only ("note" is text)
    assert {r["metric"] for r in rows} == {"acc", "hd95", "syn_count"}
    val = {(r["dataset"], r["method"], int(r["seed"]), r["metric"]): float(r["value"]) for r in rows}
    assert val[("A", "good", 1, "acc")] == pytest.approx(0.5 + 0.1 + 0.01)
    assert val[("B", "base", 0, "acc")] == pytest.approx(0.5 + 0.02)  # data set override bonus 0.2
    # the generator's datalist (7 entries) reached the synthetic method, and only it
    assert val[("A", "syn 50%", 0, "syn_count")] == 7 and val[("A", "base", 0, "syn_count")] == 0
    over = yaml.safe_load((out / "runs" / "a" / "syn_50pct" / "seed0" / "overrides.yaml").read_text())
    assert over["synthetic_datalist"] == str(out / "generators" / "g" / "a" / "eval" / "synthetic" / "datalist.json")
    assert over["dataset_dir"] == str(out / "data" / "a")

    tables = (out / "tables.md").read_text()
    good_row = next(line for line in tables.splitlines() if line.startswith("| good |"))
    cells = [c.strip() for c in good_row.strip("|").split("|")][1:]
    # A: acc = 0.6 + 0.01 seed -> mean 0.605, sample std 0.00707; best acc and lowest HD95 (9.5) are in bold
    assert cells[0] == "**0.6050 ± 0.0071**"
    assert cells[1] == "**9.5000 ± 0.7071**"
    base_row = next(line for line in tables.splitlines() if line.startswith("| base |"))
    assert "**" not in base_row.split("|")[2] and "0.5050 ± 0.0071" in base_row
    assert re.search(r"\| G \| 50 \| 0\.5550 ± 0\.0071", tables)  # the ratio table

    stats = json.loads((out / "statistics.json").read_text())
    per_a = stats["metrics"]["acc"]["per_dataset"]["A"]
    # seeds as blocks: good > syn > base in both: R = (3, 1, 2); chi2 = 12*2/(3*4) * (9+1+4-12) = 4, p = e^-2
    assert per_a["nemenyi"]["average_ranks"] == [3.0, 1.0, 2.0]
    assert per_a["friedman"]["statistic"] == pytest.approx(4.0)
    assert per_a["friedman"]["pvalue"] == pytest.approx(0.1353352832366127)
    # HD95 is lower-is-better: the same order
    assert stats["metrics"]["hd95"]["per_dataset"]["A"]["nemenyi"]["average_ranks"] == [3.0, 1.0, 2.0]
    assert stats["metrics"]["acc"]["across_datasets"]["blocks"] == ["A", "B"]
    assert "Friedman chi2 = 4.0000" in (out / "statistics.md").read_text()

    for name in ("bars_acc", "bars_hd95", "cd_acc_all", "cd_acc_a", "ratio_acc"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == PNG, name

    # re-run: every run is complete, nothing is executed
    before = n_calls(calls)
    GridRunner(spec, python=python, log=lambda s: None).run()
    assert n_calls(calls) == before
    # a run killed after training: only its evaluating step runs again
    (out / "runs" / "b" / "good" / "seed1" / "run.json").unlink()
    GridRunner(spec, python=python, log=lambda s: None).run()
    new = [json.loads(x) for x in calls.read_text().splitlines()[before:]]
    assert [c["workflow"] for c in new] == ["evaluating"] and new[0]["seed"] == 1

    # the reports rebuild from the CSV and grid.json alone
    (out / "tables.md").unlink()
    build_reports(out, log=lambda s: None)
    assert (out / "tables.md").read_text() == tables


def test_failed_runs_are_recorded_and_the_grid_goes_on(fake_env, tmp_path):
    python, calls, down, gen = fake_env
    spec = _grid(
        tmp_path,
        down,
        gen,
        seeds=[0],
        datasets=[{"name": "A"}],
        methods=[
            {"name": "broken", "variants": ["fail.yaml"]},
            {"name": "typo", "variants": ["nope.yaml"]},
            {"name": "base"},
            {"name": "needs gen", "overrides": {"synthetic_datalist": "${generators.g.synthetic_datalist}"}},
        ],
        generators={"g": {"bundle": str(gen), "variants": ["broken.yaml"], "outputs": OUTS}},
        ratio_plot=None,
    )
    out = Path(spec.output_dir)
    records = GridRunner(spec, python=python, log=lambda s: None).run()
    assert [r["status"] for r in records] == ["failed", "failed", "ok", "failed"]
    assert "boom in evaluating" in records[0]["error"]
    assert "missing config file" in records[1]["error"] and "nope.yaml" in records[1]["error"]
    assert "generator g failed" in records[3]["error"] and "boom in training" in records[3]["error"]
    rows = _read_csv(out / "results.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["method"] for r in failed] == ["broken", "typo", "needs gen"] and failed[0]["metric"] == ""
    assert len([r for r in rows if r["status"] == "ok"]) == 3
    tables = (out / "tables.md").read_text()
    assert "## Failed runs" in tables and "broken" in tables and "–" in tables
    # a failed run is retried on the next invocation; the complete one is not
    before = n_calls(calls)
    GridRunner(spec, python=python, log=lambda s: None).run()
    workflows = [json.loads(x)["workflow"] for x in calls.read_text().splitlines()[before:]]
    assert workflows == ["training", "evaluating"]  # the generator's training (fails again) and broken's eval


def test_dry_run_writes_nothing(fake_env, tmp_path):
    python, calls, down, gen = fake_env
    spec = _grid(tmp_path, down, gen)
    lines = []
    records = GridRunner(spec, python=python, dry_run=True, log=lines.append).run()
    assert {r["status"] for r in records} == {"dry_run"}
    assert not Path(spec.output_dir).exists() and n_calls(calls) == 0
    assert any("monai.bundle run training" in s and "good.yaml" in s for s in lines)


def test_commands_merge_the_evaluate_overlay_on_train_yaml(fake_env, tmp_path):
    """training: [train.yaml, variants..., overrides.yaml]; evaluating: [train.yaml, evaluate.yaml, variants...,
    overrides.yaml]; a generator: [train.yaml | inference.yaml, variants..., overrides.yaml]."""
    python, calls, down, gen = fake_env
    spec = _grid(tmp_path, down, gen, seeds=[0], datasets=[{"name": "A", "variants": ["synthetic.yaml"]}])
    runner = GridRunner(spec, python=python, log=lambda s: None)
    plans = {p.method: p for p in runner.run_plans()}
    plan, cfg = plans["good"], down / "configs"
    variants = [str(cfg / "variants" / "synthetic.yaml"), str(cfg / "variants" / "good.yaml")]
    overrides = str(plan.run_dir / "overrides.yaml")
    train, evaluate = plan.command(plan.steps[0], python), plan.command(plan.steps[1], python)
    assert train[:5] == [python, "-m", "monai.bundle", "run", "training"]
    assert evaluate[:5] == [python, "-m", "monai.bundle", "run", "evaluating"]
    assert train[5] == evaluate[5] == "--config_file"
    assert train[6] == "[" + ",".join(f"'{f}'" for f in [str(cfg / "train.yaml"), *variants, overrides]) + "]"
    assert evaluate[6] == (
        "["
        + ",".join(f"'{f}'" for f in [str(cfg / "train.yaml"), str(cfg / "evaluate.yaml"), *variants, overrides])
        + "]"
    )
    assert evaluate[7:] == ["--ckpt_dir", str(plan.run_dir / "models"), "--output_dir", str(plan.run_dir / "eval"),
                            "--seed", "0"]  # fmt: skip
    (gplan,) = runner.generator_plans()
    gcfg = gen / "configs"
    assert [s.workflow for s in gplan.steps] == ["training", "inference"]
    assert gplan.config_files(gplan.steps[1]) == [str(gcfg / "inference.yaml"), str(gplan.run_dir / "overrides.yaml")]
    # the fake bundle merges the files in this order: evaluating sees train.yaml's ids and the overlay's
    GridRunner(spec, python=python, log=lambda s: None).run()
    evaluated = [json.loads(x) for x in calls.read_text().splitlines() if '"evaluating"' in x]
    assert evaluated and all(
        [Path(f).name for f in c["files"][:2]] == ["train.yaml", "evaluate.yaml"] for c in evaluated
    )


def test_inference_runs_are_extra_inference_commands(fake_env, tmp_path):
    python, calls, down, gen = fake_env
    outputs = {**OUTS, "extra_datalist": "extra/datalist.json"}
    runs = [{}, {"synthetic_subdir": "extra", "num_samples": "${vars.n}"}]
    spec = _grid(
        tmp_path,
        down,
        gen,
        seeds=[0],
        vars={"n": 3},
        datasets=[{"name": "A"}],
        methods=[{"name": "extra", "overrides": {"synthetic_datalist": "${generators.g.extra_datalist}"}}],
        generators={
            "g": {"bundle": str(gen), "overrides": {"num_samples": 7}, "outputs": outputs, "inference_runs": runs}
        },
        ratio_plot=None,
    )
    (rec,) = GridRunner(spec, python=python, log=lambda s: None).run()
    assert rec["status"] == "ok" and rec["metrics"]["syn_count"] == 3  # the second run's output, its own override
    run_dir = Path(spec.output_dir) / "generators" / "g"
    assert len(json.loads((run_dir / "eval" / "synthetic" / "datalist.json").read_text())["training"]) == 7
    assert yaml.safe_load((run_dir / "overrides_inference_1.yaml").read_text()) == {
        "synthetic_subdir": "extra",
        "num_samples": 3,
    }
    assert (run_dir / "logs" / "inference.log").is_file() and (run_dir / "logs" / "inference_1.log").is_file()
    workflows = [json.loads(x) for x in calls.read_text().splitlines()]
    assert [c["workflow"] for c in workflows[:3]] == ["training", "inference", "inference"]
    assert Path(workflows[2]["files"][-1]).name == "overrides_inference_1.yaml"
    with pytest.raises(GridError, match="inference_runs"):
        _grid(tmp_path, down, gen, generators={"g": {"bundle": str(gen), "inference_runs": {}}})


def test_cli_exits_non_zero_after_the_reports_when_a_run_failed(fake_env, tmp_path, capsys):
    python, calls, down, gen = fake_env
    module = _cli_module()
    grid = tmp_path / "g.yaml"
    methods = "[base, {name: broken, variants: [fail.yaml]}]"
    grid.write_text(f"name: g\noutput_dir: {tmp_path / 'out'}\nbundle: {down}\ndatasets: [A]\nmethods: {methods}\n")
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(grid), "--python", python])
    assert exit_info.value.code == 1
    assert "1 failed: A | broken | seed 0" in capsys.readouterr().err
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "## Failed runs" in tables and "| base |" in tables
    # a grid whose runs all succeed exits normally
    grid.write_text(f"name: g\noutput_dir: {tmp_path / 'out2'}\nbundle: {down}\ndatasets: [A]\nmethods: [base]\n")
    assert module.run(str(grid), python=python) == str(tmp_path / "out2")
    # a failed generator fails the command too, even when no run uses it
    grid.write_text(
        f"name: g\noutput_dir: {tmp_path / 'out3'}\nbundle: {down}\ndatasets: [A]\nmethods: [base]\n"
        f"generators: {{g: {{bundle: {gen}, variants: [broken.yaml]}}}}\n"
    )
    with pytest.raises(SystemExit):
        module.run(str(grid), python=python)
    assert "generator g" in capsys.readouterr().err


def _cli_module():
    spec_file = importlib.util.spec_from_file_location("run_experiment", REPO / "scripts" / "run_experiment.py")
    module = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(module)
    return module


def _bundle_value(expression: str, **ids) -> object:
    """``expression`` evaluated as the ``datalist`` id of a bundle config holding ``ids``."""
    from monai.bundle import ConfigParser

    return ConfigParser({"imports": ["$import common"], **ids, "datalist": expression}).get_parsed_content("datalist")


def _patient_datalist(folder: Path) -> Path:
    """A datalist of 16 training, 8 validation and 8 test patients (2 entries each, half of them positive)."""
    data = {}
    for section, n in (("training", 16), ("validation", 8), ("test", 8)):
        data[section] = []
        for p in range(n):
            for j in range(2):
                name = f"{section}_{p}_{j}.nii.gz"
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(b"")
                data[section].append({"image": name, "class": int(p % 2 == 0 and j == 0), "patient": f"{section}{p}"})
    path = folder / "datalist.json"
    path.write_text(json.dumps(data))
    return path


def test_split_gives_the_generator_exactly_the_downstream_training_entries(fake_env, tmp_path):
    """A data set's `split` is the `datalist` of its runs (their own split off) and of its generators: the
    generator trains on the downstream training subset, not on the full training section."""
    python, calls, down, gen = fake_env
    spec = _grid(
        tmp_path,
        down,
        gen,
        seeds=[0, 1],
        datasets=[{"name": "A"}, {"name": "A_s", "split": {"mode": "small", "fraction": 0.25}}],
        methods=[{"name": "base"}, {"name": "good", "variants": ["good.yaml"]}, {"name": "syn"}],
        ratio_plot=None,
    )
    runner = GridRunner(spec, python=python, log=lambda s: None)
    gplans = {p.dataset: p for p in runner.generator_plans()}
    assert "datalist" not in gplans["A"].overrides  # the full data set: the bundles' own datalist
    runs = [p for p in runner.run_plans() if p.dataset == "A_s"]
    assert len(runs) == 6 and all(p.overrides["split_mode"] == "full" for p in runs)
    assert all("datalist" not in p.overrides for p in runner.run_plans() if p.dataset == "A")

    # evaluate the expressions as the bundles do, on a data set with patients
    dataset_dir = Path(runner.dataset_dir("a_s"))
    source = _patient_datalist(dataset_dir)
    expressions = [gplans["A_s"].overrides["datalist"]] + [p.overrides["datalist"] for p in runs]
    assert all(e.startswith("$common.data.make_split_datalist(") for e in expressions)
    files = [_bundle_value(e, dataset_dir=str(dataset_dir), phantom_kind="none", phantom_args={}) for e in expressions]
    assert files[0] == str(gplans["A_s"].run_dir / "split_datalist.json")
    assert files[1] == str(runs[0].run_dir / "split_datalist.json")

    def sections(path):
        data = json.loads(Path(path).read_text())
        base = Path(path).parent
        return {
            s: sorted(os.path.realpath(base / e["image"]) for e in data[s]) for s in ("training", "validation", "test")
        }

    generator, *downstream = [sections(f) for f in files]
    full = sections(source)
    assert all(d == generator for d in downstream)  # every method and seed: the generator's data
    assert 0 < len(generator["training"]) < len(full["training"])  # a subset: 1/4 of the patients of each class
    assert len(generator["training"]) == 2 * 4 and generator["test"] == full["test"]

    # the generator must be one per data set, and the split is the only source of `datalist`
    with pytest.raises(GridError, match="per_dataset"):
        _grid(tmp_path, down, gen, datasets=[{"name": "A", "split": {"mode": "small"}}],
              generators={"g": {"bundle": str(gen), "outputs": OUTS}})  # fmt: skip
    with pytest.raises(GridError, match="split.datalist"):
        _grid(tmp_path, down, gen, datasets=[{"name": "A", "split": {"mode": "small"}, "overrides": {"datalist": "x"}}])
    with pytest.raises(GridError, match="its own `split`"):
        _grid(tmp_path, down, gen, methods=[{"name": "M", "split": {"mode": "full"}, "overrides": {"datalist": "x"}}],
              ratio_plot=None)  # fmt: skip
    with pytest.raises(GridError, match="mode"):
        _grid(tmp_path, down, gen, datasets=[{"name": "A", "split": {"mode": "tiny"}}])


def test_a_method_split_trains_an_upper_bound_on_every_training_patient(fake_env, tmp_path):
    """A method's own `split` replaces the data set's in its runs only: the upper bound trains on the whole training
    section, is tested on the same test patients, and the generator still sees the subset."""
    python, calls, down, gen = fake_env
    spec = _grid(
        tmp_path,
        down,
        gen,
        seeds=[0],
        datasets=[{"name": "A_s", "split": {"mode": "small", "fraction": 0.25}}],
        methods=[{"name": "base"}, {"name": "Upper bound", "split": {"mode": "full"}, "reference": True}],
        ratio_plot=None,
    )
    runner = GridRunner(spec, python=python, log=lambda s: None)
    gplan = next(p for p in runner.generator_plans() if p.dataset == "A_s")
    runs = {p.method: p for p in runner.run_plans()}
    assert all(p.overrides["split_mode"] == "full" for p in runs.values())
    dataset_dir = Path(runner.dataset_dir("a_s"))
    source = _patient_datalist(dataset_dir)
    expressions = [
        gplan.overrides["datalist"],
        runs["base"].overrides["datalist"],
        runs["Upper bound"].overrides["datalist"],
    ]
    files = [_bundle_value(e, dataset_dir=str(dataset_dir), phantom_kind="none", phantom_args={}) for e in expressions]

    def patients(path):
        data = json.loads(Path(path).read_text())
        return {s: sorted({e["patient"] for e in data[s]}) for s in ("training", "validation", "test")}

    generator, base, bound = (patients(f) for f in files)
    full = patients(source)
    assert base == generator and len(generator["training"]) == 4  # the subset: 1/4 of the 16 training patients
    assert bound["training"] == full["training"] and len(bound["training"]) == 16  # every training patient
    assert bound["test"] == base["test"] == full["test"]


def test_read_metrics_flattens_nested_objects(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"acc": 0.5, "nested": {"x": 2, "y": {"z": 1}}, "flag": True, "text": "a", "n": None}))
    assert read_metrics(path) == {"acc": 0.5, "nested/x": 2.0, "nested/y/z": 1.0}
    path.write_text(json.dumps({"text": "a"}))
    with pytest.raises(ValueError, match="no numeric"):
        read_metrics(path)


def test_generators_chain_train_only_and_inference_only_with_run_variants(fake_env, tmp_path):
    """A generator that only trains (inference_runs: []), then one that only runs inference (train: false) on the
    first one's checkpoint, with a variant file of its inference run (MC-SG on M-SG/C-SG in phantom_stylegan2.yaml);
    a failed first generator fails the second before it starts."""
    python, calls, down, gen = fake_env
    (gen / "configs" / "variants" / "mc.yaml").write_text("synthetic_subdir: mc\n")
    generators = {
        "t": {"bundle": str(gen), "inference_runs": []},
        "i": {
            "bundle": str(gen),
            "train": False,
            "overrides": {"checkpoint": "${generators.t.ckpt_dir}/model.json"},
            "inference_runs": [{"variants": ["mc.yaml"], "num_samples": 3}],
            "outputs": {"synthetic_datalist": "mc/datalist.json"},
        },
    }
    methods = [{"name": "syn", "overrides": {"synthetic_datalist": "${generators.i.synthetic_datalist}"}}]
    spec = _grid(tmp_path, down, gen, seeds=[0], datasets=["A"], methods=methods, generators=generators,
                 ratio_plot=None)  # fmt: skip
    runner = GridRunner(spec, python=python, log=lambda s: None)
    (rec,) = runner.run()
    assert rec["status"] == "ok" and rec["metrics"]["syn_count"] == 3
    t_rec, i_rec = runner.generator_records
    assert t_rec["status"] == i_rec["status"] == "ok" and t_rec["outputs"]["ckpt_dir"].endswith("generators/t/models")
    done = [json.loads(x) for x in calls.read_text().splitlines()]
    assert [c["workflow"] for c in done[:2]] == ["training", "inference"]
    assert [Path(f).name for f in done[1]["files"]] == ["inference.yaml", "mc.yaml", "overrides.yaml",
                                                        "overrides_inference.yaml"]  # fmt: skip
    i_over = yaml.safe_load((Path(spec.output_dir) / "generators" / "i" / "overrides.yaml").read_text())
    assert i_over["checkpoint"] == str(Path(spec.output_dir) / "generators" / "t" / "models" / "model.json")

    generators["t"]["variants"] = ["broken.yaml"]
    spec = _grid(tmp_path, down, gen, output_dir=str(tmp_path / "out2"), seeds=[0], datasets=["A"], methods=methods,
                 generators=generators, ratio_plot=None)  # fmt: skip
    runner = GridRunner(spec, python=python, log=lambda s: None)
    (rec,) = runner.run()
    assert [r["status"] for r in runner.generator_records] == ["failed", "failed"]
    assert "generator t failed" in runner.generator_records[1]["error"] and rec["status"] == "failed"


def test_per_test_image_blocks(fake_env, tmp_path):
    """blocks: test_images: the Friedman/Nemenyi blocks are the test images (each image's value averaged over the
    seeds), the tables' mean ± sem are over the images; a metric without per-image values stays over seeds."""
    python, calls, down, gen = fake_env
    per_image = {
        "best": {"i1": 0.9, "i2": 0.8, "i3": 0.7, "i4": 0.95},
        "mid": {"i1": 0.5, "i2": 0.6, "i3": 0.4, "i4": 0.55},
        "worst": {"i1": 0.1, "i2": 0.2, "i3": 0.3, "i4": 0.25},
    }
    methods = [{"name": m, "overrides": {"per_image": v}} for m, v in per_image.items()]
    spec = _grid(tmp_path, down, gen, datasets=["A"], methods=methods, generators=None, ratio_plot=None,
                 metrics=["acc", "hd95"], blocks="test_images", error="sem")  # fmt: skip
    out = Path(spec.output_dir)
    records = GridRunner(spec, python=python, log=lambda s: None).run()
    assert all(r["status"] == "ok" for r in records) and records[0]["per_image"]["ids"] == ["i1", "i2", "i3", "i4"]
    rows = _read_csv(out / "per_image.csv")
    assert len(rows) == 3 * 2 * 4 and {r["image"] for r in rows} == {"i1", "i2", "i3", "i4"}

    acc = json.loads((out / "statistics.json").read_text())["metrics"]["acc"]["per_dataset"]["A"]
    # every image ranks best < mid < worst: N = 4, k = 3, R = (1, 2, 3); chi2 = 12*4/(3*4) * (1+4+9 - 12) = 8,
    # p = e^-4; CD = q_0.05 sqrt(k (k+1) / (6 N)) = 2.343 * sqrt(0.5) = 1.657: only best vs worst (2 > CD) differs
    assert acc["block_kind"] == "test images" and acc["blocks"] == ["i1", "i2", "i3", "i4"]
    assert acc["nemenyi"]["average_ranks"] == [1.0, 2.0, 3.0]
    assert acc["friedman"]["statistic"] == pytest.approx(8.0)
    assert acc["friedman"]["pvalue"] == pytest.approx(0.018315638888734)
    assert acc["nemenyi"]["critical_difference"] == pytest.approx(1.657, abs=1e-3)
    assert acc["nemenyi"]["directions"] == [[0, 0, 1], [0, 0, 0], [-1, 0, 0]]
    assert acc["nemenyi"]["scores"] == [1, 0, -1]
    hd95 = json.loads((out / "statistics.json").read_text())["metrics"]["hd95"]["per_dataset"]["A"]
    assert hd95["block_kind"] == "seeds" and hd95["blocks"] == ["0", "1"]

    tables = (out / "tables.md").read_text()
    assert "over test images for acc" in tables
    best = next(line for line in tables.splitlines() if line.startswith("| best |"))
    # mean of (0.9, 0.8, 0.7, 0.95) + 0.005 (the seeds' 0.00 and 0.01, averaged); sem = sd / 2 = 0.1109 / 2
    assert "**0.8425 ± 0.0554**" in best
    md = (out / "statistics.md").read_text()
    assert "### A (blocks = test images)" in md and "| best | 1.000 | · | 0 | + | 1 |" in md
    assert (out / "plots" / "cd_acc_a.png").read_bytes()[:8] == PNG
    # the reports rebuild from the CSVs
    (out / "tables.md").unlink()
    build_reports(out, log=lambda s: None)
    assert (out / "tables.md").read_text() == tables
    # a run that does not write the per-image file fails, naming it
    bad = _grid(tmp_path, down, gen, output_dir=str(tmp_path / "bad"), seeds=[0], datasets=["A"], methods=["x"],
                generators=None, ratio_plot=None, blocks="test_images")  # fmt: skip
    (rec,) = GridRunner(bad, python=python, log=lambda s: None).run()
    assert rec["status"] == "failed" and "per_image.json" in rec["error"]


def test_generator_evaluation_runs_last_keeps_finished_steps_and_fills_generators_md(fake_env, tmp_path):
    """Adding ``evaluate_config`` to a trained generator runs only its ``evaluating`` (train.yaml + the overlay); the
    metrics JSON becomes the generator's ``metrics`` output and a column of ``generators.md``."""
    python, calls, down, gen = fake_env
    write_yaml(gen / "configs" / "evaluate.yaml", "quality: 3.0\n")
    g = {"bundle": str(gen), "overrides": {"num_samples": 7}, "per_dataset": True, "outputs": OUTS}
    GridRunner(_grid(tmp_path, down, gen, seeds=[0]), python=python, log=lambda s: None).run()
    out = tmp_path / "out"
    assert not (out / "generators.md").exists()
    before = n_calls(calls)
    spec = _grid(tmp_path, down, gen, seeds=[0], generators={"g": {**g, "evaluate_config": "configs/evaluate.yaml"}})
    runner = GridRunner(spec, python=python, log=lambda s: None)
    records = runner.run()
    assert all(r["status"] == "ok" for r in [*records, *runner.generator_records])
    new = [json.loads(x) for x in calls.read_text().splitlines()[before:]]
    assert [c["workflow"] for c in new] == ["evaluating", "evaluating"]  # one per data set; nothing else re-ran
    assert all([Path(f).name for f in c["files"][:2]] == ["train.yaml", "evaluate.yaml"] for c in new)
    metrics = out / "generators" / "g" / "a" / "eval" / "metrics.json"
    assert runner.generator_records[0]["outputs"]["metrics"] == str(metrics)
    table = (out / "generators.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| metric |"))
    assert header == "| metric | g (A) | g (B) |"
    assert "| acc | 0.8 | 0.8 |" in table and "| syn_count | 0 | 0 |" in table
    metrics.unlink()  # an output gone: only the evaluation runs again
    before = n_calls(calls)
    GridRunner(spec, python=python, log=lambda s: None).run()
    assert [json.loads(x)["workflow"] for x in calls.read_text().splitlines()[before:]] == ["evaluating"]
    assert metrics.is_file()


def test_generator_evaluate_overrides_reach_only_its_evaluation_also_on_an_inference_only_generator(fake_env, tmp_path):
    """``evaluate_overrides`` are merged into the ``evaluating`` command alone (after the generator's overrides); an
    inference-only generator (``train: false``, another's checkpoint) may be evaluated too; an evaluation of image+mask
    pairs gets its ``mask_pairs_<generator>.png``, one of images with boxes its ``boxes_<generator>.png``."""
    python, calls, down, gen = fake_env
    write_yaml(gen / "configs" / "evaluate.yaml", "quality: 3.0\n")
    trained = {"bundle": str(gen), "per_dataset": True, "outputs": OUTS, "evaluate_config": "configs/evaluate.yaml"}
    lesion = np.zeros((8, 8), np.uint8)
    lesion[2:5, 3:6] = 1
    for name, label in (("img.nii.gz", lesion.astype(np.float32)), ("seg.nii.gz", lesion)):
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / name))
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({"training": [{"image": "img.nii.gz", "label": "seg.nii.gz"}]}))
    paired = {"mask_statistics": {}, "real_datalist": str(pairs), "synthetic_datalist": str(pairs)}
    boxes = tmp_path / "boxes.json"  # a detection datalist (CPGGAN, pix2pix): images with boxes
    boxes.write_text(json.dumps({"training": [{"image": "img.nii.gz", "box": [[3, 2, 6, 5]]}]}))
    trained["evaluate_overrides"] = {"extra_metrics": {"real_datalist": str(boxes), "synthetic_datalist": str(boxes)}}
    chained = {
        **trained,
        "train": False,
        "overrides": {"checkpoint": "${generators.g.ckpt_dir}/model.json"},
        "evaluate_overrides": {"quality": 5.0, "extra_metrics": paired},  # an image+mask pair evaluation
    }
    spec = _grid(tmp_path, down, gen, seeds=[0], datasets=[{"name": "A"}], methods=[{"name": "base"}], ratio_plot=None,
                 generators={"g": trained, "h": chained})  # fmt: skip
    runner = GridRunner(spec, python=python, log=lambda s: None)
    runner.run()
    records = {r["name"]: r for r in runner.generator_records}
    assert {r["status"] for r in records.values()} == {"ok"}
    workflows = {n: [c.split(" run ")[1].split()[0] for c in r["commands"]] for n, r in records.items()}
    assert workflows == {"g": ["training", "inference", "evaluating"], "h": ["inference", "evaluating"]}
    acc = {n: json.loads(Path(r["outputs"]["metrics"]).read_text())["acc"] for n, r in records.items()}
    assert acc == pytest.approx({"g": 0.8, "h": 1.0})  # 0.5 + 0.1 * quality: the overlay's 3.0, h's override 5.0
    h_dir = Path(spec.output_dir) / "generators" / "h" / "a"
    assert yaml.safe_load((h_dir / "overrides_evaluating.yaml").read_text())["quality"] == 5.0
    assert "quality" not in yaml.safe_load((h_dir / "overrides.yaml").read_text())
    assert not (h_dir / "overrides_inference.yaml").exists()
    # the pair evaluation gets its plot of real and synthetic pairs, g's evaluation (images with boxes) its plot of
    # boxed images
    plots = sorted(p.name for p in (Path(spec.output_dir) / "plots").glob("*_pairs_*.png"))
    assert plots == ["mask_pairs_h_a.png"]
    assert sorted(p.name for p in (Path(spec.output_dir) / "plots").glob("boxes_*.png")) == ["boxes_g_a.png"]


def test_changed_config_contents_run_again(fake_env, tmp_path):
    """Editing a variant file re-runs exactly the runs that use it (training too); a record written before config
    digests existed is trusted and logged; an unchanged grid runs nothing."""
    python, calls, down, gen = fake_env
    spec = _grid(tmp_path, down, gen, seeds=[0], datasets=[{"name": "A"}], ratio_plot=None)
    out = Path(spec.output_dir)
    GridRunner(spec, python=python, log=lambda s: None).run()
    before = n_calls(calls)
    GridRunner(spec, python=python, log=lambda s: None).run()
    assert n_calls(calls) == before
    (down / "configs" / "variants" / "good.yaml").write_text("quality: 2.0\n")
    lines: list[str] = []
    GridRunner(spec, python=python, log=lines.append).run()
    new = [json.loads(x) for x in calls.read_text().splitlines()[before:]]
    assert [c["workflow"] for c in new] == ["training", "evaluating"]
    assert all(any(f.endswith("good.yaml") for f in c["files"]) for c in new)
    assert any("config file contents changed" in line for line in lines)
    rows = _read_csv(out / "results.csv")
    acc = {r["method"]: float(r["value"]) for r in rows if r["metric"] == "acc"}
    assert acc["good"] == pytest.approx(0.5 + 0.2)  # the edited quality, not the old run's 0.6
    # a record without a digest (an older runner's) is trusted, and says so
    record_file = out / "runs" / "a" / "base" / "seed0" / "run.json"
    record = json.loads(record_file.read_text())
    record.pop("config_digest")
    record_file.write_text(json.dumps(record))
    (down / "configs" / "train.yaml").write_text((down / "configs" / "train.yaml").read_text() + "# edited\n")
    before, lines = n_calls(calls), []
    GridRunner(spec, python=python, log=lines.append).run()
    rerun = {c["ckpt_dir"] for c in (json.loads(x) for x in calls.read_text().splitlines()[before:])}
    assert not any("/base/" in d for d in rerun) and any("/good/" in d for d in rerun)
    assert any("recorded before config digests" in line for line in lines)


def test_a_changed_generator_output_runs_its_users_again(fake_env, tmp_path):
    """A generator that runs again with other settings writes another synthetic datalist: the runs whose overrides
    name it run again (training too), the others do not."""
    python, calls, down, gen = fake_env
    spec = _grid(tmp_path, down, gen, seeds=[0], datasets=[{"name": "A"}], ratio_plot=None)
    out = Path(spec.output_dir)
    GridRunner(spec, python=python, log=lambda s: None).run()
    before = n_calls(calls)
    spec = _grid(
        tmp_path, down, gen, seeds=[0], datasets=[{"name": "A"}], ratio_plot=None,
        generators={"g": {"bundle": str(gen), "overrides": {"num_samples": 5}, "per_dataset": True, "outputs": OUTS}},
    )  # fmt: skip
    GridRunner(spec, python=python, log=lambda s: None).run()
    new = [json.loads(x) for x in calls.read_text().splitlines()[before:]]
    rerun = [(c["workflow"], Path(c["ckpt_dir"]).parts[-3]) for c in new]
    assert rerun == [("training", "g"), ("inference", "g"), ("training", "syn_50pct"), ("evaluating", "syn_50pct")]
    rows = _read_csv(out / "results.csv")
    assert {r["method"]: float(r["value"]) for r in rows if r["metric"] == "syn_count"}["syn 50%"] == 5


def test_generator_inputs_leave_out_the_generators_own_files(fake_env, tmp_path):
    """A generator naming a file of its own run folder does not depend on itself; the downstream run that names
    its datalist does."""
    python, calls, down, gen = fake_env
    spec = _grid(tmp_path, down, gen, seeds=[0], datasets=[{"name": "A"}], ratio_plot=None)
    GridRunner(spec, python=python, log=lambda s: None).run()
    own = str((Path(spec.output_dir) / "generators" / "g" / "a" / "eval" / "synthetic" / "datalist.json").resolve())
    spec = _grid(
        tmp_path, down, gen, seeds=[0], datasets=[{"name": "A"}], ratio_plot=None,
        generators={"g": {"bundle": str(gen), "overrides": {"num_samples": 7, "previous": own}, "per_dataset": True,
                          "outputs": OUTS}},
    )  # fmt: skip
    runner = GridRunner(spec, python=python, log=lambda s: None)
    assert runner.generator_plans()[0].inputs == []
    runner.run()
    synthetic = [p for p in runner.run_plans() if p.method == "syn 50%"]
    assert [p.inputs for p in synthetic] == [[own]]
    assert all(p.inputs == [] for p in runner.run_plans() if p.method != "syn 50%")


def _fake_probe(monkeypatch, speedup, seen_threads):
    """Stands in for the bf16 probe of a CPU without AMX; records the thread count it is measured with."""
    import functools

    import common.engines.precision as precision
    import torch

    def measure():
        seen_threads.append(torch.get_num_threads())
        return speedup

    monkeypatch.setattr(precision, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_bf16_instructions", lambda: True)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", functools.lru_cache(maxsize=None)(measure))


@pytest.mark.parametrize("speedup, expected", [(1.8, "1"), (0.9, "0")])
def test_one_cpu_precision_for_every_run_of_a_grid(fake_env, tmp_path, monkeypatch, speedup, expected):
    import torch

    python, calls, down, gen = fake_env
    monkeypatch.delenv("GDA_CPU_BF16")
    threads = []
    _fake_probe(monkeypatch, speedup, threads)
    spec = _grid(tmp_path, down, gen, env={"OMP_NUM_THREADS": "1"}, datasets=[{"name": "A"}])
    before = torch.get_num_threads()
    lines = []
    GridRunner(spec, python=python, log=lines.append).run()
    assert threads == [1] and torch.get_num_threads() == before  # measured once, at the runs' thread count
    made = [json.loads(x) for x in calls.read_text().splitlines()]
    assert len(made) == 2 + 12 and {c["cpu_bf16"] for c in made} == {expected}  # generators and runs alike
    run = json.loads((Path(spec.output_dir) / "runs" / "a" / "good" / "seed0" / "run.json").read_text())
    assert run["pinned_env"] == {"GDA_CPU_BF16": expected}
    assert any(f"GDA_CPU_BF16={expected}" in line and f"{speedup:.2f}x" in line for line in lines)


@pytest.mark.parametrize("where", ["environment", "grid", "amx"])
def test_cpu_precision_is_not_pinned_where_set_or_with_amx(fake_env, tmp_path, monkeypatch, where):
    import common.engines.precision as precision

    python, calls, down, gen = fake_env
    monkeypatch.delenv("GDA_CPU_BF16")
    threads = []
    _fake_probe(monkeypatch, 1.8, threads)
    env = {}
    if where == "environment":
        monkeypatch.setenv("GDA_CPU_BF16", "0")
    elif where == "grid":
        env = {"GDA_CPU_BF16": "0"}
    else:
        monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)
    spec = _grid(tmp_path, down, gen, env=env, datasets=[{"name": "A"}])
    GridRunner(spec, python=python, log=lambda s: None).run()
    assert threads == []  # nothing measured
    made = [json.loads(x) for x in calls.read_text().splitlines()]
    assert {c["cpu_bf16"] for c in made} == ({None} if where == "amx" else {"0"})
    run = json.loads((Path(spec.output_dir) / "runs" / "a" / "good" / "seed0" / "run.json").read_text())
    assert "pinned_env" not in run
