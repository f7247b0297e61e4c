"""Writes the results page ``docs/results.md`` from ``docs/results/summary.yaml`` and the result files it names.

Per paper and task, each method's phantom result against its baseline and the calibrated tasks' baseline and upper
bound (:py:mod:`common.experiments.summary`). To add a grid run: copy its output folder's ``grid.json`` and
``results.csv`` under ``docs/results/grids/<name>/``, add an entry to ``summary.yaml`` and rerun::

    python scripts/results_summary.py                          # writes docs/results.md
    python scripts/results_summary.py --check true             # exits 1 if docs/results.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

import fire
from common.experiments.summary import build_results_page
from common.utils import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = str(ROOT / "docs" / "results" / "summary.yaml")
PAGE = str(ROOT / "docs" / "results.md")


def main(summary: str = SUMMARY, output: str = PAGE, check: bool = False) -> None:
    """Builds the page; with ``check``, compares it with ``output`` instead of writing it.

    Args:
        summary: the summary YAML (its paths are relative to its folder).
        output: the page to write (or to check).
        check: do not write; exit with status 1 when ``output`` differs from the page the results give.
    """
    page = build_results_page(summary)
    if check:
        current = Path(output).read_text() if Path(output).is_file() else None
        if current != page:
            print(f"{output} is out of date: run python scripts/results_summary.py", file=sys.stderr)
            sys.exit(1)
        print(f"{output} is up to date.")
        return
    atomic_write_text(page, output)
    print(f"wrote {output}")


if __name__ == "__main__":
    fire.Fire(main)
