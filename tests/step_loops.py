"""A training step driven by hand, shared by test modules (imported as ``tests.step_loops``)."""

from types import SimpleNamespace

import torch
from common.engines import TrainingStep


def train_net(step: TrainingStep, images: torch.Tensor, iterations: int) -> list[float]:
    """``iterations`` updates of the step's network ``net`` on ``images`` (through the step's input layout), each
    minimising the mean square of its output; the losses."""
    engine = SimpleNamespace(state=SimpleNamespace(iteration=0, epoch=1))
    losses = []
    for _ in range(iterations):
        engine.state.iteration += 1
        loss = step.networks["net"](step.images({"image": images})).pow(2).mean()
        step.optimise(engine, "net", loss)
        losses.append(loss.item())
    return losses
