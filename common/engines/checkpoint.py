"""Atomic checkpoints of a whole adversarial training state, and resume from the latest one.

A checkpoint holds every object of the training step (all networks, optimisers, schedulers, gradient
scalers) and the trainer's counters (epoch, iteration), so that a killed run resumes with one override
(``--resume true``) and continues as if never stopped. Files are written to a temporary name and renamed
(ignite ``DiskSaver(atomic=True)``; MONAI's ``CheckpointSaver`` writes in place), and loaded with
``torch.load(weights_only=True)`` through MONAI's :class:`~monai.handlers.CheckpointLoader`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader

from common.utils import atomic_path, is_rank0, remove_stale_temporaries
from common.utils.checkpoints import CHECKPOINT_PREFIX, latest_checkpoint

from .step import unwrap

__all__ = [
    "CHECKPOINT_PREFIX",
    "CheckpointHandler",
    "ResumeHandler",
    "TrainingState",
    "latest_checkpoint",
    "require_file",
    "save_atomic",
]

logger = logging.getLogger("common.engines")


def require_file(path: str | os.PathLike, what: str) -> str:
    """Fail early, before any work starts, when a needed file (e.g. a trained model) is missing.

    Args:
        path: the file.
        what: what the file is and how to make it, for the error message.

    Returns:
        ``path`` as a string.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"'{path}' does not exist: {what}.")
    return str(path)


def load_network_files(folder: str | os.PathLike, files: dict[str, Any], map_location: Any = "cpu") -> str:
    """Load networks from the weight files a :class:`CheckpointHandler` writes with ``model_files``.

    Args:
        folder: the folder of the files (the bundle's ``models/``).
        files: ``{file name: module}``; ``None`` modules (networks a variant does not have) are skipped.
        map_location: passed to ``torch.load`` (``weights_only=True``, strict loading).

    Returns:
        the path of the first file, the bundle's main model, as a string.
    """
    paths = {name: Path(folder) / name for name, net in files.items() if net is not None}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing weight files {missing}: run the training workflow first.")
    for name, path in paths.items():
        unwrap(files[name]).load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return str(next(iter(paths.values())))


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a reader never sees half a file.

    Args:
        obj: what to save (a state dict, or a dict of them).
        path: destination file; missing folders are created (:func:`common.utils.atomic_path`).
    """
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class TrainingState:
    """The objects a checkpoint holds, for trainers that run no :class:`~common.engines.TrainingStep`.

    :class:`CheckpointHandler` and :class:`ResumeHandler` save and restore ``step.state_objects()`` and look networks
    up in ``step.networks``; this adaptor gives the same interface to, e.g., a MONAI ``SupervisedTrainer``'s
    network, optimiser and scheduler.

    Args:
        networks: ``{name: module}``, the networks (also what ``model_files`` of the checkpoint handler names).
        others: further objects with a ``state_dict``/``load_state_dict`` (optimisers, schedulers, scalers).
    """

    def __init__(self, networks: dict[str, torch.nn.Module], **others: Any) -> None:
        self.networks = dict(networks)
        self.others = {k: v for k, v in others.items() if v is not None}
        clash = set(self.networks) & set(self.others)
        if clash:
            raise ValueError(f"names {sorted(clash)} are given both as networks and as other objects.")

    def state_objects(self) -> dict[str, Any]:
        """Every object to checkpoint, ``{name: object}``."""
        return {**self.networks, **self.others}


def _objects(engine: Engine, step: Any) -> dict[str, Any]:
    objects = dict(step.state_objects()) if step is not None else {}
    objects["trainer"] = engine
    return objects


class CheckpointHandler:
    """Save the training state every ``save_interval`` epochs (or iterations), atomically, keeping ``n_saved``.

    Args:
        save_dir: folder of the checkpoints (``checkpoint_<iteration>.pt``).
        step: the training step whose ``state_objects()`` are saved; the trainer's counters are added.
        save_interval: interval between saves.
        epoch_level: count ``save_interval`` in epochs (default) or iterations.
        n_saved: number of checkpoints kept (older ones are deleted after a successful save).
        model_files: optional ``{file name: network name}``; each listed network's own ``state_dict`` is also
            written to ``save_dir/<file name>`` at every save (e.g. ``{"model.pt": "generator"}``, the model-zoo
            convention for the inference and TorchScript-export configs).
        skip_missing: skip ``model_files`` entries whose network the step does not have (e.g. the attention
            networks of a variant without them) instead of raising.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        step: Any,
        save_interval: int = 1,
        epoch_level: bool = True,
        n_saved: int = 2,
        model_files: dict[str, str] | None = None,
        skip_missing: bool = False,
    ) -> None:
        self.save_dir = str(save_dir)
        self.step = step
        self.save_interval = max(int(save_interval), 1)
        self.epoch_level = epoch_level
        self.n_saved = n_saved
        self.model_files = dict(model_files or {})
        if skip_missing:
            self.model_files = {f: n for f, n in self.model_files.items() if n in step.networks}
        unknown = [n for n in self.model_files.values() if n not in step.networks]
        if unknown:
            raise ValueError(f"model_files name networks {unknown} that are not in the step {list(step.networks)}.")
        self._checkpoint: Checkpoint | None = None
        self._last_saved: int | None = None

    def attach(self, engine: Engine) -> None:
        os.makedirs(self.save_dir, exist_ok=True)
        if is_rank0():  # temporary files of a killed earlier run in this folder (never read, only in the way)
            for path in remove_stale_temporaries(self.save_dir):
                logger.info(f"removed {path}, left by a run killed while writing it")
        self._checkpoint = Checkpoint(
            _objects(engine, self.step),
            DiskSaver(self.save_dir, require_empty=False, atomic=True),
            filename_prefix="",
            n_saved=self.n_saved,
            global_step_transform=lambda eng, _: eng.state.iteration,
        )
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.save_interval), self)
        # a run's last state is always saved, whatever the interval
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        assert self._checkpoint is not None
        if self._last_saved == engine.state.iteration:
            return  # already saved at this iteration (e.g. last epoch, then COMPLETED)
        self._checkpoint(engine)
        self._last_saved = engine.state.iteration
        if is_rank0():  # the DiskSaver writes on rank 0 only, too
            for file_name, net_name in self.model_files.items():
                save_atomic(unwrap(self.step.networks[net_name]).state_dict(), os.path.join(self.save_dir, file_name))
            logger.info(f"saved checkpoint {self._checkpoint.last_checkpoint} in {self.save_dir}")


class ResumeHandler:
    """Resume a run from a checkpoint when ``resume`` is set: ``True`` (the latest in ``ckpt_dir``) or a path.

    With ``resume=False`` it does nothing; with ``resume=True`` and no checkpoint in ``ckpt_dir`` it logs that
    training starts from scratch. Loading uses MONAI's ``CheckpointLoader`` (``weights_only=True``) on
    ``Events.STARTED``, which restores the networks, optimisers, schedulers, scalers and the trainer's epoch and
    iteration, so that the run continues where it stopped.

    Args:
        ckpt_dir: folder of the checkpoints written by :class:`CheckpointHandler`.
        step: the training step whose ``state_objects()`` are restored.
        resume: ``False``, ``True`` or the path of a checkpoint file.
        map_location: passed to ``torch.load`` (e.g. the device under distributed training).
    """

    def __init__(
        self, ckpt_dir: str | os.PathLike, step: Any, resume: bool | str = False, map_location: Any = None
    ) -> None:
        self.ckpt_dir = ckpt_dir
        self.step = step
        self.resume = resume
        self.map_location = map_location
        self.loaded_from: Path | None = None

    def resolve(self) -> Path | None:
        """The checkpoint file that will be loaded, or ``None``."""
        if self.resume is False or self.resume is None or str(self.resume).lower() in ("false", "0", ""):
            return None
        if self.resume is True or str(self.resume).lower() in ("true", "1", "latest"):
            return latest_checkpoint(self.ckpt_dir)
        path = Path(str(self.resume))
        if not path.is_file():
            raise FileNotFoundError(f"resume checkpoint '{path}' does not exist.")
        return path

    def attach(self, engine: Engine) -> None:
        path = self.resolve()
        if path is None:
            if self.resume not in (False, None):
                logger.info(f"resume requested but no checkpoint in '{self.ckpt_dir}': starting from scratch.")
            return
        self.loaded_from = path
        loader = CheckpointLoader(
            load_path=str(path), load_dict=_objects(engine, self.step), map_location=self.map_location
        )
        # registered first among the handlers so the state is restored before anything else runs
        engine.add_event_handler(Events.STARTED, loader)
        engine.add_event_handler(
            Events.STARTED, lambda e: logger.info(f"resumed from {path} at iteration {e.state.iteration}")
        )
