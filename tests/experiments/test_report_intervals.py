"""Bootstrap intervals in the grid tables, the test-set size section of the statistics report, the per-image values
of ``blocks: seeds`` grids and ``summary.csv``: in-process, on hand-made per-case values (nothing trains)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from common.experiments import GridError, build_reports, markdown_tables, parse_grid, statistics_report
from common.experiments.report import write_grid_snapshot
from common.experiments.results import case_intervals, patient_of, read_results_csv, write_results_csv
from common.experiments.sizing import auc_minimum_detectable_difference, minimum_detectable_difference
from common.metrics.bootstrap import bootstrap_auc_ci, bootstrap_mean_ci

PATIENTS, SLICES = 6, 2
IMAGES = [f"/d/labels/brain_P{p:04d}_C{c:02d}_seg.nii.gz" for p in range(PATIENTS) for c in range(SLICES)]
GROUPS = [f"brain_P{p:04d}" for p in range(PATIENTS) for _ in range(SLICES)]


def _spec(tmp_path, metrics, seeds=(0, 1), **extra):
    data = {
        "name": "ci grid",
        "output_dir": str(tmp_path / "out"),
        "bundle": str(tmp_path / "bundle"),
        "seeds": list(seeds),
        "metrics": metrics,
        "datasets": ["A"],
        "methods": ["base", "better"],
        **extra,
    }
    return parse_grid(data, source="ci.yaml")


def _dice() -> dict[tuple[str, int], np.ndarray]:
    """Per-image Dice of each (method, seed): better = base + 0.05, seed 1 = seed 0 + 0.01; image 3 has no value."""
    base = np.random.default_rng(0).uniform(0.5, 0.8, size=len(IMAGES))
    base[3] = np.nan
    return {(m, s): base + (0.05 if m == "better" else 0.0) + 0.01 * s for m in ("base", "better") for s in (0, 1)}


def _rows(values: dict, metric: str) -> tuple[list[dict], list[dict]]:
    """``results.csv`` rows (the mean of the finite values) and ``per_image.csv`` rows of the values."""
    rows, per_image = [], []
    for (method, seed), v in values.items():
        rows.append({"dataset": "A", "method": method, "seed": seed, "metric": metric, "value": float(np.nanmean(v)),
                     "status": "ok", "run_dir": "", "error": ""})  # fmt: skip
        per_image += [
            {"dataset": "A", "method": method, "seed": seed, "image": i, "metric": metric, "value": float(x)}
            for i, x in zip(IMAGES, v)
        ]
    return rows, per_image


def test_patient_of_phantom_and_converted_ids():
    assert patient_of(IMAGES[5]) == "brain_P0002" and patient_of("brain_P0002_C01") == "brain_P0002"
    assert patient_of("/data/brats_2d/cases/BraTS20_Training_001/s0042_seg.nii.gz") == "BraTS20_Training_001"
    assert patient_of("3") is None and patient_of("i1") is None


def test_mean_metric_interval_in_the_table_and_test_set_size(tmp_path):
    spec = _spec(tmp_path, [{"name": "dice", "label": "Dice"}, {"name": "hd95", "label": "HD95"}])
    dice = _dice()
    rows, per_image = _rows(dice, "dice")
    rows += [{**r, "metric": "hd95", "value": 5.0} for r in rows]
    intervals = case_intervals(per_image, ["dice", "hd95"])
    assert set(intervals) == {("A", "base", "dice"), ("A", "better", "dice")}
    expected = bootstrap_mean_ci(np.vstack([dice[("better", 0)], dice[("better", 1)]]), GROUPS)
    got = intervals[("A", "better", "dice")]
    assert got == expected and got.unit == "patients" and got.n_units == PATIENTS
    assert got.estimate == pytest.approx(np.mean([np.nanmean(dice[("better", s)]) for s in (0, 1)]))

    table = markdown_tables(spec, rows, per_image)
    better = next(line for line in table.splitlines() if line.startswith("| better |"))
    mean = np.mean([np.nanmean(dice[("better", s)]) for s in (0, 1)])
    cell = f"**{mean:.4f} ± 0.0071** [{got.low:.4f}, {got.high:.4f}]"
    assert better.split("|")[2].strip() == cell  # bold mean ± std over the seeds, then the interval
    assert "95% percentile bootstrap interval" in table and "A: 6 patients" in table
    assert "No per-case values, no interval: HD95." in table

    stats, md = statistics_report(spec, rows, per_image)
    size = stats["test_set"]["A"]["dice"]
    assert size["unit"] == "patients" and size["n_units"] == PATIENTS and size["n_cases"] == len(IMAGES)
    # the per-patient differences better - base are all 0.05: SD 0, nothing smaller is missed
    assert size["sd_diff"] == pytest.approx(0.0, abs=1e-12) and size["mdd_paired"] == pytest.approx(0.0, abs=1e-12)
    assert size["mdd_unpaired"] == pytest.approx(minimum_detectable_difference(size["sd"], PATIENTS, paired=False))
    assert "## Test-set size" in md and "- Dice: 6 patients (12 test cases)" in md
    assert "ratio of counts): HD95." in md and "Only 2 seed(s) [0, 1]" in md
    assert "Only" not in statistics_report(_spec(tmp_path, ["dice"], seeds=range(5)), rows, per_image)[1]


def test_classifier_scores_give_auc_and_confusion_intervals(tmp_path):
    """Per-image ``score`` and ``label`` of a binary classifier: AUC, accuracy and recall intervals; the AUC's
    minimum detectable improvement by Hanley-McNeil with the patients' classes."""
    spec = _spec(tmp_path, ["acc", "auc", "recall", "f1"], seeds=[0])
    labels = np.array([p % 2 for p in range(PATIENTS) for _ in range(SLICES)], dtype=float)  # a patient's class
    score = np.where(labels == 1, 0.7, 0.3) + np.random.default_rng(1).normal(0, 0.25, len(IMAGES))
    per_image = [
        {"dataset": "A", "method": m, "seed": 0, "image": i, "metric": k, "value": float(v)}
        for m in ("base", "better")
        for k, values in (("score", score), ("label", labels))
        for i, v in zip(IMAGES, values)
    ]
    rows = [{"dataset": "A", "method": m, "seed": 0, "metric": k, "value": 0.7, "status": "ok", "run_dir": "",
             "error": ""} for m in ("base", "better") for k in ("acc", "auc", "recall")]  # fmt: skip
    intervals = case_intervals(per_image, ["acc", "auc", "recall", "f1"])
    assert {k[2] for k in intervals} == {"acc", "auc", "recall", "f1"}
    assert intervals[("A", "base", "auc")] == bootstrap_auc_ci(score, labels, GROUPS)
    acc = intervals[("A", "base", "acc")]
    assert acc.estimate == pytest.approx(np.mean((score > 0.5) == labels)) and acc.unit == "patients"
    stats, md = statistics_report(spec, rows, per_image)
    auc = stats["test_set"]["A"]["auc"]
    assert (auc["n_pos"], auc["n_neg"], auc["unit"], auc["baseline"]) == (3, 3, "patients", "base")
    assert auc["mdd"] == auc_minimum_detectable_difference(auc["auc"], 3, 3)
    assert "- AUC: 3 positive and 3 negative patients" in md
    assert stats["test_set"]["A"]["acc"]["unit"] == "patients"  # accuracy from the 0/1 correctness
    assert "f1" not in stats["test_set"]["A"] and "ratio of counts): recall, f1." in md


def test_seed_blocks_grid_collects_the_runs_per_image_files(tmp_path):
    """``blocks: seeds``: build_reports reads each ok run's per-image file, writes per_image.csv and summary.csv,
    and the tables show the intervals; the reports rebuild identically."""
    spec = _spec(tmp_path, ["dice"])
    out = Path(spec.output_dir)
    out.mkdir(parents=True)
    write_grid_snapshot(spec, out)
    records = []
    for (method, seed), v in _dice().items():
        run_dir = out / "runs" / method / f"seed{seed}"
        (run_dir / "eval").mkdir(parents=True)
        values = [None if np.isnan(x) else float(x) for x in v]
        (run_dir / "eval" / "per_image.json").write_text(json.dumps({"ids": IMAGES, "dice": values}))
        records.append({"dataset": "A", "method": method, "seed": seed, "status": "ok", "run_dir": str(run_dir),
                        "metrics": {"dice": float(np.nanmean(v))}})  # fmt: skip
    records.append({"dataset": "A", "method": "base", "seed": 2, "status": "failed", "run_dir": "x", "error": "boom"})
    write_results_csv(records, out / "results.csv")
    written = build_reports(out, log=lambda s: None)
    assert {"per_image", "summary"} <= set(written)
    with open(out / "summary.csv") as f:
        summary = {r["method"]: r for r in csv.DictReader(f)}
    ci = case_intervals(
        [{**r, "seed": int(r["seed"]), "value": float(r["value"] or "nan")} for r in csv.DictReader(open(out / "per_image.csv"))],
        ["dice"],
    )[("A", "better", "dice")]  # fmt: skip
    row = summary["better"]
    assert float(row["ci_low"]) == ci.low and float(row["ci_high"]) == ci.high and row["ci_unit"] == "patients"
    assert row["ci_units"] == str(PATIENTS) and row["over"] == "seeds" and row["error"] == "std"
    tables = (out / "tables.md").read_text()
    assert f"[{ci.low:.4f}, {ci.high:.4f}]" in tables
    assert len(read_results_csv(out / "results.csv")) == 5
    (out / "tables.md").unlink()
    build_reports(out, log=lambda s: None)
    assert (out / "tables.md").read_text() == tables


def _detection_runs(tmp_path, out: Path) -> list[dict]:
    """Two methods x two seeds of a detector on 6 scans (one per patient): predictions near some nodules plus false
    positives, evaluated by ``DetectionEvaluation`` (which writes ``froc_matches.json``); the records of results.csv."""
    from common.evaluation import DetectionEvaluation

    rng = np.random.default_rng(0)
    scans = []
    for i in range(6):
        boxes = [[int(x), int(x), int(x), int(x) + 6, int(x) + 6, int(x) + 6] for x in rng.integers(0, 40, 1 + i % 2)]
        sizes = ["small", "large"][: len(boxes)]
        scans.append({"image": f"scan{i}.nii.gz", "box": boxes, "patient": f"chest_P{i:04d}", "size": sizes})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": scans}))
    records = []
    for method, hit in (("base", 0.5), ("better", 0.9)):
        for seed in (0, 1):
            run_dir = out / "runs" / method / f"seed{seed}"
            (run_dir / "eval").mkdir(parents=True)
            pred = []
            for s in scans:
                boxes = [b for b in s["box"] if rng.random() < hit] + [[50, 50, 50, 56, 56, 56]] * int(
                    rng.integers(0, 3)
                )
                pred.append({"image": f"../../../../../{s['image']}", "box": boxes,
                             "score": [round(float(rng.uniform(0.3, 1.0)), 2) for _ in boxes]})  # fmt: skip
            (run_dir / "eval" / "predictions.json").write_text(json.dumps({"test": pred}))
            metrics = DetectionEvaluation(
                datalist,
                "test",
                run_dir / "eval" / "predictions.json",
                run_dir / "eval",
                attributes=["size"],
                n_bootstrap=0,
            ).run()
            records.append({"dataset": "A", "method": method, "seed": seed, "status": "ok", "run_dir": str(run_dir),
                            "metrics": {k: metrics[k] for k in ("cpm", "sens@1", "cpm_size_large")}})  # fmt: skip
    return records


def test_detection_grid_gets_cpm_intervals_from_the_runs_matches(tmp_path):
    """Detection grids: the CPM and the sensitivities get a bootstrap interval over the test scans (by patient) from
    each run's ``froc_matches.json``; the estimate is the seeds' mean CPM; a run without the file leaves its cell
    without an interval; tables.md shows it."""
    from common.experiments.results import detection_intervals
    from common.metrics.bootstrap import bootstrap_cpm_ci

    spec = _spec(tmp_path, [{"name": "cpm", "label": "CPM"}, {"name": "sens@1", "label": "1"}, "map"])
    out = Path(spec.output_dir)
    out.mkdir(parents=True)
    write_grid_snapshot(spec, out)
    records = _detection_runs(tmp_path, out)
    write_results_csv(records, out / "results.csv")
    rows = read_results_csv(out / "results.csv")
    matches = json.loads((out / "runs" / "better" / "seed0" / "eval" / "froc_matches.json").read_text())
    assert len(matches["images"]) == 6 and matches["images"][2]["patient"] == "chest_P0002"
    assert matches["iou_threshold"] == 0.25 and matches["cpm_mode"] == "luna16"

    intervals = detection_intervals(rows, ["cpm", "sens@1", "map", "cpm_size_large"])
    assert set(intervals) == {("A", m, k) for m in ("base", "better") for k in ("cpm", "sens@1", "cpm_size_large")}
    large = [r["metrics"]["cpm_size_large"] for r in records if r["method"] == "better"]
    assert intervals[("A", "better", "cpm_size_large")].estimate == pytest.approx(np.mean(large))
    got = intervals[("A", "better", "cpm")]
    cpms = [r["metrics"]["cpm"] for r in records if r["method"] == "better"]
    assert got.estimate == pytest.approx(np.mean(cpms)) and got.unit == "patients" and got.n_units == 6
    assert got.low <= got.estimate <= got.high
    runs = []
    for seed in (0, 1):
        data = json.loads((out / "runs" / "better" / f"seed{seed}" / "eval" / "froc_matches.json").read_text())
        runs.append(sorted(data["images"], key=lambda e: e["image"]))
    assert got == bootstrap_cpm_ci(runs, groups=[e["patient"] for e in runs[0]])["cpm"]

    build_reports(out, log=lambda s: None)
    tables = (out / "tables.md").read_text()
    assert f"[{got.low:.4f}, {got.high:.4f}]" in tables and "A: 6 patients" in tables

    (out / "runs" / "base" / "seed1" / "eval" / "froc_matches.json").unlink()
    assert {k[1] for k in detection_intervals(rows, ["cpm"])} == {"better"}


def test_reference_rows_take_no_bold_value_and_stay_out_of_the_statistics(tmp_path):
    """An upper bound marked ``reference: true`` is a row of the table, but the bold values, the Friedman/Nemenyi
    tests and the test-set sizing are those of the grid without it."""
    dice = _dice()
    rows, per_image = _rows(dice, "dice")
    bound = {("bound", s): v + 0.2 for (m, s), v in dice.items() if m == "better"}
    bound_rows, bound_images = _rows(bound, "dice")
    methods = ["base", "better", {"name": "bound", "reference": True}]
    spec = _spec(tmp_path, [{"name": "dice", "label": "Dice"}], methods=methods)
    assert [m.reference for m in spec.methods] == [False, False, True]
    without = _spec(tmp_path, [{"name": "dice", "label": "Dice"}])

    table = markdown_tables(spec, rows + bound_rows, per_image + bound_images)
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "**" in lines["better"] and "**" not in lines["bound"]  # the bound's higher mean is not the best
    assert "Reference rows (bounds, not methods: no bold value, not in the statistics): bound." in table
    stats, md = statistics_report(spec, rows + bound_rows, per_image + bound_images)
    plain, _ = statistics_report(without, rows, per_image)
    assert stats["methods"] == ["base", "better"]
    assert json.dumps(stats["metrics"]) == json.dumps(plain["metrics"])  # NaN-safe equality
    assert json.dumps(stats["test_set"]) == json.dumps(plain["test_set"])
    assert "bound" not in md
    with pytest.raises(GridError, match="`reference` must be true or false"):
        _spec(tmp_path, ["dice"], methods=[{"name": "x", "reference": "yes"}])
