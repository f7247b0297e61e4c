"""Command line front end of :py:mod:`common.experiments`: run an experiment grid, rebuild its reports.

Examples::

    python scripts/run_experiment.py run scripts/experiments/phantom_classification.yaml
    python scripts/run_experiment.py scripts/experiments/phantom_classification.yaml --dry_run   # same as run
    python scripts/run_experiment.py tables outputs/experiments/phantom_classification

``run`` trains and evaluates every (data set, method, seed) of the grid (after its generator bundles), skipping
runs that are already complete, and writes ``results.csv``, ``tables.md``, ``statistics.md/.json`` and
``plots/*.png`` under the grid's ``output_dir``; it exits with status 1 when any run or generator failed (after
writing the reports), so that scripts and CI notice. ``tables`` rebuilds the reports from ``results.csv``.
"""

from __future__ import annotations

import sys

import fire
from common.experiments import GridRunner, build_reports, load_grid


def run(grid: str, dry_run: bool = False, force: bool = False, python: str = sys.executable) -> str:
    """Runs an experiment grid.

    Args:
        grid: the grid YAML file.
        dry_run: print the commands, run nothing.
        force: re-run runs that are already complete.
        python: interpreter of the bundle runs.

    Returns:
        the output folder.

    Raises:
        SystemExit: with status 1 when a run or a generator failed (the reports are written first).
    """
    spec = load_grid(grid)
    runner = GridRunner(spec, python=python, dry_run=dry_run, force=force, log=print)
    runner.run()
    failed = runner.failed
    if failed:
        names = "; ".join(_describe(r) for r in failed)
        print(f"{len(failed)} failed: {names}; see {spec.output_dir}/tables.md", file=sys.stderr)
        raise SystemExit(1)
    return spec.output_dir


def _describe(record: dict) -> str:
    """``generator g | A`` or ``A | method | seed 0`` for a run record."""
    if record.get("kind") == "generator":
        return f"generator {record['name']}" + (f" | {record['dataset']}" if record.get("dataset") else "")
    return f"{record.get('dataset')} | {record.get('method')} | seed {record.get('seed')}"


def tables(output_dir: str) -> str:
    """Rebuilds tables.md, statistics.md/.json and plots/ from ``<output_dir>/results.csv``."""
    build_reports(output_dir, log=print)
    return output_dir


COMMANDS = {"run": run, "tables": tables}


def main(argv: list[str] | None = None) -> None:
    """``run_experiment.py <grid.yaml> ...`` is short for ``run_experiment.py run <grid.yaml> ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith((".yaml", ".yml")):
        argv.insert(0, "run")
    fire.Fire(COMMANDS, command=argv)


if __name__ == "__main__":
    main()
