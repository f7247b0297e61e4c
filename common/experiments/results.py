"""The results of a grid: ``results.csv`` and its aggregation over seeds, shared by the tables and the plots.

``results.csv`` is in long format, one row per (run, metric): ``dataset, method, seed, metric, value, status,
run_dir, error``; a failed run has one row with an empty ``metric``/``value``, ``status = failed`` and its error.
Long format keeps grids whose tasks report different metrics (classification and segmentation) in one file and
reads directly into ``pandas.read_csv(...).pivot_table(...)``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from common.experiments.spec import GridSpec
from common.metrics.statistics import mean_confidence_interval
from common.utils import atomic_write_text

__all__ = ["CSV_FIELDS", "aggregate", "metrics_of", "ratio_curves", "read_results_csv", "write_results_csv"]

CSV_FIELDS = ["dataset", "method", "seed", "metric", "value", "status", "run_dir", "error"]


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
