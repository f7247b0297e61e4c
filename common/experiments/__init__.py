"""Experiment grids over the bundles: data sets x methods x seeds, generator outputs substituted into the
downstream runs, results CSV, the papers' tables, Friedman/Nemenyi statistics and plots.

Front end: ``python scripts/run_experiment.py run <grid.yaml>`` and ``... tables <output_dir>``.
"""

from common.experiments.plots import bar_plot, cd_diagram, ratio_plot, tsne_plot, write_plots
from common.experiments.report import (
    CSV_FIELDS,
    aggregate,
    build_reports,
    markdown_tables,
    read_results_csv,
    statistics_report,
    write_results_csv,
)
from common.experiments.runner import GridRunner, RunPlan, read_metrics, variant_path
from common.experiments.spec import (
    KNOWN_GENERATOR_OUTPUTS,
    DatasetSpec,
    GeneratorSpec,
    GridError,
    GridSpec,
    MethodSpec,
    MetricSpec,
    load_grid,
    parse_grid,
    resolve_refs,
    slugify,
)
from common.experiments.sweep import run_for_each

__all__ = [
    "CSV_FIELDS",
    "DatasetSpec",
    "GeneratorSpec",
    "GridError",
    "GridRunner",
    "GridSpec",
    "KNOWN_GENERATOR_OUTPUTS",
    "MethodSpec",
    "MetricSpec",
    "RunPlan",
    "aggregate",
    "bar_plot",
    "build_reports",
    "cd_diagram",
    "load_grid",
    "markdown_tables",
    "parse_grid",
    "ratio_plot",
    "read_metrics",
    "read_results_csv",
    "resolve_refs",
    "run_for_each",
    "slugify",
    "statistics_report",
    "tsne_plot",
    "variant_path",
    "write_plots",
    "write_results_csv",
]
