"""Reports of a grid, built from its ``results.csv`` (:mod:`common.experiments.results`): the papers' tables, the
Friedman/Nemenyi statistics and the plots (:mod:`common.experiments.plots`).

``tables.md`` follows the papers' layout (CDA-GAN Tables 2, 3, 5, 6; paper 002 Table III): rows are methods,
columns data set x metric, cells ``mean ± err`` over seeds (``err``: standard deviation, standard error or 95 %
t-interval half-width, the grid's ``error``), the best mean of each column in bold (lowest for lower-is-better
metrics); with a ``ratio_plot``, a second table gives the metric against the synthetic ratio (CDA-GAN Table 7).
A method with ``reference: true`` (a bound, e.g. the upper bound of every training patient) has its row in the
tables and the bar plots, but takes no bold value and stays out of the statistics, the CD diagrams and the test-set
sizing, so that adding a bound changes no comparison between the methods.

``statistics.json``/``statistics.md``: per metric, the Friedman test and Nemenyi post-hoc test (paper 004 sec.
3.4) (a) across data sets (blocks = data sets, values = the table's means; Demšar 2006) and (b) within each data
set (``blocks: seeds``: runs with the same seed share data split and initialisation; ``blocks: test_images``: the
test images, each image's per-image value averaged over the seeds, as paper 004 ranks "the predictions made on the
test set"), the direction matrix and scores of paper 004 Table 3 and the per-data-set score table of its Table 2.

With ``blocks: test_images`` the tables' ``mean ± err`` and the ratio plot of the metrics with per-image values
(``per_image.csv``) are over the test images (paper 004 Fig. 5: DSC and its standard error); other metrics stay
over seeds.

**Confidence intervals over the test set.** Every cell whose metric has per-case test values reads
``mean ± err [lo, hi]``: ``[lo, hi]`` is the 95 % percentile bootstrap interval (2000 draws, seed 0, so that the
tables rebuild identically) of the seed-mean of the metric under resampling of the test set
(:mod:`common.metrics.bootstrap`): the test *patients* are drawn with replacement, each with all its slices
(:func:`~common.experiments.results.patient_of` reads the patient from the image id; ids without one are drawn
case by case, and the legend says which), and a drawn case brings every seed's prediction of it. This choice over
a mean of per-seed intervals: the seeds share one fixed test set, so pooling their predictions as independent cases
would shrink the interval by about ``sqrt(S)``, and a per-seed interval describes one run, not the table's
seed-mean; the spread due to the seeds (training randomness) is the ``± err``. Per-case values come from the runs'
``per_image_file`` (``per_image.csv``; with ``blocks: seeds`` :func:`build_reports` collects the files that the
runs wrote): a metric's own per-image values (their mean is the metric, e.g. a Dice per image), or a binary
classifier's ``score``/``label`` (and optional ``pred``) for ``auc``, ``acc``, ``recall``, ``specificity``,
``precision`` and ``f1``. Columns without per-case values keep ``mean ± err`` and the legend names them.
Detection grids need no per-image file: the CPM, the sensitivities at its FP rates and the CPM by size or attenuation
get the same interval from the matched detections each run's evaluation wrote (``eval/froc_matches.json``,
:func:`~common.experiments.results.detection_intervals`).
``summary.csv`` holds every cell's mean, spread and interval.

``generators.md``: the metrics JSON of every generator with an ``evaluate_config`` (e.g. the translation FID/KID of a
CDA-GAN against its real-vs-real reference), one column per generator instance; for an evaluation of image+mask
pairs (:class:`~common.evaluation.PairedGenerativeEvaluation`: ``mask_statistics`` in the JSON) also
``plots/mask_pairs_<generator>.png``, its real and synthetic pairs with a lesion; a generator of images with
boxes whose evaluation names its ``real_datalist`` and ``synthetic_datalist`` (CPGGAN, pix2pix)
``plots/boxes_<generator>.png``, real training images and synthetic ones with their boxes.

**Test-set size.** ``statistics.md``'s last section gives, per data set and metric, the minimum difference that the
grid's actual test set detects (two-sided, alpha = the grid's ``alpha``, power 0.8; :mod:`common.experiments.sizing`):
for mean-type metrics from the standard deviation of the per-patient values (unpaired) and of the per-patient
differences to the first method (paired t-test, median over the other methods), for AUC by Hanley & McNeil with
the test set's class counts at the first method's AUC. Use :func:`~common.experiments.sizing.paired_sample_size` /
:func:`~common.experiments.sizing.auc_sample_size` to size a test set before a run.

**Seeds.** The per-data-set Friedman/Nemenyi tests with ``blocks: seeds`` have one block per seed; with fewer than
:data:`MIN_SEEDS` (5) the report says that they have little power. The phantom grids that report these tests run
5 seeds; the tests plan or run them with 1-2 (they set ``seeds`` in the parsed grid).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.data.validation import load_datalist_file
from common.experiments.plots import box_pairs_plot, mask_pairs_plot, synthetic_pairs_plot, tsne_plot, write_plots
from common.experiments.results import (
    CLASSIFIER_KEYS,
    CaseTable,
    case_intervals,
    case_tables,
    cell_aggregates,
    collect_per_image,
    detection_intervals,
    metrics_of,
    ratio_curves,
    read_per_image_csv,
    read_results_csv,
    write_per_image_csv,
    write_summary_csv,
)
from common.experiments.sizing import auc_minimum_detectable_difference, minimum_detectable_difference
from common.experiments.spec import GridSpec, generator_run_dir, parse_grid, slugify
from common.metrics.bootstrap import BootstrapCI
from common.metrics.classification import rank_auc
from common.metrics.statistics import compare_methods
from common.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_SEEDS", "build_reports", "compared_methods", "generator_metrics", "generators_markdown", "markdown_tables",
    "statistics_report", "sizing_report", "write_grid_snapshot",
]  # fmt: skip


def write_grid_snapshot(spec: GridSpec, output_dir: str | os.PathLike) -> None:
    """Stores the grid (as parsed) in ``<output_dir>/grid.json`` so that reports can be rebuilt from the CSV."""
    atomic_write_json(spec.to_dict(), Path(output_dir) / "grid.json")


def _spec_from_snapshot(output_dir: Path) -> GridSpec:
    path = output_dir / "grid.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; is {output_dir} the output_dir of a grid run?")
    d = json.loads(path.read_text())
    raw = {
        k: d[k]
        for k in (
            "name", "seeds", "common_variants", "overrides", "vars", "train_config", "evaluate_config",
            "metrics_file", "error", "alpha", "digits", "timeout_s", "env", "tsne", "ratio_plot", "blocks",
            "per_image_file",
        )
        if d.get(k) is not None
    }  # fmt: skip
    raw.update(output_dir=d["output_dir"], bundle=d["bundle"])
    raw["datasets"] = [{k: v for k, v in x.items() if k != "slug" and v is not None} for x in d["datasets"]]
    raw["methods"] = [{k: v for k, v in x.items() if k != "slug" and v is not None} for x in d["methods"]]
    raw["metrics"] = d["metrics"]
    raw["generators"] = {n: {k: v for k, v in g.items() if k != "name"} for n, g in d["generators"].items()}
    return parse_grid(raw, source=str(path))


def _best(values: Mapping[str, float], higher_is_better: bool) -> set[str]:
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if not finite:
        return set()
    target = max(finite.values()) if higher_is_better else min(finite.values())
    return {k for k, v in finite.items() if math.isclose(v, target, rel_tol=1e-12, abs_tol=1e-15)}


def _cell(entry: Mapping[str, Any] | None, digits: int, bold: bool, n_seeds: int, ci: BootstrapCI | None = None) -> str:
    if entry is None:
        return "–"
    text = f"{entry['mean']:.{digits}f} ± {entry['err']:.{digits}f}"
    if bold:
        text = f"**{text}**"
    if ci is not None and math.isfinite(ci.low):
        text += f" [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"
    if entry.get("over", "seeds") == "seeds" and entry["n"] < n_seeds:
        text += f" (n={entry['n']})"
    return text


def _ci_legend(spec: GridSpec, metrics: Sequence[str], intervals: Mapping[tuple[str, str, str], BootstrapCI]) -> str:
    """The tables' sentence on the bootstrap intervals: level, draws, unit per data set, metrics without one."""
    if not intervals:
        return (
            "No per-case test values were recorded (the runs' per-image files hold none of the table's metrics): "
            "no bootstrap confidence interval over the test cases."
        )
    first = next(iter(intervals.values()))
    units = {}
    for (d, _, _), ci in intervals.items():
        units.setdefault(d, set()).add(f"{ci.n_units} {ci.unit}")
    where = "; ".join(f"{d}: {', '.join(sorted(u))}" for d, u in units.items())
    text = (
        f"`[lo, hi]`: {first.confidence:.0%} percentile bootstrap interval over the test set ({first.n_resamples} "
        f"draws, with replacement, of the test patients, each with all its cases, or of the cases where no patient is "
        f"recorded; every seed's predictions of a drawn case together; the statistic averaged over the seeds; "
        f"common.metrics.bootstrap): {where}."
    )
    missing = [spec.metric(m).label for m in metrics if not any(k[2] == m for k in intervals)]
    if missing:
        text += f" No per-case values, no interval: {', '.join(missing)}."
    return text


_ERR_NAMES = {"std": "standard deviation", "sem": "standard error", "ci95": "95 % confidence interval (t)"}


def _over_images(agg: Mapping[tuple[str, str, str], Mapping[str, Any]]) -> list[str]:
    """The metrics whose table entries are over test images."""
    return sorted({k[2] for k, v in agg.items() if v.get("over") == "images"})


def markdown_tables(
    spec: GridSpec,
    rows: Sequence[Mapping[str, Any]],
    per_image_rows: Sequence[Mapping[str, Any]] | None = None,
    intervals: Mapping[tuple[str, str, str], BootstrapCI] | None = None,
) -> str:
    """The papers' tables as Markdown (see the module docstring).

    Args:
        spec: the grid.
        rows: rows of ``results.csv``.
        per_image_rows: rows of ``per_image.csv``: the ``± err`` over images with ``blocks: test_images``, and the
            bootstrap intervals.
        intervals: the bootstrap intervals (:func:`~common.experiments.results.case_intervals`); computed from
            ``per_image_rows`` when ``None``.
    """
    agg = cell_aggregates(spec, rows, per_image_rows)
    metrics = metrics_of(spec, rows)
    if intervals is None:
        intervals = case_intervals(per_image_rows, metrics)
    datasets = [d.name for d in spec.datasets]
    methods = [m.name for m in spec.methods]
    n_seeds = len(spec.seeds)
    images = [spec.metric(m).label for m in metrics if m in _over_images(agg)]
    over = (
        f"over seeds {spec.seeds}"
        if not images
        else f"over test images for {', '.join(images)} (each image's value averaged over seeds {spec.seeds}), "
        f"over seeds for the other metrics"
    )
    lines = [
        f"# {spec.name}",
        "",
        f"Mean ± {_ERR_NAMES[spec.error]} {over}; best mean per column in bold "
        "(lowest for "
        + (", ".join(spec.metric(m).label for m in metrics if not spec.metric(m).higher_is_better) or "none")
        + "); `(n=k)`: only k runs succeeded; `–`: no result.",
        "",
        _ci_legend(spec, metrics, intervals),
        "",
        "| Method | " + " | ".join(f"{d}: {spec.metric(m).label}" for d in datasets for m in metrics) + " |",
        "|---|" + "---|" * (len(datasets) * len(metrics)),
    ]
    references = [m.name for m in spec.methods if m.reference]
    if references:
        lines[-2:-2] = [
            f"Reference rows (bounds, not methods: no bold value, not in the statistics): {', '.join(references)}.",
            "",
        ]
    best = {
        (d, m): _best(
            {meth: agg[(d, meth, m)]["mean"] for meth in methods if (d, meth, m) in agg and meth not in references},
            spec.metric(m).higher_is_better,
        )
        for d in datasets
        for m in metrics
    }
    for meth in methods:
        cells = [
            _cell(agg.get((d, meth, m)), spec.digits, meth in best[(d, m)], n_seeds, intervals.get((d, meth, m)))
            for d in datasets
            for m in metrics
        ]
        lines.append(f"| {meth} | " + " | ".join(cells) + " |")
    if spec.ratio_plot:
        lines += ["", f"## {spec.metric(metrics[0]).label if len(metrics) == 1 else 'Metrics'} vs synthetic amount", ""]
        x_label = spec.ratio_plot.get("x_label", "x")
        lines.append(
            f"| Curve | {x_label} | "
            + " | ".join(f"{d}: {spec.metric(m).label}" for d in datasets for m in metrics)
            + " |"
        )
        lines.append("|---|---|" + "---|" * (len(datasets) * len(metrics)))
        for curve, x_of, _ in ratio_curves(spec):
            for meth, x in sorted(x_of.items(), key=lambda kv: kv[1]):
                cells = [
                    _cell(agg.get((d, meth, m)), spec.digits, False, n_seeds, intervals.get((d, meth, m)))
                    for d in datasets
                    for m in metrics
                ]
                lines.append(f"| {curve} | {x:g} | " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        for r in failed:
            first = (r.get("error") or "").strip().splitlines()
            lines.append(
                f"- {r['dataset']} | {r['method']} | seed {r['seed']}: {first[0] if first else 'no error text'}"
            )
    return "\n".join(lines) + "\n"


def compared_methods(spec: GridSpec) -> list[str]:
    """The grid's methods that the statistics compare: every method but the ``reference`` rows (bounds)."""
    return [m.name for m in spec.methods if not m.reference]


def statistics_report(
    spec: GridSpec, rows: Sequence[Mapping[str, Any]], per_image_rows: Sequence[Mapping[str, Any]] | None = None
) -> tuple[dict[str, Any], str]:
    """Friedman + Nemenyi per metric, across data sets and within each data set (see the module docstring).

    Args:
        spec: the grid.
        rows: rows of ``results.csv``.
        per_image_rows: rows of ``per_image.csv`` (the blocks with ``blocks: test_images``).

    Returns:
        ``(json_dict, markdown)``; each comparison has ``block_kind`` (``data sets``, ``seeds`` or ``test images``).
    """
    agg = cell_aggregates(spec, rows, per_image_rows)
    methods = compared_methods(spec)
    datasets = [d.name for d in spec.datasets]
    result: dict[str, Any] = {
        "alpha": spec.alpha,
        "methods": methods,
        "datasets": datasets,
        "blocks": spec.blocks,
        "metrics": {},
    }
    md = [
        f"# Statistics: {spec.name}",
        "",
        "Friedman test and Nemenyi post-hoc test (Demšar 2006; Vu et al. sec. 3.4).",
    ]
    md.append(f"Average rank 1 = best; alpha = {spec.alpha}. Directions: + row ranks significantly better, - worse.")
    if spec.blocks == "seeds" and len(spec.seeds) < MIN_SEEDS:
        md.append(
            f"Only {len(spec.seeds)} seed(s) {spec.seeds}: the per-data-set tests over seeds have little power "
            f"(at least {MIN_SEEDS} recommended)."
        )
    for metric in metrics_of(spec, rows):
        ms = spec.metric(metric)
        entry: dict[str, Any] = {"label": ms.label, "higher_is_better": ms.higher_is_better, "per_dataset": {}}
        md += ["", f"## {ms.label} ({'higher' if ms.higher_is_better else 'lower'} is better)"]
        if len(datasets) >= 2:
            table = {m: {d: agg[(d, m, metric)]["mean"] for d in datasets if (d, m, metric) in agg} for m in methods}
            entry["across_datasets"] = {
                **compare_methods(table, ms.higher_is_better, spec.alpha),
                "block_kind": "data sets",
            }
            md += ["", "### Across data sets (blocks = data sets, values = the tables' means)", ""]
            md += _comparison_md(entry["across_datasets"])
        for d in datasets:
            table = {m: dict(agg.get((d, m, metric), {}).get("values", {})) for m in methods}
            over = {agg[(d, m, metric)]["over"] for m in methods if (d, m, metric) in agg}
            kind = "test images" if over == {"images"} else "seeds"
            if kind == "test images" or len(spec.seeds) >= 2:
                entry["per_dataset"][d] = {
                    **compare_methods(table, ms.higher_is_better, spec.alpha),
                    "block_kind": kind,
                }
                md += ["", f"### {d} (blocks = {kind})", ""]
                md += _comparison_md(entry["per_dataset"][d])
        if entry["per_dataset"]:
            md += ["", f"### Nemenyi scores per data set ({ms.label}; Vu et al. Table 2 layout)", ""]
            md.append("| Method | " + " | ".join(entry["per_dataset"]) + " |")
            md.append("|---|" + "---|" * len(entry["per_dataset"]))
            for m in methods:
                cells = [
                    str(c["nemenyi"]["scores"][c["methods"].index(m)]) if "nemenyi" in c else "–"
                    for c in entry["per_dataset"].values()
                ]
                md.append(f"| {m} | " + " | ".join(cells) + " |")
        result["metrics"][metric] = entry
    result["test_set"], lines = sizing_report(spec, metrics_of(spec, rows), per_image_rows)
    md += lines
    return result, "\n".join(md) + "\n"


MIN_SEEDS = 5
"""Seeds below which the statistics report warns that the per-data-set tests over seeds have little power."""


def _per_case(table: CaseTable, metric: str) -> np.ndarray | None:
    """``(S, N)`` per-case values whose mean is the metric: its own values, or for ``acc`` the 0/1 correctness."""
    if metric in table.values and metric not in CLASSIFIER_KEYS:
        return table.values[metric]
    labels, source = table.labels(), table.values.get("pred", table.values.get("score"))
    if metric == "acc" and labels is not None and source is not None:
        return np.where(np.isfinite(source), ((source > 0.5) == labels[None]).astype(float), np.nan)
    return None


def _per_unit(table: CaseTable, values: np.ndarray) -> dict[str, float]:
    """Mean over the seeds and the cases of each unit (patient, else image), units without a value left out."""
    units = table.groups or table.images
    sums: dict[str, list[float]] = {}
    for j, unit in enumerate(units):
        column = values[:, j]
        sums.setdefault(unit, []).extend(column[np.isfinite(column)].tolist())
    return {u: float(np.mean(v)) for u, v in sums.items() if v}


def _unit_name(table: CaseTable) -> str:
    return "patients" if table.groups is not None else "cases"


def _mean_metric_size(
    label: str, tables: Mapping[str, CaseTable], metric: str, alpha: float
) -> tuple[dict[str, Any], str] | None:
    """The minimum detectable difference of a mean-type metric at the test set's size (paired and unpaired)."""
    units = {m: _per_unit(t, v) for m, t in tables.items() if (v := _per_case(t, metric)) is not None}
    units = {m: u for m, u in units.items() if len(u) >= 2}
    if not units:
        return None
    base = next(iter(units))
    table = tables[base]
    sd = float(np.sqrt(np.mean([np.var(list(u.values()), ddof=1) for u in units.values()])))
    n = len(units[base])
    entry: dict[str, Any] = {
        "unit": _unit_name(table),
        "n_units": n,
        "n_cases": len(table.images),
        "sd": sd,
        "mdd_unpaired": minimum_detectable_difference(sd, n, paired=False, alpha=alpha),
    }
    diffs = []
    for m, u in units.items():
        common = [k for k in units[base] if k in u]
        if m != base and len(common) >= 2:
            diffs.append(float(np.std([u[k] - units[base][k] for k in common], ddof=1)))
    text = (
        f"- {label}: {n} {entry['unit']} ({entry['n_cases']} test cases); SD of the per-{entry['unit'][:-1]} values "
        f"{sd:.3g}: minimum detectable difference {entry['mdd_unpaired']:.3g} between independent samples"
    )
    if diffs:
        entry.update(baseline=base, sd_diff=float(np.median(diffs)))
        entry["mdd_paired"] = minimum_detectable_difference(entry["sd_diff"], n, paired=True, alpha=alpha)
        text += (
            f", {entry['mdd_paired']:.3g} paired (SD of the per-{entry['unit'][:-1]} differences to {base}: "
            f"{entry['sd_diff']:.3g}, median over {len(diffs)} other method(s))"
        )
    return entry, text + "."


def _auc_size(tables: Mapping[str, CaseTable], alpha: float) -> tuple[dict[str, Any], str] | None:
    """The minimum detectable AUC improvement over the first method's AUC (Hanley & McNeil)."""
    for method, table in tables.items():
        labels, scores = table.labels(), table.values.get("score")
        if labels is None or scores is None:
            continue
        aucs = [rank_auc(s[np.isfinite(s)], labels[np.isfinite(s)]) for s in scores]
        auc = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else math.nan
        groups = table.groups
        per_unit = {}
        for j, unit in enumerate(groups or table.images):
            per_unit.setdefault(unit, set()).add(bool(labels[j]))
        constant = groups is not None and all(len(v) == 1 for v in per_unit.values())  # a patient's class
        positives = [next(iter(v)) for v in per_unit.values()] if constant else [bool(y) for y in labels]
        n_pos, n_neg = sum(positives), len(positives) - sum(positives)
        if not math.isfinite(auc) or n_pos < 1 or n_neg < 1:
            return None
        unit = "patients" if constant else "cases"
        mdd = auc_minimum_detectable_difference(auc, n_pos, n_neg, alpha=alpha)
        entry = {"unit": unit, "n_pos": n_pos, "n_neg": n_neg, "baseline": method, "auc": auc, "mdd": mdd}
        found = f"minimum detectable improvement {mdd:.3g}" if math.isfinite(mdd) else "no improvement detectable"
        return entry, (
            f"- AUC: {n_pos} positive and {n_neg} negative {unit}; {method} AUC {auc:.3f}: {found} (Hanley & McNeil, "
            "the two AUCs taken as independent: a conservative bound)."
        )
    return None


def sizing_report(
    spec: GridSpec, metrics: Sequence[str], per_image_rows: Sequence[Mapping[str, Any]] | None, power: float = 0.8
) -> tuple[dict[str, Any], list[str]]:
    """The minimum detectable difference of every metric at the grid's test-set size (:mod:`~.sizing`).

    Mean-type metrics (their own per-image values, or ``acc`` from a classifier's per-image ``score``/``pred``
    and ``label``) are averaged per patient (per image where no patient is recorded); the paired t-test's
    difference uses the median, over the methods, of the standard deviation of their per-patient differences to
    the first method, the unpaired one the pooled per-patient standard deviation. AUC: Hanley & McNeil with the
    test set's class counts, at the first method's AUC.

    Returns:
        ``({data set: {metric: entry}}, markdown lines)``.
    """
    tables = case_tables(per_image_rows or [])
    order = compared_methods(spec)
    out: dict[str, Any] = {}
    lines = [
        "",
        "## Test-set size",
        "",
        f"Minimum detectable difference: two-sided test at alpha = {spec.alpha}, power {power} "
        "(common.experiments.sizing).",
    ]
    for d in [x.name for x in spec.datasets]:
        by_method = {m: tables[(d, m)] for m in order if (d, m) in tables}
        found, missing = [], []
        for metric in metrics:
            label = spec.metric(metric).label
            res = _auc_size(by_method, spec.alpha) if metric == "auc" else None
            res = res or _mean_metric_size(label, by_method, metric, spec.alpha)
            if res is None:
                missing.append(label)
                continue
            out.setdefault(d, {})[metric] = res[0]
            found.append(res[1])
        lines += ["", f"### {d}", "", *found]
        if missing:
            lines.append(f"- Not computed (no per-case values, or a ratio of counts): {', '.join(missing)}.")
    return out, lines


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else (f"{x:.3g}" if abs(x) < 1e-3 and x != 0 else f"{x:.4f}")


def _comparison_md(c: Mapping[str, Any]) -> list[str]:
    if "error" in c:
        return [f"Not computed: {c['error']}."]
    fr, ne = c["friedman"], c["nemenyi"]
    lines = [
        f"Friedman chi2 = {_fmt(fr['statistic'])}, p = {_fmt(fr['pvalue'])} (k = {fr['n_methods']}, "
        f"N = {fr['n_blocks']}); Iman-Davenport F = {_fmt(fr['iman_davenport'])}, p = "
        f"{_fmt(fr['iman_davenport_pvalue'])}. Nemenyi CD = {_fmt(ne['critical_difference'])} "
        f"(q_alpha = {_fmt(ne['q_alpha'])})."
    ]
    if c.get("dropped_blocks"):
        lines.append(f"Blocks without a value for every method, left out: {c['dropped_blocks']}.")
    methods = c["methods"]
    lines += [
        "",
        "| Method | avg. rank | " + " | ".join(methods) + " | Score |",
        "|---|---|" + "---|" * (len(methods) + 1),
    ]
    sym = {1: "+", -1: "−", 0: "0"}
    for i, m in enumerate(methods):
        dirs = [sym[d] if i != j else "·" for j, d in enumerate(ne["directions"][i])]
        lines.append(f"| {m} | {ne['average_ranks'][i]:.3f} | " + " | ".join(dirs) + f" | {ne['scores'][i]} |")
    lines += [
        "",
        "Pairwise Nemenyi p-values:",
        "",
        "| | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for i, m in enumerate(methods):
        lines.append(f"| {m} | " + " | ".join(_fmt(p) for p in ne["pvalues"][i]) + " |")
    return lines


def generator_metrics(spec: GridSpec, output_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The metrics JSON of every evaluated generator instance (``evaluate_config``) found under ``output_dir``.

    Returns:
        ``{"<generator>" or "<generator> (<data set>)": metrics}``, in declaration order; instances whose file is
        missing (not run yet, or failed) are left out.
    """
    found: dict[str, dict[str, Any]] = {}
    for g in spec.generators.values():
        if not g.evaluate_config:
            continue
        for dataset in spec.datasets if g.per_dataset else [None]:
            path = generator_run_dir(output_dir, g, dataset) / "eval" / g.metrics_file
            if path.is_file():
                found[f"{g.name} ({dataset.name})" if dataset else g.name] = json.loads(path.read_text())
    return found


def generators_markdown(metrics: Mapping[str, Mapping[str, Any]], digits: int = 4) -> str:
    """``generators.md``: one column per evaluated generator instance, one row per numeric metric (in the order the
    metrics JSON lists them), and the feature extractor each used."""
    names = list(metrics)
    keys: list[str] = []
    for m in metrics.values():
        keys += [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys]
    lines = [
        "# Generators",
        "",
        "The evaluated generators' metrics JSON (`generators/<name>/<data set>/eval/`), as written by the generator"
        " bundle's evaluate config.",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for k in keys:
        cells = [f"{float(m[k]):.{digits}g}" if isinstance(m.get(k), (int, float)) else "" for m in metrics.values()]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append(
        "| feature extractor | " + " | ".join(str(m.get("feature_extractor", "")) for m in metrics.values()) + " |"
    )
    return "\n".join(lines) + "\n"


def _has_boxes(datalist: str | os.PathLike) -> bool:
    """Whether a datalist's ``training`` entries carry ``box`` lists (a detection datalist)."""
    entries = load_datalist_file(datalist).get("training") or []
    return bool(entries) and all(isinstance(e, Mapping) and isinstance(e.get("box"), list) for e in entries)


def build_reports(
    output_dir: str | os.PathLike, spec: GridSpec | None = None, log: Callable[[str], None] | None = None
) -> dict[str, str]:
    """(Re)builds ``tables.md``, ``statistics.md/.json`` and ``plots/*.png`` from ``<output_dir>/results.csv``.

    Args:
        output_dir: the grid's output folder (holding ``results.csv`` and ``grid.json``).
        spec: the grid; read from ``grid.json`` when ``None``.
        log: where progress lines go (the module's logger by default).

    Returns:
        the paths written, by name.
    """
    log = log or logger.info
    out = Path(output_dir)
    spec = spec or _spec_from_snapshot(out)
    csv_path = out / "results.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} is missing: run the grid first.")
    rows = read_results_csv(csv_path)
    written = {"results": str(csv_path)}
    per_image_rows = None
    if spec.blocks == "seeds":  # the runner writes per_image.csv with blocks: test_images only
        records = collect_per_image(rows, spec.per_image_file)
        if records:
            write_per_image_csv(records, out / "per_image.csv")
    if (out / "per_image.csv").is_file():
        per_image_rows = read_per_image_csv(out / "per_image.csv")
        written["per_image"] = str(out / "per_image.csv")
    metrics = metrics_of(spec, rows)
    intervals = {**detection_intervals(rows, metrics), **case_intervals(per_image_rows, metrics)}
    atomic_write_text(markdown_tables(spec, rows, per_image_rows, intervals), out / "tables.md")
    written["tables"] = str(out / "tables.md")
    write_summary_csv(cell_aggregates(spec, rows, per_image_rows), intervals, spec.error, out / "summary.csv")
    written["summary"] = str(out / "summary.csv")
    stats_json, stats_md = statistics_report(spec, rows, per_image_rows)
    atomic_write_json(stats_json, out / "statistics.json")
    atomic_write_text(stats_md, out / "statistics.md")
    written.update(statistics=str(out / "statistics.md"), statistics_json=str(out / "statistics.json"))
    written.update(write_plots(spec, rows, stats_json, out / "plots", per_image_rows))
    evaluated = generator_metrics(spec, out)
    if evaluated:
        atomic_write_text(generators_markdown(evaluated, spec.digits), out / "generators.md")
        written["generators"] = str(out / "generators.md")
    for name, metrics in evaluated.items():  # generators whose evaluation names its real and synthetic datalists
        real, synthetic = metrics.get("real_datalist"), metrics.get("synthetic_datalist")
        if not (real and synthetic and Path(real).is_file() and Path(synthetic).is_file()):
            continue
        if "mask_statistics" in metrics:  # image+mask pairs (PairedGenerativeEvaluation)
            plot = out / "plots" / f"mask_pairs_{slugify(name)}.png"
            sections = {k: metrics[k] for k in ("real_section", "synthetic_section") if k in metrics}
            if mask_pairs_plot(real, synthetic, plot, **sections):
                written[f"mask_pairs_{slugify(name)}"] = str(plot)
        elif _has_boxes(synthetic):  # images with boxes (CPGGAN, pix2pix)
            plot = out / "plots" / f"boxes_{slugify(name)}.png"
            if box_pairs_plot(real, synthetic, plot):
                written[f"boxes_{slugify(name)}"] = str(plot)
    tsne_json = out / "tsne.json"
    if tsne_json.is_file():
        tsne = json.loads(tsne_json.read_text())
        written["tsne_plot"] = tsne_plot(tsne, out / "plots" / "tsne.png")
        synthetic = tsne.get("synthetic_datalist")
        if synthetic and Path(synthetic).is_file():
            pairs = synthetic_pairs_plot(synthetic, out / "plots" / "synthetic_pairs.png")
            if pairs:
                written["synthetic_pairs"] = pairs
    log(f"reports written to {out} ({len(written)} files)")
    return written
