"""The results of a grid: ``results.csv`` and its aggregation over seeds, shared by the tables and the plots.

``results.csv`` is in long format, one row per (run, metric): ``dataset, method, seed, metric, value, status,
run_dir, error``; a failed run has one row with an empty ``metric``/``value``, ``status = failed`` and its error.
Long format keeps grids whose tasks report different metrics (classification and segmentation) in one file and
reads directly into ``pandas.read_csv(...).pivot_table(...)``.

``per_image.csv`` (grids with ``blocks: test_images``) holds the per-test-image values of the ``ok`` runs, one row
per (run, image, metric): ``dataset, method, seed, image, metric, value``; :func:`aggregate_per_image` averages each
image over the seeds and gives mean and spread over the images (paper 004 sec. 3.4, Fig. 5).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.experiments.spec import GridSpec
from common.metrics.statistics import mean_confidence_interval
from common.utils import atomic_write_text

__all__ = [
    "CSV_FIELDS",
    "PER_IMAGE_FIELDS",
    "aggregate",
    "aggregate_per_image",
    "cell_aggregates",
    "metrics_of",
    "ratio_curves",
    "read_per_image",
    "read_per_image_csv",
    "read_results_csv",
    "write_per_image_csv",
    "write_results_csv",
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
