"""The results page: per paper and task, each method's phantom result against the baseline and the upper bound.

One YAML file (``docs/results/summary.yaml``) lists what the page shows, and committed result snapshots hold every
number it prints, so ``python scripts/results_summary.py`` regenerates ``docs/results.md`` byte for byte (a test
checks this):

- ``calibrations``: ``calibration.json`` files of ``scripts/calibrate_phantom.py`` (one per task, difficulty and
  seed): the no-augmentation baseline in the limited-data regime and the upper bound trained on ``ratio`` times more
  real phantom patients, on the same held-out test patients.
- ``grids``: output folders (or snapshots of them: ``grid.json`` and ``results.csv`` suffice) of
  ``scripts/run_experiment.py``, each with a ``title`` (paper and table), the ``metric`` to show, which method is the
  baseline of which (``baseline``: one method for all, or ``pairs``: ``{method: its baseline}``), and optionally
  ``size`` (how large the run was) and ``command``.

The verdict of a method against its baseline is the paired difference over the seeds both ran (same seed, same data
and test set), with a 95 % t-interval: "helps" when the interval lies above zero (below, for a lower-is-better
metric), "hurts" when it lies on the other side, "within noise" when it contains zero, "one seed" when there is
nothing to pair, and "no difference" or "same on every seed" when the difference does not vary over the seeds (the
t-interval is then undefined, and no significance is claimed). A grid entry's ``references`` name rows that are not
augmentation methods but bounds to compare with (the upper bound trained on more real patients): their verdict says
where they lie, "above" or "below" the baseline (in the metric's better or worse direction), not whether they help.
The interval is over training seeds, not test cases:
with few seeds it is wide, and a grid's own ``tables.md`` has the intervals over test cases.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from common.data.phantoms.detection_difficulty import (
    BRAIN_METASTASES_PRESETS,
    CHEST_CT_PRESETS,
    BrainMetastasesDifficulty,
    ChestCTDifficulty,
)
from common.data.phantoms.difficulty import BRAIN_MR_PRESETS, BrainMRDifficulty, resolve_knobs
from common.experiments.results import aggregate, read_results_csv
from common.metrics.statistics import mean_confidence_interval
from common.utils.errors import UserInputError

__all__ = ["MethodResult", "build_results_page", "calibration_rows", "grid_rows", "paired_verdict"]

VERDICTS = ("helps", "hurts", "within noise", "one seed", "no difference", "same on every seed")
#: the verdict of a reference row (an upper bound, not a method), for the verdicts that would say it helps or hurts
REFERENCE_VERDICTS = {"helps": "above", "hurts": "below"}


@dataclass(frozen=True)
class MethodResult:
    """One method of a grid on one data set, against its baseline.

    Attributes:
        method: the method's name in the grid.
        baseline: its baseline's name (``None`` for a baseline itself).
        mean: mean of the metric over the method's seeds.
        values: the metric per seed.
        difference: mean paired difference to the baseline (``None`` without a baseline or common seed).
        interval: 95 % t-interval of the paired difference (``None`` with fewer than two common seeds).
        verdict: one of :data:`VERDICTS`, ``"baseline"``, or for a reference row ``"above"``/``"below"``.
    """

    method: str
    baseline: str | None
    mean: float
    values: dict[int, float]
    difference: float | None
    interval: tuple[float, float] | None
    verdict: str


def paired_verdict(
    values: Mapping[int, float], baseline: Mapping[int, float], higher_is_better: bool = True
) -> tuple[float | None, tuple[float, float] | None, str]:
    """Mean paired difference over the common seeds, its 95 % t-interval and the verdict (see the module docstring).

    Args:
        values: the method's metric per seed.
        baseline: the baseline's metric per seed.
        higher_is_better: direction of the metric.

    Returns:
        ``(difference, interval, verdict)``; ``difference`` is ``None`` when no seed is common.
    """
    seeds = sorted(set(values) & set(baseline))
    if not seeds:
        return None, None, "one seed"
    diffs = np.array([values[s] - baseline[s] for s in seeds], dtype=float)
    mean = float(diffs.mean())
    if len(seeds) < 2:
        return mean, None, "one seed"
    if np.all(diffs == diffs[0]):
        # no spread over the seeds: a t-interval is undefined (0/0), so no significance is claimed
        return mean, None, "no difference" if diffs[0] == 0 else "same on every seed"
    _, half = mean_confidence_interval(diffs, 0.95)
    lo, hi = mean - half, mean + half
    sign = 1.0 if higher_is_better else -1.0
    if sign * lo > 0 and sign * hi > 0:
        verdict = "helps"
    elif sign * lo < 0 and sign * hi < 0:
        verdict = "hurts"
    else:
        verdict = "within noise"
    return mean, (lo, hi), verdict


def _baseline_of(entry: Mapping[str, Any], method: str) -> str | None:
    if "pairs" in entry:
        return entry["pairs"].get(method)
    base = entry.get("baseline")
    return None if base == method else base


def grid_rows(entry: Mapping[str, Any], root: str | os.PathLike = ".") -> dict[str, list[MethodResult]]:
    """Every method of one grid entry of the summary file, per data set, in the grid's method order.

    Args:
        entry: ``{"results": folder, "metric": name, "baseline": method | "pairs": {method: baseline}, ...}``, and
            optionally ``"references": [method, ...]``, rows that are bounds, not methods (with the grid's methods
            marked ``reference: true``).
        root: folder the ``results`` path is relative to.

    Returns:
        ``{dataset: [MethodResult, ...]}``.

    Raises:
        UserInputError: a missing folder or file, an unknown metric, or a baseline that is not a method of the grid.
    """
    folder = Path(root) / entry["results"]
    grid_file, csv_file = folder / "grid.json", folder / "results.csv"
    for f in (grid_file, csv_file):
        if not f.is_file():
            raise UserInputError(f"{f}: missing; a grid entry of the results summary needs grid.json and results.csv.")
    grid = json.loads(grid_file.read_text())
    metric = entry["metric"]
    metrics = {m["name"]: m for m in grid["metrics"]}
    if metric not in metrics:
        raise UserInputError(f"{grid_file}: metric '{metric}' is not one of the grid's {sorted(metrics)}.")
    higher = bool(metrics[metric].get("higher_is_better", True))
    methods = [m["name"] for m in grid["methods"]]
    for method in methods:
        base = _baseline_of(entry, method)
        if base is not None and base not in methods:
            raise UserInputError(f"{grid_file}: baseline '{base}' of '{method}' is not a method of the grid.")
    references = set(entry.get("references", [])) | {m["name"] for m in grid["methods"] if m.get("reference")}
    if references - set(methods):
        raise UserInputError(
            f"{grid_file}: references {sorted(references - set(methods))} are not methods of the grid."
        )
    cells = aggregate(read_results_csv(csv_file))  # the ok runs' finite values per seed, as the grid's tables
    by_cell = {(d, m): cell["values"] for (d, m, name), cell in cells.items() if name == metric}
    out: dict[str, list[MethodResult]] = {}
    for dataset in [d["name"] for d in grid["datasets"]]:
        rows = []
        for method in methods:
            values = by_cell.get((dataset, method))
            if not values:
                continue
            base = _baseline_of(entry, method)
            if base is None and method in references:
                raise UserInputError(f"{grid_file}: reference row '{method}' needs a baseline to lie above or below.")
            if base is None:
                rows.append(
                    MethodResult(method, None, float(np.mean(list(values.values()))), values, None, None, "baseline")
                )
                continue
            diff, interval, verdict = paired_verdict(values, by_cell.get((dataset, base), {}), higher)
            if method in references:
                verdict = REFERENCE_VERDICTS.get(verdict, verdict)
            rows.append(
                MethodResult(method, base, float(np.mean(list(values.values()))), values, diff, interval, verdict)
            )
        out[dataset] = rows
    return out


# the phantom of each calibrated family: its knobs dataclass and presets
_FAMILY_PRESETS: dict[str, tuple[type, Mapping[str, Any]]] = {
    "classification": (BrainMRDifficulty, BRAIN_MR_PRESETS),
    "segmentation": (BrainMRDifficulty, BRAIN_MR_PRESETS),
    "detection_3d": (ChestCTDifficulty, CHEST_CT_PRESETS),
    "detection_2d": (BrainMetastasesDifficulty, BRAIN_METASTASES_PRESETS),
}


def _preset_name(family: str, difficulty: Any) -> str:
    """The preset a calibration's difficulty is, by name or by equal knobs; else the knobs as given."""
    if difficulty is None or isinstance(difficulty, str):
        return "default" if difficulty in (None, "default") else difficulty
    if family in _FAMILY_PRESETS:
        kind, presets = _FAMILY_PRESETS[family]
        knobs = resolve_knobs(difficulty, kind, presets)
        for name, preset in presets.items():
            if preset == knobs:
                return name
    return json.dumps(difficulty, sort_keys=True)


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings that must agree between the seeds of one row: not the seed, the machine, or what the row names (the
    difficulty, the dimension and the variants; a 2D file written before ``spatial_dims`` and ``variants`` were
    recorded has neither, which says what ``2`` and ``[]`` say)."""
    ignored = {"seed", "OMP_NUM_THREADS", "cpu_count", "torch_cpu_capability", "device", "spatial_dims", "variants"}
    out = {k: v for k, v in settings.items() if k not in ignored}
    if isinstance(out.get("phantom_args"), Mapping):
        out["phantom_args"] = {k: v for k, v in out["phantom_args"].items() if k != "difficulty"}
    return out


def calibration_rows(files: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """One row per (family, dimension, difficulty, bundle variants, training steps): the baseline and upper bound over
    the seeds of the ``calibration.json`` files.

    Args:
        files: ``calibration.json`` files of ``scripts/calibrate_phantom.py``.

    Returns:
        rows ``{"family", "spatial_dims", "difficulty", "variants", "iterations", "metric", "seeds", "baseline":
        [...], "upper_bound": [...], "settings"}`` (per-seed values in seed order; ``variants``: the bundle variant
        files merged into both runs, e.g. the thesis's ResNet-50, none for the bundle's own network; ``iterations``:
        the baseline's training steps; ``upper_bound_iterations``: the upper bound's, the same unless the
        calibration trained it longer; ``settings`` of the first file, without its seed), sorted by family,
        dimension, difficulty, variants and steps.

    Raises:
        UserInputError: a file that is not a calibration result, or files of one (family, difficulty) measured
            with different settings.
    """
    groups: dict[tuple[str, int, str, tuple[str, ...], tuple[int, int]], list[dict[str, Any]]] = {}
    for f in files:
        try:
            data = json.loads(Path(f).read_text())
            family, metric, settings = data["family"], data["metric"], data["settings"]
            baseline, upper = float(data["baseline"][metric]), float(data["upper_bound"][metric])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserInputError(f"{f}: not a calibration result of scripts/calibrate_phantom.py ({e}).") from e
        dims = int(settings.get("spatial_dims", 3 if family.endswith("_3d") else 2))
        variants = tuple(settings.get("variants") or ())
        key = (family, dims, _preset_name(family, data["difficulty"]), variants, _steps(settings))
        groups.setdefault(key, []).append(
            {
                "file": str(f),
                "metric": metric,
                "seed": int(settings["seed"]),
                "baseline": baseline,
                "upper_bound": upper,
                "settings": settings,
            }
        )
    rows = []
    for (family, dims, difficulty, variants, (iterations, upper_iterations)), items in sorted(groups.items()):
        items.sort(key=lambda x: x["seed"])
        reference = _comparable(items[0]["settings"])
        for item in items[1:]:
            if _comparable(item["settings"]) != reference:
                raise UserInputError(
                    f"{item['file']}: measured with other settings than {items[0]['file']}; one row of the results "
                    "page averages seeds of one setting only."
                )
        rows.append(
            {
                "family": family,
                "spatial_dims": dims,
                "difficulty": difficulty,
                "variants": list(variants),
                "iterations": iterations,
                "upper_bound_iterations": upper_iterations,
                "metric": items[0]["metric"],
                "seeds": [x["seed"] for x in items],
                "baseline": [x["baseline"] for x in items],
                "upper_bound": [x["upper_bound"] for x in items],
                "settings": reference,
            }
        )
    return rows


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def _values(values: Sequence[float]) -> str:
    mean = _fmt(float(np.mean(values)))
    return mean if len(values) == 1 else f"{mean} ({', '.join(_fmt(v) for v in values)})"


def _steps(row: Mapping[str, Any]) -> tuple[int, int]:
    """The training steps of the baseline and the upper bound of a calibration row (or of its ``settings``)."""
    iterations = int(row.get("iterations", 0))
    return iterations, int(row.get("upper_bound_iterations", iterations))


def _calibration_md(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| task | difficulty | metric | seeds | baseline: few patients (per seed) | upper bound: 10x patients "
        "(per seed) | training patients | test patients |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    steps: dict[tuple[Any, ...], set[tuple[int, int]]] = {}  # the steps measured per task, named where several are
    for r in rows:
        steps.setdefault((r["family"], r["spatial_dims"], r["difficulty"], *r.get("variants", [])), set()).add(
            _steps(r)
        )
    for r in rows:
        s = r["settings"]
        small = s.get("num_small_patients")
        big = small * s.get("ratio", 10) if small is not None else None
        network = "".join(f", `{v}`" for v in r.get("variants", []))
        baseline_steps, upper_steps = _steps(r)
        if upper_steps != baseline_steps:  # always named: the two columns were trained for different lengths
            network += f", {baseline_steps:,} / {upper_steps:,} steps"
        elif len(steps[(r["family"], r["spatial_dims"], r["difficulty"], *r.get("variants", []))]) > 1:
            network += f", {baseline_steps:,} steps"
        lines.append(
            f"| {r['family'].removesuffix('_2d').removesuffix('_3d')} {r['spatial_dims']}D{network} | "
            f"`{r['difficulty']}` | "
            f"{r['metric']} | "
            f"{', '.join(str(x) for x in r['seeds'])} | {_values(r['baseline'])} | {_values(r['upper_bound'])} | "
            f"{small} vs {big} | {s.get('num_test_patients')} |"
        )
    return lines


def _grid_md(entry: Mapping[str, Any], rows: Mapping[str, Sequence[MethodResult]]) -> list[str]:
    lines = []
    for dataset, results in rows.items():
        if len(rows) > 1:
            lines += [f"Data set: {dataset}", ""]
        lines += [
            f"| method | {entry['metric']} (mean over seeds) | seeds | baseline | difference (95 % CI over seeds) "
            "| verdict |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in results:
            if r.baseline is None:
                diff = "–"
            elif r.difference is None:
                diff = "no common seed"
            elif r.interval is None:
                diff = f"{r.difference:+.3f}"
            else:
                diff = f"{r.difference:+.3f} [{r.interval[0]:+.3f}, {r.interval[1]:+.3f}]"
            lines.append(
                f"| {r.method} | {_fmt(r.mean)} | {len(r.values)} | {r.baseline or '–'} | {diff} | {r.verdict} |"
            )
        lines.append("")
    return lines


def build_results_page(summary_file: str | os.PathLike) -> str:
    """The Markdown of the results page described by ``summary_file`` (see the module docstring).

    Args:
        summary_file: the summary YAML; its paths are relative to its own folder.

    Returns:
        the page's Markdown.

    Raises:
        UserInputError: a missing or malformed summary file or result.
    """
    path = Path(summary_file)
    if not path.is_file():
        raise UserInputError(f"{path}: the results summary file does not exist.")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, Mapping):
        raise UserInputError(f"{path}: expected a mapping with 'calibrations' and 'grids'.")
    root = path.parent
    lines = [f"# {spec.get('title', 'Results on the phantom')}", ""]
    if spec.get("introduction"):
        lines += [str(spec["introduction"]).strip(), ""]
    calibrations = sorted(str(p) for pattern in spec.get("calibrations", []) for p in root.glob(pattern))
    if calibrations:
        lines += ["## Calibrated tasks: baseline and upper bound", ""]
        if spec.get("calibration_text"):
            lines += [str(spec["calibration_text"]).strip(), ""]
        lines += _calibration_md(calibration_rows(calibrations)) + [""]
    for entry in spec.get("grids", []):
        for key in ("title", "results", "metric"):
            if key not in entry:
                raise UserInputError(f"{path}: grid entry {entry!r} has no '{key}'.")
        lines += [f"## {entry['title']}", ""]
        for key, label in (("size", "Size"), ("command", "Command"), ("note", "Note")):
            if entry.get(key):
                text = str(entry[key]).strip()
                lines += [f"{label}: `{text}`" if key == "command" else f"{label}: {text}", ""]
        lines += _grid_md(entry, grid_rows(entry, root))
    return "\n".join(lines).rstrip() + "\n"
