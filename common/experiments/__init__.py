"""Experiment grids over the bundles: data sets x methods x seeds, generator outputs substituted into the
downstream runs, results CSV, the papers' tables, Friedman/Nemenyi statistics and plots.

Modules: :mod:`~common.experiments.spec` (the grid file), :mod:`~common.experiments.runner` (the bundle commands),
:mod:`~common.experiments.results` (``results.csv`` and its aggregation), :mod:`~common.experiments.report` (tables
and statistics), :mod:`~common.experiments.plots` (figures), :mod:`~common.experiments.sizing` (test-set sizes). A
tool package: ``import common`` does not import it, and bundle configs (a grid's overrides included) do not use it.

Front end: ``python scripts/run_experiment.py run <grid.yaml>`` and ``... tables <output_dir>``.
"""

from common.experiments.plots import bar_plot, cd_diagram, ratio_plot, tsne_plot, write_plots
from common.experiments.report import build_reports, markdown_tables, statistics_report
from common.experiments.results import (
    CSV_FIELDS,
    PER_IMAGE_FIELDS,
    aggregate,
    aggregate_per_image,
    case_intervals,
    cell_aggregates,
    collect_per_image,
    patient_of,
    read_per_image,
    read_per_image_csv,
    read_results_csv,
    write_per_image_csv,
    write_results_csv,
    write_summary_csv,
)
from common.experiments.runner import (
    GridRunner,
    RunPlan,
    RunStep,
    read_metrics,
    recorded_config_files,
    split_expression,
    variant_path,
)
from common.experiments.sizing import (
    auc_minimum_detectable_difference,
    auc_sample_size,
    hanley_mcneil_se,
    minimum_detectable_difference,
    paired_sample_size,
    two_sample_size,
)
from common.experiments.spec import (
    BLOCKS,
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

__all__ = [
    "auc_minimum_detectable_difference",
    "auc_sample_size",
    "case_intervals",
    "collect_per_image",
    "hanley_mcneil_se",
    "minimum_detectable_difference",
    "paired_sample_size",
    "patient_of",
    "two_sample_size",
    "write_summary_csv",
    "BLOCKS",
    "CSV_FIELDS",
    "DatasetSpec",
    "GeneratorSpec",
    "GridError",
    "GridRunner",
    "GridSpec",
    "KNOWN_GENERATOR_OUTPUTS",
    "MethodSpec",
    "MetricSpec",
    "PER_IMAGE_FIELDS",
    "RunPlan",
    "RunStep",
    "aggregate",
    "aggregate_per_image",
    "bar_plot",
    "build_reports",
    "cd_diagram",
    "cell_aggregates",
    "load_grid",
    "markdown_tables",
    "parse_grid",
    "ratio_plot",
    "read_metrics",
    "recorded_config_files",
    "read_per_image",
    "read_per_image_csv",
    "read_results_csv",
    "resolve_refs",
    "slugify",
    "split_expression",
    "statistics_report",
    "tsne_plot",
    "variant_path",
    "write_per_image_csv",
    "write_plots",
    "write_results_csv",
]
