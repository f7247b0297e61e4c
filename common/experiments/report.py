"""Reports of a grid, built from its ``results.csv`` (:mod:`common.experiments.results`): the papers' tables, the
Friedman/Nemenyi statistics and the plots (:mod:`common.experiments.plots`).

``tables.md`` follows the papers' layout (CDA-GAN Tables 2, 3, 5, 6; paper 002 Table III): rows are methods,
columns data set x metric, cells ``mean ± err`` over seeds (``err``: standard deviation, standard error or 95 %
t-interval half-width, the grid's ``error``), the best mean of each column in bold (lowest for lower-is-better
metrics); with a ``ratio_plot``, a second table gives the metric against the synthetic ratio (CDA-GAN Table 7).

``statistics.json``/``statistics.md``: per metric, the Friedman test and Nemenyi post-hoc test (paper 004 sec.
3.4) (a) across data sets (blocks = data sets, values = the table's means; Demšar 2006) and (b) within each data
set (``blocks: seeds``: runs with the same seed share data split and initialisation; ``blocks: test_images``: the
test images, each image's per-image value averaged over the seeds, as paper 004 ranks "the predictions made on the
test set"), the direction matrix and scores of paper 004 Table 3 and the per-data-set score table of its Table 2.

With ``blocks: test_images`` the tables' ``mean ± err`` and the ratio plot of the metrics with per-image values
(``per_image.csv``) are over the test images (paper 004 Fig. 5: DSC and its standard error); other metrics stay
over seeds.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.experiments.plots import tsne_plot, write_plots
from common.experiments.results import cell_aggregates, metrics_of, ratio_curves, read_per_image_csv, read_results_csv
from common.experiments.spec import GridSpec, parse_grid
from common.metrics.statistics import compare_methods
from common.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["build_reports", "markdown_tables", "statistics_report", "write_grid_snapshot"]


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


def _cell(entry: Mapping[str, Any] | None, digits: int, bold: bool, n_seeds: int) -> str:
    if entry is None:
        return "–"
    text = f"{entry['mean']:.{digits}f} ± {entry['err']:.{digits}f}"
    if bold:
        text = f"**{text}**"
    if entry.get("over", "seeds") == "seeds" and entry["n"] < n_seeds:
        text += f" (n={entry['n']})"
    return text


_ERR_NAMES = {"std": "standard deviation", "sem": "standard error", "ci95": "95 % confidence interval (t)"}


def _over_images(agg: Mapping[tuple[str, str, str], Mapping[str, Any]]) -> list[str]:
    """The metrics whose table entries are over test images."""
    return sorted({k[2] for k, v in agg.items() if v.get("over") == "images"})


def markdown_tables(
    spec: GridSpec, rows: Sequence[Mapping[str, Any]], per_image_rows: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """The papers' tables as Markdown (see the module docstring).

    Args:
        spec: the grid.
        rows: rows of ``results.csv``.
        per_image_rows: rows of ``per_image.csv`` (used with ``blocks: test_images``).
    """
    agg = cell_aggregates(spec, rows, per_image_rows)
    metrics = metrics_of(spec, rows)
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
        "| Method | " + " | ".join(f"{d}: {spec.metric(m).label}" for d in datasets for m in metrics) + " |",
        "|---|" + "---|" * (len(datasets) * len(metrics)),
    ]
    best = {
        (d, m): _best(
            {meth: agg[(d, meth, m)]["mean"] for meth in methods if (d, meth, m) in agg},
            spec.metric(m).higher_is_better,
        )
        for d in datasets
        for m in metrics
    }
    for meth in methods:
        cells = [
            _cell(agg.get((d, meth, m)), spec.digits, meth in best[(d, m)], n_seeds) for d in datasets for m in metrics
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
                cells = [_cell(agg.get((d, meth, m)), spec.digits, False, n_seeds) for d in datasets for m in metrics]
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
    methods = [m.name for m in spec.methods]
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
    return result, "\n".join(md) + "\n"


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
    if spec.blocks == "test_images" and (out / "per_image.csv").is_file():
        per_image_rows = read_per_image_csv(out / "per_image.csv")
        written["per_image"] = str(out / "per_image.csv")
    atomic_write_text(markdown_tables(spec, rows, per_image_rows), out / "tables.md")
    written["tables"] = str(out / "tables.md")
    stats_json, stats_md = statistics_report(spec, rows, per_image_rows)
    atomic_write_json(stats_json, out / "statistics.json")
    atomic_write_text(stats_md, out / "statistics.md")
    written.update(statistics=str(out / "statistics.md"), statistics_json=str(out / "statistics.json"))
    written.update(write_plots(spec, rows, stats_json, out / "plots", per_image_rows))
    tsne_json = out / "tsne.json"
    if tsne_json.is_file():
        written["tsne_plot"] = tsne_plot(json.loads(tsne_json.read_text()), out / "plots" / "tsne.png")
    log(f"reports written to {out} ({len(written)} files)")
    return written
