"""Learning-rate schedules of the papers, as ``torch.optim.lr_scheduler`` objects stepped once per epoch."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LinearDecay", "constant_then_linear_decay"]


class LinearDecay:
    """Multiplier 1 for ``constant_epochs`` epochs, then decreasing linearly to 0 over ``decay_epochs`` epochs.

    CDA-GAN sec. 4.3: "the learning rate is initialized to 1e-4, and after 100 epochs, the learning rate starts
    decaying to zero linearly" (CycleGAN's schedule: the multiplier of epoch ``e`` (0-based) is
    ``1 - max(0, e + 1 - constant_epochs) / (decay_epochs + 1)``).

    Args:
        constant_epochs: epochs at the initial learning rate.
        decay_epochs: epochs of linear decay.
    """

    def __init__(self, constant_epochs: int, decay_epochs: int) -> None:
        if constant_epochs < 0 or decay_epochs < 0:
            raise ValueError("constant_epochs and decay_epochs must be >= 0.")
        self.constant_epochs = int(constant_epochs)
        self.decay_epochs = int(decay_epochs)

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - max(0, epoch + 1 - self.constant_epochs) / float(self.decay_epochs + 1))


def constant_then_linear_decay(optimizer: torch.optim.Optimizer, constant_epochs: int, decay_epochs: int) -> LambdaLR:
    """A ``LambdaLR`` with :class:`LinearDecay` (its state, including the schedule, is checkpointed)."""
    return LambdaLR(optimizer, LinearDecay(constant_epochs, decay_epochs))
