"""The step trainer: MONAI's :class:`~monai.engines.Trainer` running a per-method training step."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from common.utils import get_rank
from ignite.engine import Events
from monai.engines import Trainer
from monai.utils import set_determinism
from torch.utils.data import DataLoader

from .step import TrainingStep

__all__ = ["AdversarialTrainer", "StepTrainer", "rank_seed"]


def rank_seed(seed: int) -> int:
    """``seed + rank`` when running distributed (each rank draws its own noise and augmentations), else ``seed``."""
    return int(seed) + get_rank()


class StepTrainer(Trainer):
    """MONAI ``Trainer`` whose ``iteration_update`` is a :class:`~common.engines.TrainingStep`.

    The engine owns the loop, handlers, distributed sampler epochs, checkpoints and resume; the step owns the
    method's maths and returns a dict of scalar losses, which becomes ``engine.state.output`` (logged by MONAI's
    ``StatsHandler``/``TensorBoardStatsHandler``). The step's learning-rate schedulers are stepped by MONAI's
    ``LrScheduleHandler`` at every epoch or iteration end (the step's ``scheduler_interval``), attached before the
    given handlers so that a checkpoint written at the same event holds the stepped schedulers. Checkpoints and
    resume come from :class:`~common.engines.CheckpointHandler` and :class:`~common.engines.ResumeHandler` among the
    handlers; they also save and restore every random state and the position in the data, so that a resumed run
    repeats the uninterrupted one exactly on a CPU, and write a checkpoint and stop on SIGTERM.

    Unlike :class:`monai.engines.AdversarialTrainer` (one generator and one discriminator, with the losses and the
    update order fixed by the trainer), any number of networks and optimisers is allowed: the step decides.

    Args:
        device: training device.
        max_epochs: number of epochs.
        train_data_loader: loader of training batches (dicts with the step's ``image_key``).
        step: the method's training step.
        epoch_length: iterations per epoch (default: the loader's length).
        handlers: ignite/MONAI handlers with ``attach(engine)``.
        seed: if given, ``monai.utils.set_determinism(seed + rank)`` is called so each rank has its own stream.
        non_blocking: passed to MONAI's workflow.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: DataLoader,
        step: TrainingStep,
        epoch_length: int | None = None,
        handlers: Sequence[Any] | None = None,
        seed: int | None = None,
        non_blocking: bool = False,
    ) -> None:
        if seed is not None:
            set_determinism(seed=rank_seed(seed))
        self.step = step
        super().__init__(
            device=torch.device(device),
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            iteration_update=step,
            handlers=None,
            amp=False,  # mixed precision is handled by the step (autocast by device type)
            decollate=False,
        )
        for lr_handler in step.lr_schedule_handlers():
            lr_handler.attach(self)
        # all ranks start from rank 0's weights (on resume every rank then loads the same checkpoint file)
        self.add_event_handler(Events.STARTED, lambda _: step.broadcast_parameters(0))
        # handlers are attached after the step's own events so that e.g. a resume loader sees the whole state
        for handler in handlers or ():
            handler.attach(self)


class AdversarialTrainer(StepTrainer):
    """Deprecated alias of :class:`StepTrainer` (the name clashed with :class:`monai.engines.AdversarialTrainer`,
    which has another contract); it will be removed in the next release.

    Args:
        args: the arguments of :class:`StepTrainer`.
        kwargs: the keyword arguments of :class:`StepTrainer`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "common.engines.AdversarialTrainer is deprecated and will be removed in the next release: "
            "use common.engines.StepTrainer (same arguments).",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)
