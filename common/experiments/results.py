"""The results of a grid: ``results.csv`` and its aggregation over seeds, shared by the tables and the plots.

``results.csv`` is in long format, one row per (run, metric): ``dataset, method, seed, metric, value, status,
run_dir, error``; a failed run has one row with an empty ``metric``/``value``, ``status = failed`` and its error.
Long format keeps grids whose tasks report different metrics (classification and segmentation) in one file and
reads directly into ``pandas.read_csv(...).pivot_table(...)``.

``per_image.csv`` (grids with ``blocks: test_images``) holds the per-test-image values of the ``ok`` runs, one row
per (run, image, metric): ``dataset, method, seed, image, metric, value``; :func:`aggregate_per_image` averages each
image over the seeds and gives mean and spread over the images (paper 004 sec. 3.4, Fig. 5).

Per-case data (:class:`CaseTable`, :func:`case_intervals`): the per-image values of one (data set, method) as a
seeds x images array per metric, the patient of each image (:func:`patient_of`), and from them the bootstrap
interval of each table metric over the test set (:mod:`common.metrics.bootstrap`; the method is described in
:mod:`common.experiments.report`). ``summary.csv`` (:func:`write_summary_csv`) has one row per table cell.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common.evaluation.detection import MATCHES_FILE
from common.experiments.spec import GridSpec
from common.metrics.bootstrap import (
    BINARY_METRICS,
    BootstrapCI,
    bootstrap_auc_ci,
    bootstrap_binary_ci,
    bootstrap_cpm_ci,
    bootstrap_mean_ci,
)
from common.metrics.detection import attribute_matches
from common.metrics.statistics import mean_confidence_interval
from common.utils import atomic_write_text

__all__ = [
    "CLASSIFIER_KEYS",
    "CSV_FIELDS",
    "CaseTable",
    "PATIENT_PATTERNS",
    "PER_IMAGE_FIELDS",
    "SUMMARY_FIELDS",
    "aggregate",
    "aggregate_per_image",
    "case_interval",
    "case_intervals",
    "case_tables",
    "cell_aggregates",
    "collect_per_image",
    "detection_intervals",
    "metrics_of",
    "patient_of",
    "ratio_curves",
    "read_per_image",
    "read_per_image_csv",
    "read_results_csv",
    "write_per_image_csv",
    "write_results_csv",
    "write_summary_csv",
]

CSV_FIELDS = ["dataset", "method", "seed", "metric", "value", "status", "run_dir", "error"]
PER_IMAGE_FIELDS = ["dataset", "method", "seed", "image", "metric", "value"]


def write_results_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Writes run records (``run.json`` contents) as the long-format CSV (see the module docstring).

    Args:
        records: the records of the downstream runs (``status``, ``metrics`` or ``error``, ...).
        path: the CSV file, written atomically.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        base = {
            "dataset": r.get("dataset"),
            "method": r.get("method"),
            "seed": r.get("seed"),
            "status": r.get("status"),
            "run_dir": r.get("run_dir"),
        }
        metrics = r.get("metrics") or {}
        if r.get("status") == "ok" and metrics:
            for k, v in metrics.items():
                writer.writerow({**base, "metric": k, "value": repr(float(v)), "error": ""})
        else:
            writer.writerow({**base, "metric": "", "value": "", "error": (r.get("error") or "").strip()})
    atomic_write_text(buf.getvalue(), path)


def read_results_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads ``results.csv``; ``seed`` becomes an int and ``value`` a float (NaN when empty).

    Args:
        path: the CSV file.

    Returns:
        one dict per row, keyed by :data:`CSV_FIELDS`.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seed"] = int(r["seed"]) if r.get("seed") not in (None, "") else None
        r["value"] = float(r["value"]) if r.get("value") not in (None, "") else float("nan")
    return rows


def read_per_image(path: str | os.PathLike) -> dict[str, list]:
    """Reads a run's per-image file: ``{"ids": [N image ids], <metric>: [N values or null], ...}``.

    Args:
        path: the JSON file written by the bundle's evaluation (e.g. ``eval/per_image.json``).

    Returns:
        ``{"ids": [...], <metric>: [float, NaN for null]}``, the metrics being the lists of ``N`` entries (other
        entries, e.g. ``non_finite``, are left out).

    Raises:
        FileNotFoundError, ValueError: when the file is missing, not JSON, has no ``ids`` list, duplicate ids, or
            no metric list of the same length.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} was not written by the evaluating workflow (the grid has blocks: test_images)."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    ids = data.get("ids") if isinstance(data, Mapping) else None
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{path} must hold a JSON object with a non-empty `ids` list.")
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: `ids` has duplicates.")
    out: dict[str, list] = {"ids": ids}
    for key, values in data.items():
        if key != "ids" and isinstance(values, list) and len(values) == len(ids):
            out[key] = [float("nan") if v is None else float(v) for v in values]
    if len(out) == 1:
        raise ValueError(f"{path} holds no list of {len(ids)} per-image values.")
    return out


def write_per_image_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Writes the ``per_image`` values of the ``ok`` run records as ``per_image.csv`` (see the module docstring).

    Args:
        records: run records; those with ``status == "ok"`` must carry ``per_image`` (:func:`read_per_image`).
        path: the CSV file, written atomically.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_IMAGE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        if r.get("status") != "ok" or not r.get("per_image"):
            continue
        per_image = r["per_image"]
        base = {"dataset": r.get("dataset"), "method": r.get("method"), "seed": r.get("seed")}
        for metric, values in per_image.items():
            if metric == "ids":
                continue
            for image, v in zip(per_image["ids"], values):
                value = "" if v is None or not math.isfinite(float(v)) else repr(float(v))
                writer.writerow({**base, "image": image, "metric": metric, "value": value})
    atomic_write_text(buf.getvalue(), path)


def read_per_image_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads ``per_image.csv``; ``seed`` becomes an int and ``value`` a float (NaN when empty)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seed"] = int(r["seed"])
        r["value"] = float(r["value"]) if r.get("value") not in (None, "") else float("nan")
    return rows


def _err(values: np.ndarray, kind: str) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    sd = float(np.std(values, ddof=1))
    if kind == "std":
        return sd
    if kind == "sem":
        return sd / math.sqrt(n)
    return mean_confidence_interval(values, 0.95)[1]


def aggregate(rows: Sequence[Mapping[str, Any]], error: str = "std") -> dict[tuple[str, str, str], dict[str, Any]]:
    """Mean and spread over seeds of every (data set, method, metric) of the ``ok`` rows.

    Args:
        rows: rows of :func:`read_results_csv`.
        error: the spread: ``"std"`` (sample standard deviation), ``"sem"`` (standard error) or ``"ci95"``
            (half-width of the 95 % t-interval).

    Returns:
        ``{(dataset, method, metric): {"mean", "err", "n", "values": {seed: value}}}``.
    """
    groups: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in rows:
        if r.get("status") != "ok" or not r.get("metric") or not math.isfinite(r["value"]):
            continue
        groups.setdefault((r["dataset"], r["method"], r["metric"]), {})[r["seed"]] = r["value"]
    out = {}
    for key, by_seed in groups.items():
        vals = np.array(list(by_seed.values()), dtype=float)
        out[key] = {"mean": float(vals.mean()), "err": _err(vals, error), "n": len(vals), "values": by_seed}
    return out


def aggregate_per_image(
    rows: Sequence[Mapping[str, Any]], error: str = "std"
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Mean and spread over test images of every (data set, method, metric) of ``per_image.csv`` rows.

    Each image's value is first averaged over the seeds (NaN values left out); images without a finite value are
    left out of the mean and spread.

    Args:
        rows: rows of :func:`read_per_image_csv`.
        error: the spread over the images, as in :func:`aggregate`.

    Returns:
        ``{(dataset, method, metric): {"mean", "err", "n" (images), "values": {image: mean over seeds},
        "seeds": [seeds]}}``, the layout of :func:`aggregate` with images in place of seeds.
    """
    groups: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    seeds: dict[tuple[str, str, str], set[int]] = {}
    for r in rows:
        key = (r["dataset"], r["method"], r["metric"])
        seeds.setdefault(key, set()).add(r["seed"])
        if math.isfinite(r["value"]):
            groups.setdefault(key, {}).setdefault(r["image"], []).append(r["value"])
    out = {}
    for key, by_image in groups.items():
        values = {image: float(np.mean(v)) for image, v in by_image.items()}
        vals = np.array(list(values.values()), dtype=float)
        out[key] = {
            "mean": float(vals.mean()),
            "err": _err(vals, error),
            "n": len(vals),
            "values": values,
            "seeds": sorted(seeds[key]),
        }
    return out


def cell_aggregates(
    spec: GridSpec,
    rows: Sequence[Mapping[str, Any]],
    per_image_rows: Sequence[Mapping[str, Any]] | None = None,
    error: str | None = None,
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The ``mean ± err`` of the tables and plots: over seeds (:func:`aggregate`), or, with ``blocks: test_images``,
    over test images (:func:`aggregate_per_image`, entries marked ``"over": "images"``) for the metrics that have
    per-image values.

    Args:
        spec: the grid (its ``blocks``; its ``error`` unless ``error`` is given).
        rows: rows of :func:`read_results_csv`.
        per_image_rows: rows of :func:`read_per_image_csv` (ignored with ``blocks: seeds``).
        error: the spread (default: the grid's).

    Returns:
        the layout of :func:`aggregate`.
    """
    error = error or spec.error
    agg = {k: {**v, "over": "seeds"} for k, v in aggregate(rows, error).items()}
    if spec.blocks == "test_images" and per_image_rows:
        agg.update({k: {**v, "over": "images"} for k, v in aggregate_per_image(per_image_rows, error).items()})
    return agg


def metrics_of(spec: GridSpec, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics reported: the grid's ``metrics``, else every metric of the rows in order of appearance."""
    if spec.metrics:
        return [m.name for m in spec.metrics]
    seen: list[str] = []
    for r in rows:
        if r.get("metric") and r["metric"] not in seen:
            seen.append(r["metric"])
    return seen


def ratio_curves(spec: GridSpec) -> list[tuple[str, dict[str, float], str | None]]:
    """The grid's ``ratio_plot`` curves as ``(curve name, {method: x}, baseline method or None)``."""
    rp = spec.ratio_plot or {}
    base = rp.get("baseline")
    return [(str(c), {m: float(x) for m, x in pts.items()}, base) for c, pts in (rp.get("curves") or {}).items()]


# ---- per-case data: bootstrap confidence intervals and test-set sizes

PATIENT_PATTERNS: tuple[re.Pattern, ...] = (
    re.compile(r"(^|/)(?P<patient>[^/]+)_C\d+(_[^/]*)?$"),  # phantoms: <patient>_C01_seg.nii.gz
    re.compile(r"(^|/)cases/(?P<patient>[^/]+)/s\d+_[^/]+$"),  # 2D conversions: cases/<case>/s<slice>_seg.nii.gz
)
"""How a per-image id (the label file of a test image) names its patient: the brain MR phantoms' case names
(``brain_P0007_C01``: patient ``brain_P0007``) and the 2D conversions' case folders (``cases/<case>/s0042_seg``; the
case is the patient's scan). Ids that none matches (e.g. ``"0"``, ``"1"``) are resampled case by case."""

CLASSIFIER_KEYS = ("score", "label", "pred")
"""Per-image entries of a binary classifier (``score``: the positive-class probability, ``label``: 0/1, ``pred``:
optional predicted class): the tables' ``auc`` and :data:`~common.metrics.bootstrap.BINARY_METRICS` get their
intervals from them."""


def patient_of(image_id: str) -> str | None:
    """The patient of a per-image id by :data:`PATIENT_PATTERNS`, ``None`` when no pattern matches."""
    text = str(image_id).replace("\\", "/")
    for pattern in PATIENT_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group("patient")
    return None


@dataclass
class CaseTable:
    """The per-case values of one (data set, method): ``values[metric]`` is ``(S seeds, N images)``, NaN where a
    seed has no finite value for an image."""

    images: list[str]
    seeds: list[int]
    values: dict[str, np.ndarray]

    @property
    def groups(self) -> list[str] | None:
        """The patient of every image, ``None`` unless :func:`patient_of` names one for each."""
        patients = [patient_of(i) for i in self.images]
        return None if any(p is None for p in patients) else [str(p) for p in patients]

    def labels(self) -> np.ndarray | None:
        """The binary ``label`` of every image (the seeds agree), ``None`` without one."""
        if "label" not in self.values:
            return None
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an image no seed labelled: NaN
            labels = np.nanmean(self.values["label"], axis=0)
        return labels if np.all(np.isin(labels, (0.0, 1.0))) else None


def case_tables(per_image_rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], CaseTable]:
    """The rows of ``per_image.csv`` as one :class:`CaseTable` per (data set, method)."""
    cells: dict[tuple[str, str], dict[tuple[str, int, str], float]] = {}
    for r in per_image_rows:
        cells.setdefault((r["dataset"], r["method"]), {})[(r["metric"], int(r["seed"]), str(r["image"]))] = float(
            r["value"]
        )
    out = {}
    for key, values in cells.items():
        images = list(dict.fromkeys(k[2] for k in values))
        seeds = sorted({k[1] for k in values})
        metrics = list(dict.fromkeys(k[0] for k in values))
        col, row = {im: j for j, im in enumerate(images)}, {s: i for i, s in enumerate(seeds)}
        arrays = {m: np.full((len(seeds), len(images)), np.nan) for m in metrics}
        for (metric, seed, image), v in values.items():
            arrays[metric][row[seed], col[image]] = v
        out[key] = CaseTable(images, seeds, arrays)
    return out


def case_interval(
    table: CaseTable, metric: str, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> BootstrapCI | None:
    """The bootstrap interval of a table metric from per-case values (:mod:`common.metrics.bootstrap`).

    A metric with its own per-image values is their mean; ``auc`` comes from ``score`` and ``label``, the
    :data:`~common.metrics.bootstrap.BINARY_METRICS` from ``pred`` (else ``score``) and ``label``. Resampling is by
    patient when every image names one (:func:`patient_of`), else by image.

    Returns:
        the interval, or ``None`` when the per-case values do not give the metric.
    """
    kwargs = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    groups = table.groups
    if metric in table.values and metric not in CLASSIFIER_KEYS:
        if not np.isfinite(table.values[metric]).any():
            return None
        return bootstrap_mean_ci(table.values[metric], groups, **kwargs)
    labels = table.labels()
    if labels is None:
        return None
    if metric == "auc" and "score" in table.values:
        return bootstrap_auc_ci(table.values["score"], labels, groups, **kwargs)
    source = table.values.get("pred", table.values.get("score"))
    if metric in BINARY_METRICS and source is not None:
        return bootstrap_binary_ci(metric, source, labels, groups, **kwargs)
    return None


def case_intervals(
    per_image_rows: Sequence[Mapping[str, Any]] | None,
    metrics: Sequence[str],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[tuple[str, str, str], BootstrapCI]:
    """:func:`case_interval` of every (data set, method, metric) that has per-case values.

    Args:
        per_image_rows: rows of :func:`read_per_image_csv` (``None``: no interval).
        metrics: the table's metrics.
        n_resamples: bootstrap draws.
        confidence: the intervals' level.
        seed: seed of the draws (the same for every cell, so that the tables rebuild identically).

    Returns:
        ``{(dataset, method, metric): interval}``.
    """
    out = {}
    for (dataset, method), table in case_tables(per_image_rows or []).items():
        for metric in metrics:
            ci = case_interval(table, metric, n_resamples, confidence, seed)
            if ci is not None:
                out[(dataset, method, metric)] = ci
    return out


def detection_intervals(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    eval_dir: str = "eval",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[tuple[str, str, str], BootstrapCI]:
    """Bootstrap intervals of the detection metrics ``cpm``, ``sens@<rate>`` and ``cpm_<attribute>_<value>`` (the CPM
    of the nodules of one size or attenuation, as :func:`common.metrics.detection.cpm_by_attribute` counts it) over
    the test images, from the per-image matches that each run's evaluation wrote
    (``<run_dir>/<eval_dir>/froc_matches.json``, :class:`common.evaluation.DetectionEvaluation`): every seed's matches
    of a drawn image together, the statistic averaged over the seeds
    (:func:`common.metrics.bootstrap.bootstrap_cpm_ci`); resampled by patient when every image names one.

    A cell gets no interval when one of its runs has no matches file, or when its runs matched different images or
    read the FROC differently (a warning says so).

    Args:
        rows: rows of ``results.csv`` (:func:`read_results_csv`).
        metrics: the table's metrics; the others (and attributes that the files do not hold) are skipped.
        eval_dir: the runs' evaluation folder.
        n_resamples / confidence / seed: as :func:`case_intervals`.

    Returns:
        ``{(dataset, method, metric): interval}``.
    """
    runs: dict[tuple[str, str], dict[Any, str]] = {}
    for r in rows:
        if r.get("status", "ok") == "ok" and r.get("run_dir"):
            runs.setdefault((r["dataset"], r["method"]), {})[r["seed"]] = r["run_dir"]
    out: dict[tuple[str, str, str], BootstrapCI] = {}
    for (dataset, method), by_seed in runs.items():
        files = [Path(d) / eval_dir / MATCHES_FILE for _, d in sorted(by_seed.items(), key=lambda kv: str(kv[0]))]
        if not files or not all(f.is_file() for f in files):
            continue
        loaded = [json.loads(f.read_text(encoding="utf-8")) for f in files]
        settings = {json.dumps({k: v for k, v in m.items() if k != "images"}, sort_keys=True) for m in loaded}
        images = [[e["image"] for e in m["images"]] for m in loaded]
        if len(settings) > 1 or any(sorted(i) != sorted(images[0]) for i in images):
            warnings.warn(f"{dataset} / {method}: the runs' {MATCHES_FILE} differ in images or settings; no interval.")
            continue
        order = sorted(images[0])
        by_image = [{e["image"]: e for e in m["images"]} for m in loaded]
        aligned = [[entries[i] for i in order] for entries in by_image]
        patients = [e.get("patient") for e in aligned[0]]
        groups = patients if all(p is not None for p in patients) else None
        kwargs = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
        rates, mode = loaded[0]["fp_rates"], loaded[0]["cpm_mode"]
        if ({"cpm"} | {f"sens@{float(r):g}" for r in rates}) & set(metrics):
            cis = bootstrap_cpm_ci(aligned, rates, mode, groups, **kwargs)
            out.update({(dataset, method, m): cis[m] for m in metrics if m in cis})
        names = sorted(aligned[0][0].get("attributes", {}), key=len, reverse=True)  # "cpm_<attribute>_<value>"
        for m in metrics:
            attribute = next((a for a in names if m.startswith(f"cpm_{a}_")), None)
            if attribute is None:
                continue
            value = m[len(f"cpm_{attribute}_") :]
            runs_of_value = [[attribute_matches(e, attribute, value) for e in run] for run in aligned]
            out[(dataset, method, m)] = bootstrap_cpm_ci(runs_of_value, rates, mode, groups, **kwargs)["cpm"]
    return out


def collect_per_image(
    rows: Sequence[Mapping[str, Any]], per_image_file: str, eval_dir: str = "eval"
) -> list[dict[str, Any]]:
    """Run records with the per-image values their ``evaluating`` wrote, for grids with ``blocks: seeds``.

    Args:
        rows: rows of :func:`read_results_csv` (their ``run_dir``).
        per_image_file: the file name under the run's ``eval`` folder (the grid's ``per_image_file``).
        eval_dir: the runs' evaluation folder (the runner's ``<run>/eval``).

    Returns:
        records for :func:`write_per_image_csv`: one per ``ok`` run whose file exists and reads.
    """
    records, seen = [], set()
    for r in rows:
        run_dir = r.get("run_dir")
        if r.get("status") != "ok" or not run_dir or run_dir in seen:
            continue
        seen.add(run_dir)
        path = Path(run_dir) / eval_dir / per_image_file
        if path.is_file():
            try:
                per_image = read_per_image(path)
            except ValueError:
                continue
            records.append({k: r[k] for k in ("dataset", "method", "seed")} | {"status": "ok", "per_image": per_image})
    return records


SUMMARY_FIELDS = [
    "dataset", "method", "metric", "mean", "err", "error", "over", "n", "ci_low", "ci_high", "ci_confidence",
    "ci_unit", "ci_units", "ci_cases", "ci_resamples",
]  # fmt: skip


def write_summary_csv(
    agg: Mapping[tuple[str, str, str], Mapping[str, Any]],
    intervals: Mapping[tuple[str, str, str], BootstrapCI],
    error: str,
    path: str | os.PathLike,
) -> None:
    """Writes ``summary.csv``: one row per table cell, ``mean``, ``err`` (``error``: std, sem or ci95, ``over``
    seeds or images) and the bootstrap interval over the test cases (empty without per-case values).

    Args:
        agg: :func:`cell_aggregates`.
        intervals: :func:`case_intervals`.
        error: the grid's ``error``.
        path: the CSV file, written atomically.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for key in sorted(set(agg) | set(intervals)):
        entry, ci = agg.get(key), intervals.get(key)
        row: dict[str, Any] = dict(zip(("dataset", "method", "metric"), key))
        if entry is not None:
            row.update(mean=repr(entry["mean"]), err=repr(entry["err"]), error=error, over=entry.get("over", "seeds"))
            row["n"] = entry["n"]
        if ci is not None:
            row.update(ci_low=repr(ci.low), ci_high=repr(ci.high), ci_confidence=ci.confidence, ci_unit=ci.unit)
            row.update(ci_units=ci.n_units, ci_cases=ci.n_cases, ci_resamples=ci.n_resamples)
        writer.writerow(row)
    atomic_write_text(buf.getvalue(), path)
