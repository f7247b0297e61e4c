"""Runs an experiment grid: generator bundles first, then one downstream run per (data set, method, seed).

A run is two MONAI bundle commands in a subprocess (so a crash or leak of one run cannot touch the others)::

    python -m monai.bundle run training   --config_file "[<bundle>/configs/train.yaml, <variants>..., overrides.yaml]"
        --ckpt_dir <run>/models --output_dir <run>/eval --seed <seed>
    python -m monai.bundle run evaluating --config_file
        "[<bundle>/configs/train.yaml, <bundle>/configs/evaluate.yaml, <variants>..., overrides.yaml]" ...

The evaluate config is an overlay always merged on the training config, before the same variant files. A generator
is ``training`` (``[train.yaml, <variants>..., overrides.yaml]``; left out with ``train: false``) then one
``inference`` command (``[inference.yaml, <variants>..., <the item's variants>..., overrides.yaml]``) per item of its
``inference_runs``, a non-empty item's overrides in a last file (``overrides_inference.yaml``,
``overrides_inference_1.yaml``, ...). Generators run in the order of declaration, each planned just before it runs,
so that its overrides can name the ``ckpt_dir`` or outputs of the generators before it (MC-SG's inference on the
M-SG and C-SG checkpoints); a generator whose referenced generator failed fails before it starts.

A data set with a ``split`` gives every run on it, and each of its generators, a ``datalist`` that is the same
subset of the source datalist (:func:`common.data.make_split_datalist`, evaluated in the bundle process, after its
``initialize`` has written the phantom; the file is ``<run>/split_datalist.json``): the generator sees exactly the
downstream training data. A method's own ``split`` replaces the data set's in that method's runs only (an upper
bound on every training patient).

Variants are merged in the order: the grid's ``common_variants``, the data set's, the method's. The config ids
of the grid's ``overrides``, then the data set's, then the method's (later wins; ``dataset_dir`` defaults to
``<output_dir>/data/<dataset>``) are written, with ``${...}`` references resolved, to ``<run>/overrides.yaml``,
the last file of the list: YAML keeps their types exactly (a dict, ``null``), which command-line values do not.
Each run's folder holds ``models/``, ``eval/`` (with the bundle's ``metrics.json``), ``logs/<command>.log`` and
``run.json`` (status, commands, metrics or error). With ``blocks: test_images`` a run must also write the grid's
``per_image_file`` beside ``metrics.json``; its values go to ``run.json`` (``per_image``) and ``per_image.csv``.

On a CPU without AMX the runner measures bf16 against fp32 once and gives every run and generator of the invocation
that one choice through ``GDA_CPU_BF16`` (:meth:`GridRunner.pin_cpu_precision`), so that ``amp: auto`` does not train
one run in bf16 and the next in fp32 as the machine's load changes.

``run()`` returns the downstream records; ``generator_records`` holds the generators'. A failed run does not stop
the grid; the command line front end exits non-zero when any run or generator failed, after the reports are written.

Resume: a run whose ``run.json`` says ``ok`` with the same commands and overrides (a fingerprint) and the same
contents of its config files (``config_digest``) is skipped; a finished ``training`` step (``training.done.json``)
is not repeated when only ``evaluating`` is missing; generators likewise. A changed config file (e.g. an edited
variant), or a changed output of a generator that a run's overrides name (e.g. the synthetic datalist of a generator
that trained again), runs its runs again; records written before config digests existed are trusted, with a log
line saying so. Code is not part of either: after changing a bundle's code, re-run with ``--force``. A failed run is
recorded with its error (and retried on the next invocation); the grid goes on.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from common.engines import precision
from common.engines.precision import CPU_BF16_ENV
from common.evaluation.embeddings import tsne_real_vs_synthetic
from common.experiments.report import build_reports, write_grid_snapshot
from common.experiments.results import read_per_image, write_per_image_csv, write_results_csv
from common.experiments.spec import DatasetSpec, GeneratorSpec, GridSpec, MethodSpec, generator_run_dir, resolve_refs
from common.utils import atomic_path, atomic_write_json

__all__ = [
    "GridRunner",
    "RunPlan",
    "RunStep",
    "read_metrics",
    "recorded_config_files",
    "split_expression",
    "variant_path",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def variant_path(bundle: str, variant: str) -> str:
    """A variant file name resolves to ``<bundle>/configs/variants/<name>``; a path (with ``/``) is kept."""
    if os.path.isabs(variant) or "/" in variant or os.sep in variant:
        return str(Path(variant).expanduser().resolve())
    return str(Path(bundle) / "configs" / "variants" / variant)


def _cli_list(files: list[str]) -> str:
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def _flatten_numeric(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            if math.isfinite(float(v)):
                out[key] = float(v)
        elif isinstance(v, Mapping):
            out.update(_flatten_numeric(v, key + "/"))
    return out


def read_metrics(path: str | os.PathLike) -> dict[str, float]:
    """The numeric values of a bundle's metrics JSON (a flat object; nested objects give ``a/b`` keys).

    Raises:
        FileNotFoundError, ValueError: when the file is missing, not JSON, or holds no number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} was not written by the evaluating workflow.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    metrics = _flatten_numeric(data)
    if not metrics:
        raise ValueError(f"{path} holds no numeric metric.")
    return metrics


def recorded_config_files(run_dir: str | os.PathLike, workflow: str) -> list[str]:
    """The ``--config_file`` list of the ``workflow`` command that a finished run of a grid ran (its ``run.json``).

    Args:
        run_dir: a run's folder (``<grid>/runs/<data set>/<method>/seed<k>``) or a generator's.
        workflow: ``training``, ``evaluating`` or ``inference``.

    Returns:
        the config files in merge order, the run's ``overrides.yaml`` last.

    Raises:
        FileNotFoundError: when the run has no ``run.json``.
        ValueError: when it recorded no ``workflow`` command.
    """
    record_file = Path(run_dir) / "run.json"
    if not record_file.is_file():
        raise FileNotFoundError(f"{record_file} is missing: not a finished run of a grid.")
    for command in json.loads(record_file.read_text()).get("commands", []):
        args = command.split(" ")  # the runner joins its argument list with spaces
        run = args.index("run") if "run" in args else len(args)
        if args[run + 1 : run + 2] == [workflow] and "--config_file" in args:
            return [str(f) for f in ast.literal_eval(args[args.index("--config_file") + 1])]
    raise ValueError(f"{record_file} records no {workflow!r} command.")


def split_expression(split: Mapping[str, Any], output: str | os.PathLike, dataset_dir: str) -> str:
    """The bundle-config expression that writes a data set's ``split`` subset to ``output`` and returns its path.

    Args:
        split: the data set's resolved ``split`` (``mode``, ``seed``, optional ``datalist`` and further keyword
            arguments of :func:`common.data.make_split_datalist`).
        output: the datalist file to write.
        dataset_dir: the data set's folder (the default source is its ``datalist.json``).

    Returns:
        a ``$common.data.make_split_datalist(...)`` expression (for the ``datalist`` id of a bundle config).  Its
        source is made first by ``common.data.prepare_phantom`` with the bundle's ``dataset_dir``, ``phantom_kind``
        and ``phantom_args`` (nothing is made when the source is not the phantom's own datalist, or the kind is
        ``none``): the bundle's own ``prepare_phantom`` step receives this ``datalist``, another file than the
        phantom's, and makes nothing, and it evaluates this expression before it runs.
    """
    cfg = dict(split)
    source = str(cfg.pop("datalist", None) or os.path.join(dataset_dir, "datalist.json"))
    mode, seed = cfg.pop("mode"), int(cfg.pop("seed", 0))
    kwargs = "".join(f", {k}={v!r}" for k, v in cfg.items())
    prepared = f"common.data.prepare_phantom(@dataset_dir, @phantom_kind, datalist={source!r}, **@phantom_args)"
    return f"$common.data.make_split_datalist({prepared} or {source!r}, {str(output)!r}, mode={mode!r}, seed={seed}{kwargs})"


def _write_yaml(data: Mapping[str, Any], path: Path) -> None:
    """Writes config overrides as YAML (which keeps their types exactly, unlike command-line values)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            yaml.safe_dump(dict(data), f, sort_keys=False)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _files_digest(files: list[str]) -> str:
    """A digest of the files' contents (``missing`` for a file that is not there), in order."""
    parts = []
    for name in files:
        try:
            parts.append(hashlib.sha256(Path(name).read_bytes()).hexdigest())
        except OSError:
            parts.append("missing")
    return _fingerprint(parts)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, json.JSONDecodeError):
        return None


@dataclass
class RunStep:
    """One bundle command of a plan: ``workflow`` on ``files`` (+ the plan's ``overrides.yaml``, + ``overrides``)."""

    workflow: str
    files: list[str]
    overrides: dict[str, Any] | None = None  # this step's own overrides, merged last
    name: str = ""  # log, marker and overrides file name; the workflow id by default

    def __post_init__(self) -> None:
        self.name = self.name or self.workflow


@dataclass
class RunPlan:
    """One downstream run (data set, method, seed), or one generator instance (``kind == "generator"``)."""

    kind: str
    name: str
    run_dir: Path
    steps: list[RunStep]
    overrides: dict[str, Any] | None
    seed: int
    dataset: str | None = None
    method: str | None = None
    error: str | None = None  # why the plan could not be made (e.g. a failed generator)
    outputs: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # files of earlier generators that the overrides name

    @property
    def overrides_file(self) -> Path:
        return self.run_dir / "overrides.yaml"

    def step_overrides_file(self, step: RunStep) -> Path | None:
        """The file of a step's own overrides, ``None`` when it has none."""
        return self.run_dir / f"overrides_{step.name}.yaml" if step.overrides else None

    def config_files(self, step: RunStep) -> list[str]:
        """The ``--config_file`` list of a step: its files, ``overrides.yaml``, then its own overrides file."""
        extra = self.step_overrides_file(step)
        return [*step.files, str(self.overrides_file), *([str(extra)] if extra else [])]

    def command(self, step: RunStep, python: str = sys.executable) -> list[str]:
        return [
            python, "-m", "monai.bundle", "run", step.workflow,
            "--config_file", _cli_list(self.config_files(step)),
            "--ckpt_dir", str(self.run_dir / "models"),
            "--output_dir", str(self.run_dir / "eval"),
            "--seed", str(self.seed),
        ]  # fmt: skip

    def fingerprint(self, step: int | None = None) -> str:
        steps = self.steps if step is None else self.steps[: step + 1]
        return _fingerprint(
            {
                "steps": [(s.workflow, s.files, s.overrides) if s.overrides else (s.workflow, s.files) for s in steps],
                "overrides": self.overrides,
                "seed": self.seed,
            }
        )

    def config_digest(self, step: int | None = None) -> str:
        """A digest of the contents of the config files of the steps (up to ``step``), the grid's own overrides
        files excepted (the fingerprint holds their content), and of the generator outputs the overrides name
        (``inputs``: e.g. a synthetic datalist, which records its generator's checkpoint)."""
        steps = self.steps if step is None else self.steps[: step + 1]
        return _files_digest([f for s in steps for f in s.files] + self.inputs)


class GridRunner:
    """Runs a :class:`~common.experiments.spec.GridSpec` and writes its results and reports.

    Args:
        spec: the parsed grid.
        python: interpreter of the bundle subprocesses.
        dry_run: list the commands, run nothing.
        force: re-run runs that are already complete.
        log: where progress lines go (the module's logger by default; the command line prints them).
    """

    def __init__(
        self,
        spec: GridSpec,
        python: str = sys.executable,
        dry_run: bool = False,
        force: bool = False,
        log: Callable[[str], None] = logger.info,
    ) -> None:
        self.spec = spec
        self.python = python
        self.dry_run = dry_run
        self.force = force
        self.log = log
        self.out = Path(spec.output_dir)
        self.generator_outputs: dict[tuple[str, str | None], dict[str, str] | Exception] = {}
        self.generator_records: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.pinned_env: dict[str, str] = {}

    # ---- planning
    def dataset_dir(self, dataset_slug: str) -> str:
        """The data set's folder: its ``dataset_dir`` (an existing conversion) or ``<output_dir>/data/<slug>``."""
        for dataset in self.spec.datasets:
            if dataset.slug == dataset_slug and dataset.dataset_dir is not None:
                return dataset.dataset_dir
        return str(self.out / "data" / dataset_slug)

    def _context(self, dataset=None, seed: int = 0, run_dir: Path | None = None) -> dict[str, Any]:
        variables = dict(self.spec.vars)
        ctx: dict[str, Any] = {"output_dir": str(self.out), "seed": seed, "run_dir": str(run_dir or "")}
        if dataset is not None:
            variables.update(dataset.vars)
            ctx.update(dataset=dataset.slug, dataset_dir=self.dataset_dir(dataset.slug))
        gens: dict[str, Any] = {}
        for name, g in self.spec.generators.items():
            if g.per_dataset and dataset is None:
                gens[name] = RuntimeError(f"generator {name} is per data set; no data set here")
                continue
            key = (name, dataset.slug if g.per_dataset else None)
            gens[name] = self.generator_outputs.get(key, RuntimeError(f"generator {name} has not run"))
        ctx["generators"] = gens
        ctx["vars"] = resolve_refs(variables, {k: v for k, v in ctx.items() if k != "vars"})
        return ctx

    def _generator_inputs(self, *overrides: Any) -> list[str]:
        """The existing files under ``<output_dir>/generators`` named by strings in the overrides (nested), sorted."""
        root = f"{(self.out / 'generators').resolve()}{os.sep}"
        found: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, Mapping):
                for v in value.values():
                    walk(v)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v)
            elif isinstance(value, str) and len(value) < 4096 and value.startswith(root) and Path(value).is_file():
                found.add(value)

        for o in overrides:
            walk(o)
        return sorted(found)

    def generator_instances(self) -> list[tuple[GeneratorSpec, DatasetSpec | None]]:
        """``(generator, data set or None)`` in the order they run: declaration order, each data set of a
        ``per_dataset`` generator."""
        return [
            (g, d) for g in self.spec.generators.values() for d in (self.spec.datasets if g.per_dataset else [None])
        ]

    def generator_plan(self, g: GeneratorSpec, dataset: DatasetSpec | None) -> RunPlan:
        """The plan of one generator instance, with the outputs of the generators that ran before it."""
        return self._generator_plan(g, dataset, generator_run_dir(self.out, g, dataset))

    def generator_plans(self) -> list[RunPlan]:
        """Every generator plan, made now (references to other generators resolve only after those ran)."""
        return [self.generator_plan(g, d) for g, d in self.generator_instances()]

    def _split_overrides(
        self, dataset: DatasetSpec | None, run_dir: Path, ctx: Mapping[str, Any], method: MethodSpec | None = None
    ) -> dict[str, Any]:
        """``{"datalist": <the split expression>}`` for a method or else a data set with a ``split`` (the method's
        replaces the data set's), else ``{}``."""
        chosen = method.split if method is not None else None
        if chosen is None and dataset is not None:
            chosen = dataset.split
        if chosen is None:
            return {}
        split = resolve_refs(chosen, ctx)
        return {"datalist": split_expression(split, run_dir / "split_datalist.json", ctx["dataset_dir"])}

    def _generator_plan(self, g: GeneratorSpec, dataset: DatasetSpec | None, run_dir: Path) -> RunPlan:
        run_dir = run_dir.resolve()
        variants = [variant_path(g.bundle, v) for v in g.variants]
        inference = [str(Path(g.bundle) / g.inference_config), *variants]
        ctx = self._context(dataset, g.seed, run_dir)
        steps = [RunStep("training", [str(Path(g.bundle) / g.train_config), *variants])] if g.train else []
        plan = RunPlan("generator", g.name, run_dir, steps, None, g.seed, dataset.name if dataset else None)
        evaluate = None
        try:
            for i, item in enumerate(g.inference_runs):
                name = "inference" if i == 0 else f"inference_{i}"
                extra = {k: v for k, v in item.items() if k != "variants"}
                files = [*inference, *[variant_path(g.bundle, v) for v in item.get("variants", [])]]
                steps.append(RunStep("inference", files, resolve_refs(extra, ctx) or None, name))
            plan.overrides = {**resolve_refs(g.overrides, ctx), **self._split_overrides(dataset, run_dir, ctx)}
            evaluate = resolve_refs(g.evaluate_overrides, ctx) or None
            # the evaluation's overrides are not among the inputs: adding an evaluation keeps the finished steps
            inputs = self._generator_inputs(plan.overrides, *[s.overrides for s in steps if s.overrides])
            plan.inputs = [f for f in inputs if not f.startswith(f"{run_dir}{os.sep}")]  # not its own outputs
        except (KeyError, RuntimeError) as e:
            plan.error = f"{self.spec.source}: generator {g.name}: {e}"
        eval_dir = plan.run_dir / "eval"
        plan.outputs = {"ckpt_dir": str(plan.run_dir / "models"), "output_dir": str(eval_dir)}
        plan.outputs.update({k: str(eval_dir / v) for k, v in g.outputs.items()})
        if g.evaluate_config:  # last, so that adding it keeps the finished training and inference steps
            train = str(Path(g.bundle) / g.train_config)
            steps.append(RunStep("evaluating", [train, str(Path(g.bundle) / g.evaluate_config), *variants], evaluate))
            plan.outputs["metrics"] = str(eval_dir / g.metrics_file)
        return plan

    def run_plans(self) -> list[RunPlan]:
        spec = self.spec
        plans = []
        for dataset in spec.datasets:
            for method in spec.methods:
                bundle = method.bundle or dataset.bundle or spec.bundle
                variants = [
                    variant_path(bundle, v) for v in [*spec.common_variants, *dataset.variants, *method.variants]
                ]
                train = str(Path(bundle) / spec.train_config)
                steps = [
                    RunStep("training", [train, *variants]),
                    RunStep("evaluating", [train, str(Path(bundle) / spec.evaluate_config), *variants]),
                ]
                for seed in spec.seeds:
                    run_dir = (self.out / "runs" / dataset.slug / method.slug / f"seed{seed}").resolve()
                    plan = RunPlan("run", method.name, run_dir, steps, None, seed, dataset.name, method.name)
                    merged = {
                        "dataset_dir": "${dataset_dir}",
                        **spec.overrides,
                        **dataset.overrides,
                        **method.overrides,
                    }
                    try:
                        ctx = self._context(dataset, seed, run_dir)
                        plan.overrides = resolve_refs(merged, ctx)
                        split = self._split_overrides(dataset, run_dir, ctx, method)
                        if (
                            split
                        ):  # the subset is the data set's (or the method's): the bundle must not subsample it again
                            plan.overrides.update(split, split_mode="full")
                        plan.inputs = self._generator_inputs(plan.overrides)
                    except (KeyError, RuntimeError) as e:
                        plan.error = str(e)
                    plans.append(plan)
        return plans

    # ---- execution
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.pinned_env)
        env.update(self.spec.env)
        return env

    def pin_cpu_precision(self) -> dict[str, str]:
        """One CPU precision for every run of this invocation: ``{GDA_CPU_BF16: "0" or "1"}``, or ``{}``.

        ``amp: auto`` on a CPU without AMX measures bf16 against fp32 in each run's own process
        (:func:`~common.engines.precision.cpu_bf16_speedup`), so the runs of one grid could train in different
        precisions when the machine's load changes between them. The runner measures once, here, with the runs'
        thread count (the grid's ``env`` ``OMP_NUM_THREADS``, or the one it inherits), and passes the choice to every
        run and generator through ``GDA_CPU_BF16`` (:data:`~common.engines.precision.CPU_BF16_ENV`). Nothing is
        pinned where the CPU has AMX (bf16 without measuring) or where the user's environment or the grid's ``env``
        already sets the variable. Runs that do not train under ``amp: auto`` (``amp: false``, a dtype, a GPU) are
        unaffected. Logged; recorded in each ``run.json`` (``pinned_env``).
        """
        self.pinned_env = {}
        if CPU_BF16_ENV in os.environ or CPU_BF16_ENV in self.spec.env or precision.cpu_has_amx():
            return self.pinned_env
        threads = str(self.spec.env.get("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", ""))).strip()
        before = torch.get_num_threads()
        if threads.isdigit() and int(threads) > 0:
            torch.set_num_threads(int(threads))
        try:
            precision.cpu_bf16_speedup.cache_clear()  # measured now, not a value cached earlier in this process
            policy = precision.resolve_precision("auto", "cpu")  # the rule every run would apply
        finally:
            torch.set_num_threads(before)
        self.pinned_env = {CPU_BF16_ENV: "1" if policy.enabled else "0"}
        self.log(
            f"{policy.reason}; every run of `amp: auto` trains in {'bf16' if policy.enabled else 'fp32'} "
            f"({CPU_BF16_ENV}={self.pinned_env[CPU_BF16_ENV]})"
        )
        return self.pinned_env

    def _run_step(self, plan: RunPlan, step: RunStep) -> None:
        cmd = plan.command(step, self.python)
        log_path = plan.run_dir / "logs" / f"{step.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.time()
        with open(log_path, "w") as logf:
            logf.write(" ".join(cmd) + "\n\n")
            logf.flush()
            try:
                proc = subprocess.run(
                    cmd, stdout=logf, stderr=subprocess.STDOUT, env=self._env(), timeout=self.spec.timeout_s
                )
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = None
        if rc != 0:
            tail = log_path.read_text()[-3000:]
            why = f"timed out after {self.spec.timeout_s} s" if rc is None else f"exit code {rc}"
            raise RuntimeError(f"`{step.name}` failed ({why}); log {log_path}:\n{tail}")
        self.log(f"    {step.name} done in {time.time() - start:.1f} s")

    def _execute(self, plan: RunPlan, check: Callable[[RunPlan], dict[str, Any]]) -> dict[str, Any]:
        """Runs the steps of ``plan`` unless complete; returns its ``run.json`` record."""
        status_path = plan.run_dir / "run.json"
        fingerprint = plan.fingerprint()
        record: dict[str, Any] = {
            "kind": plan.kind,
            "name": plan.name,
            "dataset": plan.dataset,
            "method": plan.method,
            "seed": plan.seed,
            "run_dir": str(plan.run_dir),
            "fingerprint": fingerprint,
            "overrides": plan.overrides,
        }
        digest = plan.config_digest()
        record["config_digest"] = digest
        old = _read_json(status_path)
        complete = old and old.get("status") == "ok" and old.get("fingerprint") == fingerprint
        if not self.force and complete and self._same_configs(old, digest, plan):
            try:
                old.update(check(plan))  # read again: e.g. the per-image values a changed grid now reports
                self.log(f"  skip (complete): {plan.run_dir}")
                return old
            except (OSError, ValueError):
                pass  # outputs gone: run again
        missing = sorted({f for step in plan.steps for f in step.files if not Path(f).is_file()})
        if plan.error is None and missing:
            plan.error = f"missing config file(s): {missing}"
        if plan.error is not None:
            record.update(status="failed", error=plan.error)
            self.log(f"  FAILED before start: {plan.error}")
            if not self.dry_run:
                atomic_write_json(record, status_path)
            return record
        record["commands"] = [" ".join(plan.command(step, self.python)) for step in plan.steps]
        if self.pinned_env:
            record["pinned_env"] = dict(self.pinned_env)
        if self.dry_run:
            for c in record["commands"]:
                self.log(f"  {c}")
            return {**record, "status": "dry_run"}
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        _write_yaml(plan.overrides or {}, plan.overrides_file)
        for step in plan.steps:
            if step.overrides:
                _write_yaml(step.overrides, plan.step_overrides_file(step))
        start = time.time()
        try:
            for i, step in enumerate(plan.steps):
                marker = plan.run_dir / f"{step.name}.done.json"
                step_fp = plan.fingerprint(i)
                step_digest = plan.config_digest(i)
                done = _read_json(marker)
                if done and done.get("config_digest", step_digest) != step_digest:
                    done = None  # its config files changed since
                if not self.force and done and done.get("fingerprint") == step_fp and i < len(plan.steps) - 1:
                    self.log(f"    {step.name}: already done")
                    continue
                self._run_step(plan, step)
                atomic_write_json(
                    {"fingerprint": step_fp, "config_digest": step_digest, "finished": time.time()}, marker
                )
            record.update(check(plan))
            record["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure is recorded and the grid goes on
            record.update(status="failed", error=str(e))
            self.log(f"  FAILED: {str(e).splitlines()[0]}")
        record["duration_s"] = round(time.time() - start, 2)
        atomic_write_json(record, status_path)
        return record

    def _same_configs(self, old: Mapping[str, Any], digest: str, plan: RunPlan) -> bool:
        """Whether a complete run's config files are unchanged; records without a digest are trusted (logged)."""
        recorded = old.get("config_digest")
        if recorded is None:
            self.log(f"  {plan.run_dir}: recorded before config digests; its config contents are not checked")
            return True
        if recorded != digest:
            self.log(f"  {plan.run_dir}: config file contents changed since it ran; running it again")
            return False
        return True

    def write_tsne(self) -> dict[str, Any]:
        """t-SNE of real vs synthetic images (Han sec. 4.2.6) from the grid's ``tsne`` entry, written to
        ``<output_dir>/tsne.json``; an error is recorded there instead of stopping the grid.

        ``tsne`` keys: ``generator`` (its ``synthetic_datalist``) or ``synthetic_datalist``; ``real_datalist``
        (default ``${dataset_dir}/datalist.json``); ``dataset`` (default the first); and the keyword arguments of
        :func:`common.evaluation.embeddings.tsne_real_vs_synthetic` (``per_class``, ``perplexity``, ``max_iter``,
        ``features``, ``spatial_size``, ``channels``, ``synthetic_channels``, ``class_key``, ``real_section``,
        ``synthetic_section``).
        """
        cfg = dict(self.spec.tsne or {})
        names = {d.name: d for d in self.spec.datasets}
        dataset = names.get(cfg.pop("dataset", None), self.spec.datasets[0])
        gen = cfg.pop("generator", None)
        cfg.setdefault("real_datalist", "${dataset_dir}/datalist.json")
        if gen is not None:
            cfg.setdefault("synthetic_datalist", f"${{generators.{gen}.synthetic_datalist}}")
        path = self.out / "tsne.json"
        try:
            kwargs = resolve_refs(cfg, self._context(dataset, 0, self.out))
            result = tsne_real_vs_synthetic(**kwargs)
            result["dataset"] = dataset.name
            self.log(f"t-SNE of {len(result['coords'])} images ({result['features']})")
        except Exception as e:  # noqa: BLE001 - reported, the grid goes on
            result = {"error": str(e), "dataset": dataset.name}
            self.log(f"t-SNE FAILED: {e}")
        atomic_write_json(result, path)
        return result

    def _check_generator(self, plan: RunPlan) -> dict[str, Any]:
        """Its declared outputs exist (a generator that only trains: a non-empty ``ckpt_dir``; an evaluated one: its
        metrics file)."""
        files = {k: p for k, p in plan.outputs.items() if k not in ("ckpt_dir", "output_dir")}
        ckpt = Path(plan.outputs["ckpt_dir"])
        if not any(s.workflow == "inference" for s in plan.steps) and not (ckpt.is_dir() and any(ckpt.iterdir())):
            files["ckpt_dir"] = str(ckpt)
        missing = [p for p in files.values() if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"generator {plan.name} did not write {missing}")
        return {"outputs": plan.outputs}

    def _check_run(self, plan: RunPlan) -> dict[str, Any]:
        """The run's metrics, and with ``blocks: test_images`` its per-image values (``per_image``)."""
        eval_dir = plan.run_dir / "eval"
        result: dict[str, Any] = {"metrics": read_metrics(eval_dir / self.spec.metrics_file)}
        if self.spec.blocks == "test_images":
            result["per_image"] = read_per_image(eval_dir / self.spec.per_image_file)
        return result

    def run(self) -> list[dict[str, Any]]:
        """Runs generators, then every run, writing ``results.csv`` after each run and the reports at the end.

        Returns:
            the ``run.json`` records of the downstream runs (the generators' are in ``generator_records``).
        """
        spec = self.spec
        self.generator_records, self.records = [], []
        if not self.dry_run:
            self.out.mkdir(parents=True, exist_ok=True)
            write_grid_snapshot(spec, self.out)
            self.pin_cpu_precision()
        for g, dataset in self.generator_instances():
            plan = self.generator_plan(g, dataset)  # after the generators it may refer to
            self.log(f"generator {plan.name}" + (f" on {plan.dataset}" if plan.dataset else ""))
            rec = self._execute(plan, self._check_generator)
            self.generator_records.append(rec)
            key = (plan.name, dataset.slug if dataset else None)
            if rec.get("status") in ("ok", "dry_run"):
                self.generator_outputs[key] = plan.outputs
            else:
                self.generator_outputs[key] = RuntimeError(f"generator {plan.name} failed: {rec.get('error')}")
        if spec.tsne and not self.dry_run:
            self.write_tsne()
        plans = self.run_plans()
        records = self.records
        for n, plan in enumerate(plans, 1):
            self.log(f"[{n}/{len(plans)}] {plan.dataset} | {plan.method} | seed {plan.seed}")
            records.append(self._execute(plan, self._check_run))
            if not self.dry_run:
                write_results_csv(records, self.out / "results.csv")
                if spec.blocks == "test_images":
                    write_per_image_csv(records, self.out / "per_image.csv")
        if not self.dry_run:
            build_reports(self.out, spec=spec, log=self.log)
        failed = [r for r in records if r.get("status") == "failed"]
        failed_generators = [r for r in self.generator_records if r.get("status") == "failed"]
        self.log(
            f"{len(records) - len(failed)} runs ok, {len(failed)} failed"
            + (f" ({len(failed_generators)} generator(s) failed)" if failed_generators else "")
            + f"; results in {self.out}"
        )
        return records

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The records of the failed generators and runs of the last :meth:`run`."""
        return [r for r in [*self.generator_records, *self.records] if r.get("status") == "failed"]
