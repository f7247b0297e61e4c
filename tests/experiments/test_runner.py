"""Grid runner on fake bundles: CSV rows, tables, statistics, plots, resume, failures, generator substitution."""

import csv
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from common.experiments import GridRunner, build_reports, parse_grid
from tests.experiments.conftest import n_calls, write_yaml

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


def test_real_monai_bundle_runner(tmp_path):
    """The command line the runner builds works with ``python -m monai.bundle run`` itself."""
    bundle = tmp_path / "real"
    head = "imports: [$import json, $import pathlib]\nckpt_dir: models\noutput_dir: eval\nseed: 0\nquality: 0.0\n"
    write_yaml(
        bundle / "configs" / "train.yaml",
        head + "training:\n  - $pathlib.Path(@ckpt_dir).mkdir(parents=True, exist_ok=True)\n"
        "  - \"$pathlib.Path(@ckpt_dir, 'model.json').write_text(json.dumps({'seed': @seed}))\"\n",
    )
    write_yaml(
        bundle / "configs" / "evaluate.yaml",
        head + "evaluating:\n  - $pathlib.Path(@output_dir).mkdir(parents=True, exist_ok=True)\n"
        "  - \"$pathlib.Path(@output_dir, 'metrics.json').write_text(json.dumps("
        "{'acc': 0.5 + 0.1 * @quality + 0.01 * @seed, 'nested': {'x': 2}}))\"\n",
    )
    write_yaml(bundle / "configs" / "variants" / "good.yaml", "quality: 1.0\n")
    spec = parse_grid(
        {
            "name": "real",
            "output_dir": str(tmp_path / "out"),
            "bundle": str(bundle),
            "seeds": [3],
            "datasets": ["D"],
            "methods": [{"name": "good", "variants": ["good.yaml"], "overrides": {"quality": 2.0}}],
        }
    )
    (rec,) = GridRunner(spec, python=sys.executable, log=lambda s: None).run()
    assert rec["status"] == "ok", rec.get("error")
    assert rec["metrics"] == {"acc": pytest.approx(0.5 + 0.2 + 0.03), "nested/x": 2.0}
    run_dir = Path(rec["run_dir"])
    assert json.loads((run_dir / "models" / "model.json").read_text()) == {"seed": 3}
