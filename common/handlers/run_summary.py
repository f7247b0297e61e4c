"""End-of-run summary of a generator bundle's training: where its outputs are and what to run next."""

from __future__ import annotations

import glob
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from common.utils import CHECKPOINT_PREFIX, atomic_write_json, is_rank0, latest_checkpoint
from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["RunSummaryHandler", "display_path"]

logger = logging.getLogger(__name__)


def display_path(path: str | os.PathLike, cwd: str | os.PathLike | None = None) -> str:
    """``path`` as a user types it: relative to ``cwd`` when it lies under it, else absolute.

    Args:
        path: a file or folder.
        cwd: the folder the user works in; default: the current folder.

    Returns:
        e.g. ``bundles/dcgan_wgan/configs/train.yaml`` from the repository root, ``configs/train.yaml`` from the
        bundle folder, the absolute path from anywhere else.
    """
    path = os.path.abspath(os.fspath(path))
    cwd = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    try:
        inside = os.path.commonpath([path, cwd]) == cwd
    except ValueError:  # different drives
        inside = False
    return os.path.relpath(path, cwd) if inside else path


def _newest(pattern: str) -> str | None:
    """The file matching the glob ``pattern`` modified last (then the last name)."""
    files = [p for p in glob.glob(pattern) if os.path.isfile(p)]
    return os.path.abspath(max(files, key=lambda p: (os.stat(p).st_mtime_ns, p))) if files else None


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


class RunSummaryHandler:
    """Log a short summary when training completes: files written, the next commands and optional quick metrics.

    On ``Events.COMPLETED`` (rank 0 only) it logs at INFO, through this module's logger, so that the console of
    ``python -m monai.bundle run training ...`` shows it (the bundle's ``logging.conf`` sets the root logger to INFO):

    - the newest checkpoint of ``ckpt_dir`` (``checkpoint_<iteration>.pt``: highest iteration), the exported model
      files (``model_files``) and the newest PNG of ``sample_dir`` (the grids of
      :class:`~common.handlers.SampleGridHandler`);
    - the inference and evaluation commands in the form of the model cards,
      ``python -m monai.bundle run inference --config_file <bundle>/configs/inference.yaml`` and
      ``python -m monai.bundle run evaluating --config_file "['<bundle>/configs/train.yaml','<bundle>/configs/
      evaluate.yaml']"``, with a reminder to append the variant files used for training; paths are relative to the
      current folder when the bundle lies under it (see :func:`display_path`), so the commands can be pasted;
    - the results of ``metrics()``, when given: one line per entry, a nested mapping as ``key value`` pairs;
    - the precision the run trained in: ``engine.step.precision.as_dict()`` when the trainer's step has a precision
      policy (:class:`common.engines.StepTrainer` with a :class:`~common.engines.TrainingStep`, read by duck typing so
      that this handler stays below the engines layer), else nothing; likewise the networks' memory formats and
      compile state, ``engine.step.acceleration.as_dict()``.

    The same information goes to ``output_file`` as JSON (atomically; files as absolute paths, ``None`` when
    missing). Anything missing (no checkpoint, a model file or the sample folder absent) is listed under
    ``"missing"`` and logged as a warning; an exception raised by ``metrics`` is logged and recorded under
    ``"metrics_error"``: the summary never fails a run whose training is done. A resumed run that was already
    complete still fires ``COMPLETED`` (after the checkpoint is loaded) and is summarised the same way.

    The metrics are injected (a callable built in the bundle config, e.g.
    :class:`common.evaluation.QuickGenerativeCheck`) rather than computed here: this handler stays in the handler
    layer, below :mod:`common.engines` and :mod:`common.evaluation` (design document, section 2), and serves every
    generator bundle, while only the bundles where the check is cheap pay for it. The newest checkpoint is found by
    :func:`common.utils.latest_checkpoint`, the function the engines resume from.

    Attach it after the checkpoint and sample-grid handlers (e.g. last in the bundle's ``train#logging_handlers``,
    the rank-0 list) so that the files of the last iteration exist when it runs.

    Args:
        bundle_root: the bundle folder (``configs/`` lives in it).
        ckpt_dir: folder of the checkpoints and of the exported model files.
        model_files: file names in ``ckpt_dir`` exported by the checkpoint handler (a mapping is read for its keys,
            e.g. ``CheckpointHandler.model_files``).
        sample_dir: folder of the sample grid PNGs, or None for a bundle that writes none.
        output_file: JSON file of the summary, or None to only log it.
        metrics: callable returning a JSON-serialisable mapping of quick metrics, or None.
        train_config: the training config, relative to ``bundle_root``.
        inference_config: the inference config, relative to ``bundle_root``.
        evaluate_config: the evaluation overlay, relative to ``bundle_root``.
        variants_dir: the folder of the variant files, relative to ``bundle_root`` (for the example in the hint).
        sample_pattern: glob of the sample grids in ``sample_dir``; the latest modified is the newest.
    """

    def __init__(
        self,
        bundle_root: str | os.PathLike,
        ckpt_dir: str | os.PathLike,
        model_files: Sequence[str] | Mapping[str, Any] = ("model.pt",),
        sample_dir: str | os.PathLike | None = None,
        output_file: str | os.PathLike | None = None,
        metrics: Callable[[], Mapping[str, Any]] | None = None,
        train_config: str = "configs/train.yaml",
        inference_config: str = "configs/inference.yaml",
        evaluate_config: str = "configs/evaluate.yaml",
        variants_dir: str = "configs/variants",
        sample_pattern: str = "*.png",
    ) -> None:
        self.bundle_root = os.path.abspath(os.fspath(bundle_root))
        self.ckpt_dir = os.path.abspath(os.fspath(ckpt_dir))
        self.model_files = list(model_files.keys() if isinstance(model_files, Mapping) else model_files)
        self.sample_dir = os.path.abspath(os.fspath(sample_dir)) if sample_dir is not None else None
        self.output_file = os.fspath(output_file) if output_file is not None else None
        self.metrics = metrics
        self.configs = {
            "train": os.path.join(self.bundle_root, train_config),
            "inference": os.path.join(self.bundle_root, inference_config),
            "evaluate": os.path.join(self.bundle_root, evaluate_config),
        }
        self.variants_dir = os.path.join(self.bundle_root, variants_dir)
        self.sample_pattern = sample_pattern
        self.summary: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        """Register the summary on ``Events.COMPLETED``.

        Args:
            engine: the trainer.
        """
        engine.add_event_handler(Events.COMPLETED, self)

    def commands(self, cwd: str | os.PathLike | None = None) -> dict[str, str]:
        """The next commands, with the config paths as seen from ``cwd`` (default: the current folder).

        Args:
            cwd: the folder the commands are run from.

        Returns:
            ``{"inference": ..., "evaluating": ..., "variants": ...}``, the last one the hint about variant files.
        """
        shown = {k: display_path(v, cwd) for k, v in self.configs.items()}
        variants = sorted(glob.glob(os.path.join(self.variants_dir, "*.yaml")))
        hint = "append the variant files used for training to each --config_file list"
        if variants:
            example = display_path(variants[0], cwd)
            hint += f", e.g. \"['{shown['inference']}','{example}']\""
        return {
            "inference": f"python -m monai.bundle run inference --config_file {shown['inference']}",
            "evaluating": (
                "python -m monai.bundle run evaluating --config_file " f"\"['{shown['train']}','{shown['evaluate']}']\""
            ),
            "variants": hint,
        }

    def summarise(self, engine: Engine | None = None) -> dict[str, Any]:
        """Collect the summary (and run ``metrics``) without logging or writing it.

        Args:
            engine: the trainer, for its epoch and iteration counters (optional).

        Returns:
            the summary: ``epoch``, ``iteration``, ``checkpoint``, ``model_files``, ``sample_grid`` (absolute paths or
            None), ``commands``, ``config_files``, ``cwd``, ``missing`` (messages), ``precision`` (``{"enabled",
            "dtype", "grad_scaling", "reason"}``, when the engine's step has a precision policy), ``acceleration``
            (``{"memory_format", "formats", "compile", "compile_status"}``, likewise) and, with
            ``metrics``, either ``metrics`` and ``metrics_seconds`` or ``metrics_error``.
        """
        missing: list[str] = []
        newest = latest_checkpoint(self.ckpt_dir)
        checkpoint = None if newest is None else str(newest.resolve())
        if checkpoint is None:
            missing.append(f"no checkpoint '{CHECKPOINT_PREFIX}_<iteration>.pt' in {self.ckpt_dir}")
        models: dict[str, str | None] = {}
        for name in self.model_files:
            path = os.path.join(self.ckpt_dir, name)
            models[name] = path if os.path.isfile(path) else None
            if models[name] is None:
                missing.append(f"model file {path} does not exist")
        grid = None
        if self.sample_dir is not None:
            if not os.path.isdir(self.sample_dir):
                missing.append(f"sample folder {self.sample_dir} does not exist")
            else:
                grid = _newest(os.path.join(glob.escape(self.sample_dir), self.sample_pattern))
                if grid is None:
                    missing.append(f"no sample grid '{self.sample_pattern}' in {self.sample_dir}")
        for name, path in self.configs.items():
            if not os.path.isfile(path):
                missing.append(f"{name} config {path} does not exist")
        state = getattr(engine, "state", None)
        summary: dict[str, Any] = {
            "epoch": getattr(state, "epoch", None),
            "iteration": getattr(state, "iteration", None),
            "checkpoint": checkpoint,
            "model_files": models,
            "sample_grid": grid,
            "config_files": dict(self.configs),
            "commands": self.commands(),
            "cwd": os.getcwd(),
            "missing": missing,
        }
        precision = getattr(getattr(engine, "step", None), "precision", None)
        if callable(getattr(precision, "as_dict", None)):
            summary["precision"] = dict(precision.as_dict())
        acceleration = getattr(getattr(engine, "step", None), "acceleration", None)
        if callable(getattr(acceleration, "as_dict", None)):
            summary["acceleration"] = dict(acceleration.as_dict())
        if self.metrics is not None:
            start = time.perf_counter()
            try:
                summary["metrics"] = dict(self.metrics())
                summary["metrics_seconds"] = round(time.perf_counter() - start, 3)
            except Exception as err:  # the training is done: report, do not fail the run
                logger.exception("run summary: the quick metrics failed")
                summary["metrics_error"] = f"{type(err).__name__}: {err}"
        return summary

    def _lines(self, summary: Mapping[str, Any]) -> list[str]:
        def show(path: str | None) -> str:
            return display_path(path) if path is not None else "(missing)"

        lines = [f"run summary: training completed at epoch {summary['epoch']}, iteration {summary['iteration']}"]
        lines.append(f"  checkpoint:  {show(summary['checkpoint'])}")
        if "precision" in summary:
            precision = summary["precision"]
            lines.append(f"  precision:   {precision['dtype']} ({precision['reason']})")
        if "acceleration" in summary:
            acceleration = summary["acceleration"]
            formats = ", ".join(f"{k} {v}" for k, v in acceleration["formats"].items())
            lines.append(
                f"  layout:      {acceleration['memory_format']} ({formats}); compile {acceleration['compile_status']}"
            )
        for name, path in summary["model_files"].items():
            lines.append(f"  model file:  {show(path)}" if path is not None else f"  model file:  {name} (missing)")
        if self.sample_dir is not None:
            lines.append(f"  sample grid: {show(summary['sample_grid'])}")
        if "metrics" in summary:
            lines.append(f"  quick metrics ({summary['metrics_seconds']:.1f} s):")
            for key, value in summary["metrics"].items():
                if isinstance(value, Mapping):
                    value = ", ".join(f"{k} {_format_value(v)}" for k, v in value.items())
                lines.append(f"    {key}: {_format_value(value)}")
        elif "metrics_error" in summary:
            lines.append(f"  quick metrics failed: {summary['metrics_error']}")
        if self.output_file is not None:
            lines.append(f"  summary:     {display_path(self.output_file)}")
        commands = summary["commands"]
        lines.append("  next:")
        lines.append(f"    {commands['inference']}")
        lines.append(f"    {commands['evaluating']}")
        lines.append(f"    ({commands['variants']})")
        return lines

    def __call__(self, engine: Engine | None = None) -> dict[str, Any] | None:
        """Summarise, log and write the summary (rank 0 only).

        Args:
            engine: the trainer.

        Returns:
            the summary (see :meth:`summarise`), or None on other ranks.
        """
        if not is_rank0():
            return None
        summary = self.summarise(engine)
        for message in summary["missing"]:
            logger.warning("run summary: %s", message)
        if self.output_file is not None:
            atomic_write_json(summary, self.output_file, indent=2, default=str)
        logger.info("\n".join(self._lines(summary)))
        self.summary = summary
        return summary
