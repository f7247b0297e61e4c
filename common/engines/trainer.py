"""The adversarial workflow: MONAI's :class:`~monai.engines.Trainer` running a per-method training step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Events
from monai.engines import Trainer
from monai.utils import set_determinism
from torch.utils.data import DataLoader

from .step import TrainingStep

__all__ = ["AdversarialTrainer", "rank_seed"]


def rank_seed(seed: int) -> int:
    """``seed + rank`` under ``torch.distributed`` (each rank draws its own noise and augmentations), else ``seed``."""
    return int(seed) + (dist.get_rank() if dist.is_available() and dist.is_initialized() else 0)


class AdversarialTrainer(Trainer):
    """MONAI ``Trainer`` whose ``iteration_update`` is a :class:`~common.engines.TrainingStep`.

    The engine owns the loop, handlers, distributed sampler epochs, checkpoints and resume; the step owns the
    method's maths and returns a dict of scalar losses, which becomes ``engine.state.output`` (logged by MONAI's
    ``StatsHandler``/``TensorBoardStatsHandler``). Learning-rate schedulers of the step are stepped at every
    epoch end.

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
        self.add_event_handler(Events.EPOCH_COMPLETED, step.on_epoch_completed)
        # all ranks start from rank 0's weights (on resume every rank then loads the same checkpoint file)
        self.add_event_handler(Events.STARTED, lambda _: step.broadcast_parameters(0))
        # handlers are attached after the step's own event so that e.g. a resume loader sees the whole state
        for handler in handlers or ():
            handler.attach(self)
