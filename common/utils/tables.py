"""Plain-text tables of results, shared by the metric handlers and the evaluation reports."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["format_table"]


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, default=str)


def format_table(results: Mapping[str, Any]) -> str:
    """Formats results as an aligned two-column text table.

    Args:
        results: metric name to value; floats are shown with 6 significant digits, containers as JSON.

    Returns:
        the table, one ``metric | value`` row per entry under a header row and a rule, without a final newline.
    """
    rows = [(str(k), _format_value(v)) for k, v in results.items()]
    width = max([len("metric")] + [len(k) for k, _ in rows])
    value_width = max([len("value")] + [len(v) for _, v in rows])
    lines = [f"{'metric'.ljust(width)} | value", f"{'-' * width}-+-{'-' * value_width}"]
    lines += [f"{k.ljust(width)} | {v}" for k, v in rows]
    return "\n".join(lines)
