"""Model selection on validation: keep the network of the best validation score as ``models/model_best.pt``.

Han's thesis picks the detector to test by its validation score within a window of training steps: "the model with
the best sensitivity on validation with detection threshold 0.1%/IoU threshold 0.5 between 96,000-240,000 steps"
(YOLOv3, sec. 5.2.3) and "the highest sensitivity on validation between 30,000-40,000 steps under IoU threshold
0.25/detection threshold 0.5" (3D Faster R-CNN, sec. 6.2.2). :class:`BestCheckpointHandler` does this for any
trainer: MONAI's :class:`~monai.handlers.ValidationHandler` runs a MONAI evaluator every ``interval`` epochs or
iterations; after each validation run the evaluator's key metric is compared with the best so far, and a score at
least as good at a training step inside the window replaces ``model_best.pt`` (the network's ``state_dict``) and
``model_best.json`` (step, epoch, metric, score, window). Equal scores go to the later step (the thesis is silent):
a sensitivity at a fixed detection threshold is often equal over many validations (0 before any score reaches a
high threshold, 1 once every lesion is found at a low one), and the later of two equally sensitive models has
trained longer, which is what the thesis's late windows aim at ("to avoid severe FPs"). Both files are written
atomically (temporary file, then rename) by rank 0. MONAI's :class:`~monai.handlers.CheckpointSaver` is not used: it
writes in place, has no step window, and its best score does not survive a resumed run.

Resume: the best score and step are read back from ``model_best.json`` when the run starts from a checkpoint (the
trainer's iteration is then above 0), so a resumed run only replaces the best model by one at least as good. A run
that starts from scratch removes a ``model_best.pt``/``.json`` left in the folder by an earlier run, so that
inference never takes a model of another run. :func:`select_checkpoint` gives inference the best model, or the last one with a
warning when no best model was written (no validation data, or no validation inside the window).
"""

from __future__ import annotations

import json
import logging
import math
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.utils import atomic_write_json, is_rank0, save_atomic
from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler
from torch import nn

__all__ = ["BEST_CHECKPOINT_NAME", "BestCheckpointHandler", "select_checkpoint"]

logger = logging.getLogger(__name__)

BEST_CHECKPOINT_NAME = "model_best.pt"
"""File name of the best validation model (beside the model zoo's ``model.pt``, the last one)."""


def _unwrap(network: nn.Module) -> nn.Module:
    """The module inside a ``DataParallel``/``DistributedDataParallel`` wrapper (or the module itself)."""
    return network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network


def select_checkpoint(checkpoint: str | os.PathLike, fallback: str | os.PathLike | None = None) -> str:
    """The weights inference should load: ``checkpoint`` if it exists, else ``fallback`` with a warning.

    Args:
        checkpoint: the preferred file (the bundle's ``models/model_best.pt``, or a user's ``--checkpoint``).
        fallback: the file to use when ``checkpoint`` is missing (``models/model.pt``, the last model); None: none.

    Returns:
        the path of an existing file, as a string.

    Raises:
        FileNotFoundError: when neither file exists.
    """
    if Path(checkpoint).is_file():
        return str(checkpoint)
    if fallback is not None and str(fallback).lower() not in ("none", "null", "") and Path(fallback).is_file():
        logger.warning(
            f"'{checkpoint}' does not exist (no validation run, or none inside the selection window): using the last "
            f"model '{fallback}' instead; pass --checkpoint to choose another file."
        )
        return str(fallback)
    tried = [str(checkpoint)] + ([str(fallback)] if fallback is not None else [])
    raise FileNotFoundError(f"no model weights: {tried} do not exist; run the training workflow first.")


class BestCheckpointHandler:
    """Validate during training and keep the network of the best validation score inside a window of steps.

    Attach to the trainer (``handler.attach(trainer)``) after its resume handler and before its checkpoint handler
    (so that validation at an epoch end runs before the epoch's checkpoint is written, which then holds the random
    state after validation). With a ``validator``, MONAI's ``ValidationHandler(interval, validator, epoch_level)``
    is attached to the trainer, and :meth:`update` is called with the validator's ``metric_name`` after each of its
    runs. Without one (``None``, e.g. an empty validation section) or with ``interval <= 0``, no validation runs
    and no best model is written (logged).

    Args:
        save_dir: folder of ``file_name`` and of its JSON record (the bundle's ``models/``).
        network: the network whose ``state_dict`` is saved (a DDP wrapper is unwrapped).
        validator: a MONAI evaluator whose ``state.metrics[metric_name]`` is the score, or None.
        metric_name: the key of the score in the validator's metrics (its key metric).
        interval: validate every ``interval`` epochs (``epoch_level``) or iterations.
        epoch_level: interval in epochs (True) or iterations (False).
        window: ``[first, last]`` training steps (iterations, inclusive) at which a score may be kept; either bound
            None for no bound; None: the whole run (thesis: ``[96000, 240000]`` for YOLOv3, ``[30000, 40000]`` for
            the 3D Faster R-CNN).
        file_name: the weights file; the record is the same name with ``.json``.
        higher_is_better: whether a higher score is better.
        description: what the score is (e.g. ``"sensitivity at IoU 0.25, score 0.5"``), written in the record.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        network: nn.Module,
        validator: Any = None,
        metric_name: str = "val_score",
        interval: int = 1,
        epoch_level: bool = True,
        window: Sequence[int | None] | None = None,
        file_name: str = BEST_CHECKPOINT_NAME,
        higher_is_better: bool = True,
        description: str | None = None,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.network = network
        self.validator = validator
        self.metric_name = metric_name
        self.interval = int(interval)
        self.epoch_level = bool(epoch_level)
        if window is None:
            window = (None, None)
        if len(window) != 2:
            raise ValueError(f"window must be [first step, last step] (either may be null), got {window!r}.")
        lo, hi = (None if w is None else int(w) for w in window)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"window [{lo}, {hi}]: the first step is after the last.")
        self.window = (lo, hi)
        self.file_name = file_name
        self.higher_is_better = higher_is_better
        self.description = description
        self.best_score: float | None = None
        self.best_step: int | None = None
        self._trainer: weakref.ref[Engine] | None = None

    @property
    def weights_path(self) -> Path:
        """The best model's weights file."""
        return self.save_dir / self.file_name

    @property
    def record_path(self) -> Path:
        """The JSON record of the best model (step, epoch, metric, score, window)."""
        return self.weights_path.with_suffix(".json")

    def attach(self, engine: Engine) -> None:
        self._trainer = weakref.ref(engine)
        engine.add_event_handler(Events.STARTED, self._on_started)
        if self.validator is None or self.interval <= 0:
            logger.info(
                "no validation during training (no validation data or val_interval <= 0): no best model is selected"
            )
            return
        ValidationHandler(interval=self.interval, validator=self.validator, epoch_level=self.epoch_level).attach(engine)
        self.validator.add_event_handler(Events.EPOCH_COMPLETED, self._on_validated)

    def in_window(self, step: int) -> bool:
        """Whether a score at training step ``step`` may be kept."""
        lo, hi = self.window
        return (lo is None or step >= lo) and (hi is None or step <= hi)

    def replaces_best(self, score: float) -> bool:
        """Whether ``score`` is at least as good as the best so far (ties go to the later step; NaN never does)."""
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        return score >= self.best_score if self.higher_is_better else score <= self.best_score

    def update(self, score: float, step: int, epoch: int | None = None) -> bool:
        """Compare a validation score with the best; save the network when it is as good or better, inside the window.

        Args:
            score: the validation score.
            step: the training step (iteration) of the validated weights.
            epoch: the training epoch (written in the record).

        Returns:
            whether the network was kept as the new best.
        """
        score = float(score)
        kept = self.in_window(step) and self.replaces_best(score)
        if kept:
            self.best_score, self.best_step = score, int(step)
            self._save(epoch)
        where = "" if self.in_window(step) else " (outside the selection window, not kept)"
        best = "none" if self.best_score is None else f"{self.best_score:.4f} at step {self.best_step}"
        logger.info(f"validation {self.metric_name} {score:.4f} at step {step}{where}; best {best}")
        return kept

    def _save(self, epoch: int | None) -> None:
        if not is_rank0():
            return
        save_atomic(_unwrap(self.network).state_dict(), self.weights_path)
        record = {
            "file": self.file_name,
            "step": self.best_step,
            "epoch": epoch,
            "metric": self.metric_name,
            "description": self.description,
            "score": self.best_score,
            "window": list(self.window),
        }
        atomic_write_json(record, self.record_path)  # the weights first: the record never names missing weights

    def _on_validated(self, validator: Engine) -> None:
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is None:
            return
        if self.metric_name not in validator.state.metrics:
            raise KeyError(
                f"the validator has no metric {self.metric_name!r} (it has {sorted(validator.state.metrics)})."
            )
        self.update(validator.state.metrics[self.metric_name], trainer.state.iteration, trainer.state.epoch)

    def _on_started(self, engine: Engine) -> None:
        """Runs after the resume handler's loader: read the best back on resume, clear an earlier run's on a new one."""
        self.best_score, self.best_step = None, None
        if engine.state.iteration > 0:
            if self.record_path.is_file() and self.weights_path.is_file():
                record = json.loads(self.record_path.read_text())
                if record.get("metric") == self.metric_name and record.get("score") is not None:
                    self.best_score, self.best_step = float(record["score"]), int(record["step"])
                    logger.info(f"resumed the best {self.metric_name} {self.best_score:.4f} at step {self.best_step}")
            return
        if is_rank0():
            for path in (self.record_path, self.weights_path):
                if path.is_file():
                    path.unlink()
                    logger.info(f"removed {path} of an earlier run (this run starts from scratch)")
