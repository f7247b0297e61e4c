"""Atomic checkpoints of a whole adversarial training state, and exact resume from the latest one.

A checkpoint holds every object of the training step (all networks, optimisers, schedulers, gradient
scalers), the trainer's counters (epoch, iteration) and the run's random state (:class:`RandomStateTracker`:
every generator and the position in the data), so that a killed run resumes with one override
(``--resume true``) and continues as if never stopped: on a CPU, a run killed mid-epoch (even with SIGKILL) and
resumed gives the same losses and weights as the uninterrupted run. Files are written to a temporary name and
renamed (ignite ``DiskSaver(atomic=True)``; MONAI's ``CheckpointSaver`` writes in place), and loaded with
``torch.load(weights_only=True)`` through MONAI's :class:`~monai.handlers.CheckpointLoader`. On SIGTERM (what
cluster schedulers send before pre-empting a job) :class:`CheckpointHandler` writes a checkpoint at the end of the
current iteration and stops the run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from common.utils import (
    is_rank0,
    object_rng_states,
    remove_stale_temporaries,
    rng_state,
    set_object_rng_states,
    set_rng_state,
)
from common.utils.checkpoints import CHECKPOINT_PREFIX, latest_checkpoint, save_atomic
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader

from .step import unwrap

__all__ = [
    "CHECKPOINT_PREFIX",
    "CheckpointHandler",
    "RANDOM_STATE_KEY",
    "RandomStateTracker",
    "ResumeHandler",
    "TrainingState",
    "latest_checkpoint",
    "require_file",
    "save_atomic",
]

logger = logging.getLogger("common.engines")

RANDOM_STATE_KEY = "random_state"
"""Key of the :class:`RandomStateTracker` state in a checkpoint."""


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


class RandomStateTracker:
    """The random state of a run and its position in the data, checkpointed so that a resumed run is exact.

    What a run draws depends on the global generators (Python, NumPy, torch CPU and CUDA), on generators owned by
    objects (MONAI ``Randomizable`` transforms' ``R``, samplers' and image pools' ``torch.Generator``: found in the
    engine's data loader, its ``prepare_batch`` and its ``step``, :func:`common.utils.object_rng_states`) and on the
    order of the data. A data loader with ``shuffle=True`` draws its permutation (and its workers' seeds) from the
    global torch generator when its iterator is created, so the tracker records the random state at that moment
    (the first epoch of a run, then each time ignite renews the iterator) and counts the batches drawn since.

    :meth:`state_dict` (written into each checkpoint under ``"random_state"``) holds that iterator-start state, the
    number of batches drawn and the current state. On resume, :meth:`load_state_dict` and :meth:`restore` (at
    ``Events.STARTED``, after the checkpoint is loaded) set the generators to the iterator-start state, so that
    ignite creates the same iterator; at the first ``Events.GET_BATCH_STARTED`` the batches already used are drawn
    again and dropped (data loading only, no training), then the generators are set to the saved current state.
    A checkpoint written when the iterator was exhausted (the usual epoch end) restores the current state only, as
    does one of a loader without a length (an endless batch sampler such as
    :class:`~common.engines.ProgressiveBatchSampler`, whose iterator depends on its own checkpointed state): the
    batches skipped on resume are thus at most one pass over the data.

    Exactness holds on a CPU, with ``num_workers=0`` or non-persistent workers, and when no handler attached after
    the :class:`CheckpointHandler` draws from the global generators at the event where checkpoints are written (the
    state is captured when the checkpoint is written). Each engine has one tracker, shared by the checkpoint and
    resume handlers (:meth:`of`).

    Args:
        engine: the training engine (held by a weak reference).
    """

    _trackers: weakref.WeakKeyDictionary[Engine, RandomStateTracker] = weakref.WeakKeyDictionary()

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self.iterator_start: dict[str, Any] | None = None
        self.drawn = 0
        self._new_run = True
        self._loaded: dict[str, Any] | None = None
        self._skip = 0
        self._resume_state: dict[str, Any] | None = None
        engine.add_event_handler(Events.STARTED, self._on_started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._on_epoch_started)
        engine.add_event_handler(Events.DATALOADER_STOP_ITERATION, self._record_iterator_start)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._skip_used_batches)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._count_batch)

    @classmethod
    def of(cls, engine: Engine) -> RandomStateTracker:
        """The tracker of ``engine``, created (and attached) on first use."""
        tracker = cls._trackers.get(engine)
        if tracker is None:
            tracker = cls._trackers[engine] = cls(engine)
        return tracker

    def _roots(self, engine: Engine) -> list[Any]:
        return [engine.state.dataloader, getattr(engine, "prepare_batch", None), getattr(engine, "step", None)]

    def capture(self) -> dict[str, Any]:
        """The current random state: ``{"global": rng_state(), "objects": [state per object generator]}``."""
        engine = self._engine()
        roots = self._roots(engine) if engine is not None else []
        return {"global": rng_state(), "objects": object_rng_states(roots)}

    def _apply(self, engine: Engine, state: dict[str, Any]) -> None:
        set_rng_state(state["global"])
        if not set_object_rng_states(self._roots(engine), state["objects"]):
            logger.warning(
                "the data pipeline or step holds other random generators than the checkpoint: their states are not "
                "restored, so the resumed run is not exactly the uninterrupted one."
            )

    def state_dict(self) -> dict[str, Any]:
        """``{"current": ..., "iterator_start": ..., "drawn": int}`` (tensors, numbers and strings only)."""
        current = self.capture()
        start = self.iterator_start if self.iterator_start is not None else current
        return {"current": current, "iterator_start": start, "drawn": int(self.drawn)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep a checkpoint's state; :meth:`restore` applies it when the run starts."""
        self._loaded = dict(state)

    def restore(self, engine: Engine) -> None:
        """Apply the loaded state (``Events.STARTED``, after the checkpoint loader); a no-op when none is loaded."""
        if self._loaded is None:
            return
        state, self._loaded = self._loaded, None
        drawn = int(state["drawn"])
        loader = engine.state.dataloader
        try:
            length = len(loader) if loader is not None else None
        except TypeError:  # an iterable without a length
            length = None
        if length is None:
            # an endless loader (e.g. ProgressiveBatchSampler's) follows its own restored position, but creating its
            # new iterator draws a base seed from the global generator: set the saved state at the first batch
            self._skip, self._resume_state = 0, state["current"]
            return
        if drawn == 0 or drawn >= length:  # a new iterator gives the next batch (a finished pass)
            self._apply(engine, state["current"])
            return
        self._apply(engine, state["iterator_start"])  # ignite creates the same iterator again...
        self._skip, self._resume_state = drawn, state["current"]  # ...whose used batches are then skipped

    def _on_started(self, engine: Engine) -> None:
        self._new_run = True

    def _on_epoch_started(self, engine: Engine) -> None:
        if self._new_run:  # ignite creates the run's first data iterator right after this event
            self._new_run = False
            self._record_iterator_start(engine)

    def _record_iterator_start(self, engine: Engine) -> None:
        self.iterator_start = self.capture()
        self.drawn = 0

    def _count_batch(self, engine: Engine) -> None:
        self.drawn += 1

    def _skip_used_batches(self, engine: Engine) -> None:
        if self._resume_state is None:
            return
        iterator = getattr(engine, "_dataloader_iter", None)  # ignite's iterator of state.dataloader (no public API)
        if iterator is None:
            raise RuntimeError("cannot skip the batches used before the checkpoint: the engine has no data iterator.")
        for index in range(self._skip):
            try:
                next(iterator)
            except StopIteration:
                raise RuntimeError(
                    f"the training data has {index} batches per pass, but the checkpoint was written after "
                    f"{self._skip}: resume with the data of the interrupted run."
                ) from None
        self.drawn = self._skip
        state, self._skip, self._resume_state = self._resume_state, 0, None
        self._apply(engine, state)


def _objects(engine: Engine, step: Any, random_state: bool = True) -> dict[str, Any]:
    objects = dict(step.state_objects()) if step is not None else {}
    objects["trainer"] = engine
    if random_state:
        objects[RANDOM_STATE_KEY] = RandomStateTracker.of(engine)
    return objects


OPTIONAL_STATE_KEYS: tuple[str, ...] = ("precision", "acceleration")
"""Entries of a step's state that checkpoints of earlier versions lack (the precision policy, the memory layouts
chosen by ``memory_format: auto``): resuming such a checkpoint keeps the step's own value instead of failing on the
missing key."""


def _checkpoint_keys(path: Path) -> list[str]:
    """The entries of a checkpoint file, memory-mapped when its format allows (only the names are needed)."""
    try:
        return list(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    except RuntimeError:  # a file of torch's legacy (non-zip) format cannot be memory-mapped
        return list(torch.load(path, map_location="cpu", weights_only=True))


def _ends_epoch(engine: Engine) -> bool:
    """Whether the engine's current iteration is the last of its epoch."""
    length = engine.state.epoch_length
    return length is not None and engine.state.iteration % length == 0


def _engine_on_stack(engine: Engine, frame: FrameType | None) -> bool:
    """Whether ``frame`` or one of its callers is a method of ``engine`` (i.e. the engine is running)."""
    while frame is not None:
        if frame.f_locals.get("self") is engine:
            return True
        frame = frame.f_back
    return False


class CheckpointHandler:
    """Save the training state every ``save_interval`` epochs (or iterations), atomically, keeping ``n_saved``.

    Each checkpoint holds the step's objects, the trainer's counters and the run's random state and data position
    (:class:`RandomStateTracker`), so that :class:`ResumeHandler` continues exactly where it stopped.

    On SIGTERM (what Slurm, Kubernetes and other schedulers send before pre-empting or stopping a job, followed by
    SIGKILL after a grace period) the handler, installed while the engine runs in the main thread, only sets a
    flag; at the end of the current iteration a checkpoint is written (the same files as an interval save), the
    engine is terminated without ``Events.COMPLETED`` (the run is not finished: no end-of-run summary or
    evaluation), the previous SIGTERM handler is put back and SIGTERM is raised again. With the default disposition
    the process therefore ends as killed by SIGTERM (exit status 143 in a shell, -15 for ``subprocess``), which
    schedulers and launchers read as "stopped, not finished": a Kubernetes Job or ``torchrun`` restarts it, a
    requeued Slurm job runs it again, and ``train && evaluate`` does not evaluate a half-trained model; rerun with
    ``--resume true``. Under distributed training rank 0 does this; the other ranks keep training (their handler
    only records the signal) so that rank 0 can finish its iteration, whose collectives need them, and are ended
    by the launcher or scheduler once rank 0 has exited (``torchrun`` stops the other workers when one ends, Slurm
    and Kubernetes send SIGKILL after the grace period). Ranks cannot agree on a stop iteration without a
    collective call that every rank would have to make, and some bundles attach this handler on rank 0 only. A
    SIGTERM that arrives when the engine is not running (e.g. after an exception ended the run) goes straight to
    the previous handler.

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
        save_on_sigterm: handle SIGTERM as described above (``False``: leave SIGTERM alone).
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
        save_on_sigterm: bool = True,
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
        self.save_on_sigterm = save_on_sigterm
        self._checkpoint: Checkpoint | None = None
        self._last_saved: int | None = None
        self._engine: weakref.ref[Engine] | None = None
        self._previous_handler: Any = None
        self._installed = False
        self.sigterm_received = False

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
        if self.epoch_level:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self)
        else:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._save_within_epoch)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._save_at_epoch_end)
        # a run's last state is always saved, whatever the interval
        engine.add_event_handler(Events.COMPLETED, self)
        if self.save_on_sigterm:
            self._engine = weakref.ref(engine)
            engine.add_event_handler(Events.STARTED, self._install_sigterm_handler)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._stop_on_sigterm)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._stop_on_sigterm_at_epoch_end)
            engine.add_event_handler(Events.COMPLETED, self._end_of_run)
            engine.add_event_handler(Events.TERMINATE, lambda _: self._uninstall_sigterm_handler())

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

    # An iteration that ends an epoch is saved at EPOCH_COMPLETED instead, after the epoch-end handlers attached
    # before this one (learning-rate schedulers, validation): a resumed run starts the next epoch and never runs
    # them for the finished one.
    def _save_within_epoch(self, engine: Engine) -> None:
        if not _ends_epoch(engine):
            self(engine)

    def _save_at_epoch_end(self, engine: Engine) -> None:
        if engine.state.iteration % self.save_interval == 0:
            self(engine)

    def _install_sigterm_handler(self, engine: Engine) -> None:
        self.sigterm_received = False
        if self._installed or threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def _uninstall_sigterm_handler(self) -> None:
        if not self._installed:
            return
        self._installed = False
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:  # not replaced by someone else meanwhile
            signal.signal(signal.SIGTERM, self._previous_handler)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        engine = self._engine() if self._engine is not None else None
        if engine is not None and _engine_on_stack(engine, frame):
            self.sigterm_received = True  # acted on at the end of the current iteration
            return
        self._uninstall_sigterm_handler()  # the run ended without COMPLETED (an exception): pass the signal on
        signal.raise_signal(signum)

    def _stop_on_sigterm(self, engine: Engine) -> None:
        if self.sigterm_received and is_rank0() and not _ends_epoch(engine):  # else at EPOCH_COMPLETED
            self._save_and_stop(engine)

    def _stop_on_sigterm_at_epoch_end(self, engine: Engine) -> None:
        if self.sigterm_received and is_rank0():
            self._save_and_stop(engine)

    def _save_and_stop(self, engine: Engine) -> None:
        self(engine)
        engine.terminate(skip_completed=True)
        # registered now, so it runs after every other TERMINATE handler
        engine.add_event_handler(Events.TERMINATE, self._exit_on_sigterm)

    def _exit_on_sigterm(self, engine: Engine) -> None:
        engine.remove_event_handler(self._exit_on_sigterm, Events.TERMINATE)
        assert self._checkpoint is not None
        logger.warning(
            f"stopped on SIGTERM at iteration {engine.state.iteration}: checkpoint {self._checkpoint.last_checkpoint} "
            f"in {self.save_dir}; continue with --resume true."
        )
        self._uninstall_sigterm_handler()
        signal.raise_signal(signal.SIGTERM)  # to the previous handler: by default the process ends (status 143)

    def _end_of_run(self, engine: Engine) -> None:
        self._uninstall_sigterm_handler()
        if self.sigterm_received:  # arrived after the last iteration; the final checkpoint is written
            signal.raise_signal(signal.SIGTERM)


class ResumeHandler:
    """Resume a run from a checkpoint when ``resume`` is set: ``True`` (the latest in ``ckpt_dir``) or a path.

    With ``resume=False`` it does nothing; with ``resume=True`` and no checkpoint in ``ckpt_dir`` it logs that
    training starts from scratch. Loading uses MONAI's ``CheckpointLoader`` (``weights_only=True``) on
    ``Events.STARTED``, which restores the networks, optimisers, schedulers, scalers and the trainer's epoch and
    iteration; then the random state and the position in the data are restored (:class:`RandomStateTracker`), so
    that the run continues exactly as the uninterrupted one would have, also from a checkpoint written mid-epoch.
    A checkpoint without a random state (written by an earlier version) resumes the same objects and counters,
    with a warning that the continuation is not exact.

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
        keys = _checkpoint_keys(path)
        exact = RANDOM_STATE_KEY in keys
        if not exact:
            logger.warning(f"{path} holds no random state (an earlier version wrote it): the resumed run is not exact.")
        load_dict = _objects(engine, self.step, random_state=exact)
        for key in OPTIONAL_STATE_KEYS:
            if key not in keys:  # written before the step had this entry: the step keeps its own
                load_dict.pop(key, None)
        loader = CheckpointLoader(load_path=str(path), load_dict=load_dict, map_location=self.map_location)
        # registered first among the handlers so the state is restored before anything else runs
        engine.add_event_handler(Events.STARTED, loader)
        if exact:
            engine.add_event_handler(Events.STARTED, load_dict[RANDOM_STATE_KEY].restore)
        engine.add_event_handler(
            Events.STARTED, lambda e: logger.info(f"resumed from {path} at iteration {e.state.iteration}")
        )
