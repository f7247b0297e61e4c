"""Ignite engines: one adversarial workflow that runs a method's training step, with checkpoints and resume."""

from .checkpoint import (
    CHECKPOINT_PREFIX,
    CheckpointHandler,
    ResumeHandler,
    latest_checkpoint,
    require_file,
    save_atomic,
)
from .gan_step import GANStep
from .step import DivergenceError, TrainingStep, unwrap
from .trainer import AdversarialTrainer, rank_seed

__all__ = [
    "AdversarialTrainer",
    "CHECKPOINT_PREFIX",
    "CheckpointHandler",
    "DivergenceError",
    "GANStep",
    "ResumeHandler",
    "TrainingStep",
    "latest_checkpoint",
    "rank_seed",
    "require_file",
    "save_atomic",
    "unwrap",
]
