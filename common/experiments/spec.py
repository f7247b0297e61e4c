"""Experiment grids: a YAML file naming data sets x methods x seeds of a downstream bundle, optional generator
bundles whose outputs the methods use, and what to report.

The grids reproduce the layout of the papers' comparison tables: CDA-GAN (paper 000) Tables 2, 3, 5, 6 (methods x
data sets, ACC/AUC/Recall/F1 and Dice/Sens/HD95/mIoU) and Table 7 (metric vs synthetic ratio 20-100 %); paper 002
Table III (classifiers with/without augmentation, mean and 95 % confidence interval); Vu et al. (paper 004)
Fig. 5 (metric vs number of synthetic samples) and Tables 2-3 (Friedman + Nemenyi, sec. 3.4); Han (paper 003)
Table 2 and the t-SNE of sec. 4.2.6.

Grid YAML (keys not listed are rejected, so a typo fails before anything runs)::

    name: phantom_classification
    output_dir: outputs/experiments/phantom_classification    # relative to the working folder (or `root`)
    bundle: bundles/classification          # downstream bundle; a method or data set may name its own
    train_config: configs/train.yaml        # default: the training config
    evaluate_config: configs/evaluate.yaml  # default: the evaluate overlay, merged on train_config
    metrics_file: metrics.json              # written by `evaluating` under the run's output_dir
    seeds: [0, 1]
    common_variants: [tiny.yaml]            # file names under <bundle>/configs/variants, or paths
    overrides: {max_epochs: 2}              # config ids set for every run
    vars: {phantom_args: {...}}             # values for ${vars.<key>}; a data set may add/replace its own
    metrics: [acc, auc, {name: hd95, higher_is_better: false, label: HD95}]
    error: std                              # std | sem | ci95: the "±" of the tables
    alpha: 0.05                             # Nemenyi significance level
    blocks: seeds                           # seeds | test_images: the blocks of the per-data-set statistics
    per_image_file: per_image.json          # with blocks: test_images, written by `evaluating` beside metrics_file
    datasets:
      - {name: Phantom, overrides: {...}}
      - {name: Phantom_s, split: {mode: small}}   # BraTS_s (CDA-GAN sec. 4.1), for the generators too
    methods:
      - {name: w/o DA}
      - {name: Mixup, variants: [mixup.yaml]}
      - name: CDA-GAN 40%
        variants: [synthetic.yaml]
        overrides: {synthetic_datalist: '${generators.cda_gan.synthetic_datalist}', synthetic_ratio: 0.4}
    generators:
      cda_gan:
        bundle: bundles/cda_gan
        variants: [tiny.yaml]
        overrides: {dataset_dir: '${dataset_dir}'}
        per_dataset: true                   # one generator per data set (trained on that data set)
        seed: 0
        outputs: {synthetic_datalist: cross_domain/synthetic_datalist.json}   # defaults known per bundle
        inference_runs: [{}]                # one `inference` command per item, with these extra overrides
      m_sg: {bundle: bundles/stylegan2, variants: [m_sg.yaml], inference_runs: []}   # trains only
      mc_sg:                                # runs inference only, on other generators' checkpoints
        bundle: bundles/stylegan2
        train: false
        inference_runs:
          - {variants: [mc_sg.yaml], mask_checkpoint: '${generators.m_sg.ckpt_dir}/model.pt'}
    tsne: {generator: cda_gan, real_datalist: '${dataset_dir}/datalist.json', dataset: Phantom, per_class: 300}
    ratio_plot:
      x_label: synthetic ratio (%)
      baseline: w/o DA                      # drawn at x = 0 (optional)
      curves: {CDA-GAN: {CDA-GAN 20%: 20, CDA-GAN 40%: 40}}

Data subsets: a data set's ``split`` (``mode``: ``full``, ``small`` or ``imbalanced``; ``seed``, default 0;
``datalist``, the source, default ``${dataset_dir}/datalist.json``; other keys are passed to
:func:`common.data.make_split_datalist`, e.g. ``fraction`` or ``num_positive``/``num_negative``) is one subset of
the source datalist, the same for every seed and method, given as the ``datalist`` of every run on that data set
(with ``split_mode: full``, so that the downstream bundle does not subsample again) **and of its generators**: a
generator sees only the downstream models' training data (CDA-GAN sec. 4.1 BraTS_s, sec. 5.7; Han sec. 4.2: "during
the GAN training, we only use the training set to be fair"). Generators of a grid with a ``split`` must therefore be
``per_dataset``, and no override or var may name ``${dataset_dir}/datalist.json``, the whole source: a method or
generator that reads real images beside its ``datalist`` (classic-DA draws, a real reference, a pool) takes them from
a per-data-set generator that copies the subset it was given. Do not combine ``split`` with a downstream variant that
subsamples (``small.yaml``, ``imbalanced.yaml``). A method's own ``split`` (the same keys) replaces the data set's
for that method's runs, not for the generators: ``split: {mode: full}`` with ``reference: true`` is the upper bound
that trains on every training patient of the source and is tested on the same test patients; a ``reference`` row is a
bound, not a method, and stays out of the bold best values and the statistics (:mod:`common.experiments.report`).

Runs (see :mod:`common.experiments.runner`): ``training`` with ``[train_config, <variants>..., overrides]`` and
``evaluating`` with ``[train_config, evaluate_config, <variants>..., overrides]``: the evaluate config is an overlay
always merged on the training config. A generator runs ``training`` with ``[train_config, <variants>...]`` and
``inference`` with ``[inference_config, <variants>...]``, once per item of ``inference_runs`` (its overrides on top
of the generator's, e.g. a second rule or section of the same trained networks); an item's ``variants`` (files as
the generator's) are merged after the generator's own, before the overrides. ``inference_runs: []`` makes a generator
that only trains (its outputs are ``ckpt_dir`` and ``output_dir``; it may not declare ``outputs``), ``train: false``
one that only runs inference, on the checkpoints that its overrides name (``${generators.<other>.ckpt_dir}``).
A generator with ``evaluate_config`` (e.g. ``configs/evaluate.yaml``) runs ``evaluating`` last, with
``[train_config, evaluate_config, <variants>...]`` and the generator's overrides, then its ``evaluate_overrides``
(e.g. which inference output to score, for a generator with several inference runs; also with ``train: false``);
its metrics JSON (``metrics_file``, default ``metrics.json`` under its ``eval`` folder, e.g. FID/KID against real
images and their real-vs-real references) is its output ``metrics`` and a column of the grid's ``generators.md``.
A generator's overrides and inference runs may refer to the outputs of the generators declared before it (not to
itself or later ones); they run in the order of declaration, and a ``per_dataset: false`` generator may not refer to a
per-data-set one.

Statistics blocks (paper 004 sec. 3.4: the Friedman test "was used with the predictions made on the test set"):
with ``blocks: seeds`` (the default) the per-data-set Friedman/Nemenyi tests rank the methods within each seed;
with ``blocks: test_images`` each run's ``evaluating`` must also write ``per_image_file`` (``{"ids": [...],
<metric>: [one value per image]}``, e.g. ``common.handlers.SegmentationMetricsHandler``'s ``per_image_file``),
and for the metrics it holds the blocks are the test images (each image's value averaged over the seeds), the
tables' ``mean ± err`` and the ratio plot are over test images too (see :mod:`common.experiments.report`).

Substitutions: a string value ``${key}`` is replaced by the value of ``key`` (keeping its type when the string is
only the reference), with keys ``output_dir`` (absolute), ``dataset`` (the data set's folder name),
``dataset_dir`` (``<output_dir>/data/<dataset>``, the default ``dataset_dir`` override of every run, so data
sets with different phantom arguments never share a folder; a data set's own ``dataset_dir`` key (a path resolved as the other
paths of the grid) names an existing folder instead, e.g. a ``scripts/prepare_data.py``
conversion, whose ``datalist.json`` then is the source of its ``split`` and of its generators, and no phantom is
made there), ``seed``, ``run_dir``, ``vars.<key>`` and
``generators.<name>.<output>`` (``ckpt_dir``, ``output_dir`` and the ``outputs`` of the generator). The x values of
``ratio_plot`` curves may be ``${vars.<key>}`` references to the grid's ``vars`` (resolved when the grid is read), so
that one ``vars`` entry sets a count for the generator runs and the plot.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from common.data.splits import SPLIT_MODES

__all__ = [
    "BLOCKS",
    "DatasetSpec",
    "GeneratorSpec",
    "GridError",
    "GridSpec",
    "KNOWN_GENERATOR_OUTPUTS",
    "generator_run_dir",
    "MethodSpec",
    "MetricSpec",
    "default_higher_is_better",
    "load_grid",
    "parse_grid",
    "resolve_refs",
    "slugify",
]

KNOWN_GENERATOR_OUTPUTS: dict[str, dict[str, str]] = {
    # CrossDomainSynthesis (common/evaluation/cross_domain.py) under inference.yaml's synthetic_dir
    "cda_gan": {
        "synthetic_datalist": "cross_domain/synthetic_datalist.json",  # Algorithm 2
        "enhanced_datalist": "cross_domain/enhanced_datalist.json",  # Algorithm 3
    },
    # SyntheticDatalistWriter under inference.yaml's synthetic_dir
    "dcgan_wgan": {"synthetic_datalist": "synthetic/datalist.json"},
    "ga_unet": {"synthetic_datalist": "synthetic/datalist.json"},
}
"""Outputs of the project's generator bundles, relative to their inference ``output_dir``."""

_LOWER_IS_BETTER = ("hd95", "hd", "asd", "assd", "fid", "kid", "mmd", "loss", "error", "fpr", "fnr")

_REF = re.compile(r"\$\{([^{}]+)\}")


def default_higher_is_better(metric: str) -> bool:
    """``False`` for distance/error metrics (HD95, FID, KID, losses), ``True`` otherwise."""
    name = metric.lower()
    return not any(name == k or name.startswith(k + "_") or name.endswith("_" + k) for k in _LOWER_IS_BETTER)


def slugify(name: str) -> str:
    """A folder name for a data set or method name: ``"CDA-GAN 40%"`` -> ``"cda-gan_40pct"``."""
    s = name.strip().replace("%", "pct").replace("/", "_")
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_.").lower()
    if not s:
        raise ValueError(f"name {name!r} gives an empty folder name.")
    return s


@dataclass
class MetricSpec:
    """A reported metric: key in ``metrics.json``, column label, ranking direction."""

    name: str
    label: str
    higher_is_better: bool


@dataclass
class DatasetSpec:
    """A data set column group: config variants and overrides applied to every run on it."""

    name: str
    slug: str
    variants: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    bundle: str | None = None
    split: dict[str, Any] | None = None
    dataset_dir: str | None = None
    """An existing data folder (e.g. a ``scripts/prepare_data.py`` conversion) instead of ``<output_dir>/data/<slug>``."""


@dataclass
class MethodSpec:
    """A table row: config variants and overrides of the downstream bundle."""

    name: str
    slug: str
    variants: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    bundle: str | None = None
    split: dict[str, Any] | None = None
    """The subset of the source datalist that this method's runs train on, instead of the data set's ``split``
    (never its generators'): ``{mode: full}`` for an upper bound on every training patient."""
    reference: bool = False
    """A bound, not a method (e.g. an upper bound): in the tables, left out of the bold best values, the
    Friedman/Nemenyi tests, the CD diagrams and the test-set sizing."""


@dataclass
class GeneratorSpec:
    """A generator bundle run (``training`` then ``inference``) whose outputs methods refer to."""

    name: str
    bundle: str
    variants: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    per_dataset: bool = False
    seed: int = 0
    train_config: str = "configs/train.yaml"
    inference_config: str = "configs/inference.yaml"
    outputs: dict[str, str] = field(default_factory=dict)
    inference_runs: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    """One ``inference`` command per item: its overrides, and optional ``variants`` merged after the generator's."""
    train: bool = True
    """``False``: no ``training`` command (inference on checkpoints that the overrides name)."""
    evaluate_config: str | None = None
    """An evaluate overlay (e.g. ``configs/evaluate.yaml``): an ``evaluating`` command after the inference ones, whose
    metrics JSON (``metrics_file`` under the generator's ``eval``) goes to the grid's ``generators.md``."""
    evaluate_overrides: dict[str, Any] = field(default_factory=dict)
    """Overrides of the ``evaluating`` command alone, merged after the generator's ``overrides``."""
    metrics_file: str = "metrics.json"


def generator_run_dir(output_dir: str | os.PathLike, generator: GeneratorSpec, dataset: DatasetSpec | None) -> Path:
    """The folder of one generator instance: ``<output_dir>/generators/<name>[/<data set slug>]``."""
    return Path(output_dir) / "generators" / generator.name / (dataset.slug if dataset else "")


@dataclass
class GridSpec:
    """A parsed and validated experiment grid (see the module docstring for the YAML)."""

    name: str
    output_dir: str
    bundle: str | None
    seeds: list[int]
    datasets: list[DatasetSpec]
    methods: list[MethodSpec]
    metrics: list[MetricSpec]
    generators: dict[str, GeneratorSpec] = field(default_factory=dict)
    common_variants: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    train_config: str = "configs/train.yaml"
    evaluate_config: str = "configs/evaluate.yaml"
    metrics_file: str = "metrics.json"
    error: str = "std"
    alpha: float = 0.05
    digits: int = 4
    timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    tsne: dict[str, Any] | None = None
    ratio_plot: dict[str, Any] | None = None
    blocks: str = "seeds"
    per_image_file: str = "per_image.json"
    source: str | None = None

    def metric(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        return MetricSpec(name, name, default_higher_is_better(name))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (written to ``<output_dir>/grid.json``)."""
        return asdict(self)


_GRID_KEYS = {
    "name", "output_dir", "bundle", "seeds", "datasets", "methods", "metrics", "generators", "common_variants",
    "overrides", "vars", "train_config", "evaluate_config", "metrics_file", "error", "alpha", "digits",
    "timeout_s", "env", "tsne", "ratio_plot", "root", "blocks", "per_image_file",
}  # fmt: skip
_DATASET_KEYS = {"name", "variants", "overrides", "vars", "bundle", "split", "dataset_dir"}
_METHOD_KEYS = {"name", "variants", "overrides", "bundle", "split", "reference"}
_GENERATOR_KEYS = {
    "bundle", "variants", "overrides", "per_dataset", "seed", "train_config", "inference_config", "outputs",
    "inference_runs", "train", "evaluate_config", "evaluate_overrides", "metrics_file",
}  # fmt: skip
_SPLIT_IDS = ("datalist", "split_mode")  # config ids a data set's `split` sets in every run
_ERRORS = ("std", "sem", "ci95")
BLOCKS = ("seeds", "test_images")
"""The blocks of the per-data-set Friedman/Nemenyi tests: the seeds, or the test images (paper 004 sec. 3.4)."""


class GridError(ValueError):
    """An invalid grid file; the message names the file and the offending entry."""


def _check_keys(where: str, item: Mapping, allowed: set[str], src: str) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise GridError(f"{src}: {where} has unknown keys {unknown}; allowed: {sorted(allowed)}.")


def _str_list(value: Any, where: str, src: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise GridError(f"{src}: {where} must be a list of file names, got {value!r}.")
    return list(value)


def _mapping(value: Any, where: str, src: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise GridError(f"{src}: {where} must be a mapping, got {type(value).__name__}.")
    return dict(value)


def _named_items(value: Any, what: str, src: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise GridError(f"{src}: `{what}` must be a non-empty list.")
    items = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise GridError(f"{src}: {what}[{i}] needs a `name` string, got {item!r}.")
        items.append(dict(item))
    names = [it["name"] for it in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GridError(f"{src}: duplicate {what} names {dupes}.")
    slugs = [slugify(n) for n in names]
    clash = sorted({s for s in slugs if slugs.count(s) > 1})
    if clash:
        raise GridError(f"{src}: {what} names map to the same folder name(s) {clash}; rename them.")
    return items


def _split(value: Any, where: str, src: str) -> dict[str, Any] | None:
    if value is None:
        return None
    split = _mapping(value, where, src)
    mode = str(split.get("mode", "")).strip().lower()
    if mode not in SPLIT_MODES:
        raise GridError(f"{src}: {where} needs a `mode` among {list(SPLIT_MODES)}, got {split.get('mode')!r}.")
    seed = split.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GridError(f"{src}: {where}.seed must be an integer, got {seed!r}.")
    return {**split, "mode": mode, "seed": seed}


def _reference(value: Any, where: str, src: str) -> bool:
    if not isinstance(value, bool):
        raise GridError(f"{src}: {where} `reference` must be true or false, got {value!r}.")
    return value


def _inference_runs(value: Any, where: str, src: str) -> list[dict[str, Any]]:
    """The ``inference_runs`` items: override mappings, each with an optional ``variants`` list of file names."""
    if value is None:
        return [{}]
    if not isinstance(value, list):
        raise GridError(f"{src}: {where} must be a list of override mappings, got {value!r}.")
    runs = []
    for i, v in enumerate(value):
        run = _mapping(v, f"{where}[{i}]", src)
        if "variants" in run:
            run["variants"] = _str_list(run["variants"], f"{where}[{i}].variants", src)
        runs.append(run)
    return runs


def parse_grid(data: Mapping[str, Any], source: str = "<grid>", root: str | os.PathLike | None = None) -> GridSpec:
    """Validates a grid mapping and returns its :class:`GridSpec`.

    Args:
        data: the YAML content.
        source: the file name used in error messages.
        root: folder relative paths (``output_dir``, bundles, variant paths) are resolved against; the grid's own
            ``root`` key, else the current folder.

    Raises:
        GridError: naming ``source`` and the bad entry.
    """
    if not isinstance(data, Mapping):
        raise GridError(f"{source}: a grid must be a mapping, got {type(data).__name__}.")
    _check_keys("the grid", data, _GRID_KEYS, source)
    for key in ("name", "output_dir", "datasets", "methods"):
        if key not in data:
            raise GridError(f"{source}: missing required key `{key}`.")
    base = Path(data.get("root") or root or os.getcwd()).expanduser().resolve()

    def _path(p: str | None) -> str | None:
        return None if p is None else str((base / os.path.expanduser(p)).resolve())

    seeds = data.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise GridError(f"{source}: `seeds` must be a non-empty list of integers, got {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise GridError(f"{source}: `seeds` has duplicates: {seeds}.")

    datasets = []
    for item in _named_items(data["datasets"], "datasets", source):
        _check_keys(f"dataset {item['name']!r}", item, _DATASET_KEYS, source)
        datasets.append(
            DatasetSpec(
                name=item["name"],
                slug=slugify(item["name"]),
                variants=_str_list(item.get("variants"), f"dataset {item['name']!r} variants", source),
                overrides=_mapping(item.get("overrides"), f"dataset {item['name']!r} overrides", source),
                vars=_mapping(item.get("vars"), f"dataset {item['name']!r} vars", source),
                bundle=_path(item.get("bundle")),
                split=_split(item.get("split"), f"dataset {item['name']!r} split", source),
                dataset_dir=_path(item.get("dataset_dir")),
            )
        )
    methods = []
    for item in _named_items(data["methods"], "methods", source):
        _check_keys(f"method {item['name']!r}", item, _METHOD_KEYS, source)
        methods.append(
            MethodSpec(
                name=item["name"],
                slug=slugify(item["name"]),
                variants=_str_list(item.get("variants"), f"method {item['name']!r} variants", source),
                overrides=_mapping(item.get("overrides"), f"method {item['name']!r} overrides", source),
                bundle=_path(item.get("bundle")),
                split=_split(item.get("split"), f"method {item['name']!r} split", source),
                reference=_reference(item.get("reference", False), f"method {item['name']!r}", source),
            )
        )
    bundle = _path(data.get("bundle"))
    for m in methods:
        for d in datasets:
            if (m.bundle or d.bundle or bundle) is None:
                raise GridError(f"{source}: no `bundle` for method {m.name!r} on {d.name!r}; give a grid-level one.")

    metrics = []
    for i, m in enumerate(data.get("metrics") or []):
        if isinstance(m, str):
            m = {"name": m}
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str):
            raise GridError(f"{source}: metrics[{i}] must be a name or a mapping with `name`, got {m!r}.")
        _check_keys(f"metrics[{i}]", m, {"name", "label", "higher_is_better"}, source)
        hib = m.get("higher_is_better", default_higher_is_better(m["name"]))
        if not isinstance(hib, bool):
            raise GridError(f"{source}: metrics[{i}].higher_is_better must be true/false, got {hib!r}.")
        metrics.append(MetricSpec(m["name"], str(m.get("label", m["name"])), hib))

    generators = {}
    for gname, g in _mapping(data.get("generators"), "`generators`", source).items():
        if not isinstance(g, Mapping) or "bundle" not in g:
            raise GridError(f"{source}: generator {gname!r} needs a `bundle`.")
        _check_keys(f"generator {gname!r}", g, _GENERATOR_KEYS, source)
        gbundle = _path(g["bundle"])
        runs = _inference_runs(g.get("inference_runs"), f"generator {gname!r} inference_runs", source)
        train = g.get("train", True)
        if not isinstance(train, bool):
            raise GridError(f"{source}: generator {gname!r} train must be true/false, got {train!r}.")
        if not runs and not train:
            raise GridError(f"{source}: generator {gname!r} has train: false and no inference_runs: it runs nothing.")
        if g.get("evaluate_overrides") and g.get("evaluate_config") is None:
            raise GridError(f"{source}: generator {gname!r} has evaluate_overrides but no evaluate_config.")
        declared = _mapping(g.get("outputs"), f"generator {gname!r} outputs", source)
        if not runs and declared:
            raise GridError(
                f"{source}: generator {gname!r} only trains (inference_runs: []) but declares outputs "
                f"{sorted(declared)}; refer to its ckpt_dir instead."
            )
        # the known outputs are those of the bundle's inference
        outputs = dict(KNOWN_GENERATOR_OUTPUTS.get(Path(gbundle).name, {})) if runs else {}
        outputs.update({str(k): str(v) for k, v in declared.items()})
        generators[str(gname)] = GeneratorSpec(
            name=str(gname),
            bundle=gbundle,
            variants=_str_list(g.get("variants"), f"generator {gname!r} variants", source),
            overrides=_mapping(g.get("overrides"), f"generator {gname!r} overrides", source),
            per_dataset=bool(g.get("per_dataset", False)),
            seed=int(g.get("seed", 0)),
            train_config=str(g.get("train_config", "configs/train.yaml")),
            inference_config=str(g.get("inference_config", "configs/inference.yaml")),
            outputs=outputs,
            inference_runs=runs,
            train=train,
            evaluate_config=None if g.get("evaluate_config") is None else str(g["evaluate_config"]),
            evaluate_overrides=_mapping(g.get("evaluate_overrides"), f"generator {gname!r} evaluate_overrides", source),
            metrics_file=str(g.get("metrics_file", "metrics.json")),
        )

    error = data.get("error", "std")
    if error not in _ERRORS:
        raise GridError(f"{source}: `error` must be one of {_ERRORS}, got {error!r}.")
    blocks = data.get("blocks", "seeds")
    if blocks not in BLOCKS:
        raise GridError(f"{source}: `blocks` must be one of {BLOCKS}, got {blocks!r}.")
    grid_vars = _mapping(data.get("vars"), "`vars`", source)
    spec = GridSpec(
        name=str(data["name"]),
        output_dir=_path(str(data["output_dir"])),
        bundle=bundle,
        seeds=list(seeds),
        datasets=datasets,
        methods=methods,
        metrics=metrics,
        generators=generators,
        common_variants=_str_list(data.get("common_variants"), "`common_variants`", source),
        overrides=_mapping(data.get("overrides"), "`overrides`", source),
        vars=grid_vars,
        train_config=str(data.get("train_config", "configs/train.yaml")),
        evaluate_config=str(data.get("evaluate_config", "configs/evaluate.yaml")),
        metrics_file=str(data.get("metrics_file", "metrics.json")),
        error=error,
        alpha=float(data.get("alpha", 0.05)),
        digits=int(data.get("digits", 4)),
        timeout_s=None if data.get("timeout_s") is None else float(data["timeout_s"]),
        env={str(k): str(v) for k, v in _mapping(data.get("env"), "`env`", source).items()},
        tsne=_mapping(data.get("tsne"), "`tsne`", source) or None,
        ratio_plot=_ratio_plot(data.get("ratio_plot"), grid_vars, source),
        blocks=blocks,
        per_image_file=str(data.get("per_image_file", "per_image.json")),
        source=source,
    )
    _check_references(spec)
    _check_splits(spec)
    return spec


def _ratio_plot(value: Any, grid_vars: Mapping[str, Any], src: str) -> dict[str, Any] | None:
    """The ``ratio_plot`` entry with ``${vars.<key>}`` x values replaced by the grid's ``vars`` (numbers)."""
    rp = _mapping(value, "`ratio_plot`", src)
    if not rp:
        return None
    curves = rp.get("curves")
    if isinstance(curves, Mapping):
        resolved = {}
        for curve, points in curves.items():
            if isinstance(points, Mapping):
                try:
                    points = resolve_refs(dict(points), {"vars": grid_vars})
                except (KeyError, RuntimeError) as e:
                    raise GridError(f"{src}: ratio_plot.curves.{curve}: {e}") from e
                bad = {m: x for m, x in points.items() if isinstance(x, bool) or not isinstance(x, (int, float))}
                if bad:
                    raise GridError(f"{src}: ratio_plot.curves.{curve} x values must be numbers, got {bad}.")
            resolved[curve] = points
        rp["curves"] = resolved
    return rp


_WHOLE_DATALIST = "${dataset_dir}/datalist.json"


def _check_splits(spec: GridSpec) -> None:
    """A data set's ``split`` is the only source of the ``datalist`` of its runs and of per-data-set generators, and
    nothing else names the whole data set's datalist."""
    src = spec.source
    for m in spec.methods:
        clash = [k for k in _SPLIT_IDS if k in m.overrides]
        if m.split is not None and clash:
            raise GridError(f"{src}: method {m.name!r} overrides set {clash}, which its own `split` sets.")
    split_sets = [d.name for d in spec.datasets if d.split is not None]
    if not split_sets:
        return
    shared = sorted(g.name for g in spec.generators.values() if not g.per_dataset)
    if shared:
        raise GridError(
            f"{src}: data sets {split_sets} train on a subset (`split`) but generator(s) {shared} are shared by all "
            "data sets (per_dataset: false) and would see more than the downstream training data; set per_dataset: "
            "true."
        )
    for d in spec.datasets:
        if d.split is None:
            continue
        sources = [("the grid's overrides", spec.overrides), (f"data set {d.name!r} overrides", d.overrides)]
        sources += [(f"method {m.name!r} overrides", m.overrides) for m in spec.methods]
        sources += [(f"generator {g.name!r} overrides", g.overrides) for g in spec.generators.values()]
        for where, overrides in sources:
            clash = [k for k in _SPLIT_IDS if k in overrides]
            if clash:
                raise GridError(
                    f"{src}: {where} set {clash}, which data set {d.name!r}'s `split` sets; give the source datalist "
                    "as split.datalist."
                )
        sources += [("`vars`", spec.vars), (f"data set {d.name!r} vars", d.vars)]
        for where, value in sources:
            if _WHOLE_DATALIST in json.dumps(value):
                raise GridError(
                    f"{src}: {where} name {_WHOLE_DATALIST}, the whole data set's datalist, while data set "
                    f"{d.name!r} trains on a subset (`split`): its other patients would reach the runs. Name the "
                    "subset instead: the `datalist` each run and per-data-set generator gets (e.g. a generator that "
                    "copies it, like real_subset in scripts/experiments/thesis_classification_table2.yaml)."
                )


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REF.findall(value)
    if isinstance(value, Mapping):
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _references(v)]
    return []


def _check_references(spec: GridSpec) -> None:
    """Generator references name a declared generator and output; ratio/t-SNE entries name declared methods."""
    src = spec.source
    sources = [spec.overrides, spec.vars, spec.tsne or {}]
    sources += [d.overrides for d in spec.datasets] + [d.vars for d in spec.datasets]
    sources += [m.overrides for m in spec.methods] + [g.overrides for g in spec.generators.values()]
    sources += [d.split or {} for d in spec.datasets] + [g.inference_runs for g in spec.generators.values()]
    sources += [g.evaluate_overrides for g in spec.generators.values()]
    for ref in _references(sources):
        parts = ref.strip().split(".")
        if parts[0] == "generators":
            if len(parts) != 3 or parts[1] not in spec.generators:
                raise GridError(f"{src}: reference ${{{ref}}} names no declared generator ({sorted(spec.generators)}).")
            allowed = {"ckpt_dir", "output_dir", *spec.generators[parts[1]].outputs}
            if parts[2] not in allowed:
                raise GridError(f"{src}: reference ${{{ref}}}: generator {parts[1]!r} has outputs {sorted(allowed)}.")
        elif parts[0] not in ("output_dir", "dataset", "dataset_dir", "seed", "run_dir", "vars"):
            raise GridError(f"{src}: unknown reference ${{{ref}}}.")
    order = list(spec.generators)
    for g in spec.generators.values():
        for ref in _references([g.overrides, g.inference_runs, g.evaluate_overrides]):
            parts = ref.strip().split(".")
            if parts[0] != "generators":
                continue
            other = spec.generators[parts[1]]
            if order.index(other.name) >= order.index(g.name):
                raise GridError(
                    f"{src}: generator {g.name!r} refers to ${{{ref}}}; a generator may only use the generators "
                    f"declared before it ({order[: order.index(g.name)]})."
                )
            if other.per_dataset and not g.per_dataset:
                raise GridError(
                    f"{src}: generator {g.name!r} (per_dataset: false) refers to per-data-set generator "
                    f"{other.name!r}; make {g.name!r} per_dataset too."
                )
    method_names = {m.name for m in spec.methods}
    if spec.ratio_plot:
        curves = spec.ratio_plot.get("curves")
        if not isinstance(curves, Mapping) or not curves:
            raise GridError(f"{src}: ratio_plot.curves must map a curve name to {{method name: x value}}.")
        for curve, points in curves.items():
            if not isinstance(points, Mapping):
                raise GridError(f"{src}: ratio_plot.curves.{curve} must map method names to x values.")
            missing = sorted(set(points) - method_names)
            if missing:
                raise GridError(f"{src}: ratio_plot curve {curve!r} names unknown methods {missing}.")
        base = spec.ratio_plot.get("baseline")
        if base is not None and base not in method_names:
            raise GridError(f"{src}: ratio_plot.baseline {base!r} is not a method.")
    if spec.tsne:
        g = spec.tsne.get("generator")
        if g is not None and g not in spec.generators:
            raise GridError(f"{src}: tsne.generator {g!r} is not a declared generator.")
        if g is None and "synthetic_datalist" not in spec.tsne:
            raise GridError(f"{src}: tsne needs `generator` or `synthetic_datalist`.")
        d = spec.tsne.get("dataset")
        if d is not None and d not in {x.name for x in spec.datasets}:
            raise GridError(f"{src}: tsne.dataset {d!r} is not a data set.")


def load_grid(path: str | os.PathLike, root: str | os.PathLike | None = None) -> GridSpec:
    """Reads and validates a grid YAML file (see the module docstring).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        GridError: for an invalid grid, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file {path} does not exist.")
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise GridError(f"{path}: not valid YAML: {e}") from e
    return parse_grid(data, source=str(path), root=root)


def _lookup(key: str, context: Mapping[str, Any]) -> Any:
    cur: Any = context
    for part in key.strip().split("."):
        if isinstance(cur, BaseException):
            break
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(f"${{{key}}} cannot be resolved (no {part!r}).")
    if isinstance(cur, BaseException):  # a failed generator: its error is the reason
        raise RuntimeError(f"${{{key}}} is unavailable: {cur}")
    return cur


def resolve_refs(value: Any, context: Mapping[str, Any]) -> Any:
    """Replaces ``${a.b}`` references in (nested) strings with values from ``context``.

    A string that is exactly one reference takes the referenced value with its type (a number, a dict); a
    reference inside a longer string is formatted with ``str``. A context value that is an exception (a
    generator that failed) raises :class:`RuntimeError` carrying it.

    Raises:
        KeyError: for an unknown reference.
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return copy.deepcopy(_lookup(whole.group(1), context))
        return _REF.sub(lambda m: str(_lookup(m.group(1), context)), value)
    if isinstance(value, Mapping):
        return {k: resolve_refs(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, context) for v in value]
    return value
