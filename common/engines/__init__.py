"""Ignite engines: one adversarial workflow that runs a method's training step, with checkpoints and resume."""

from .checkpoint import (
    CHECKPOINT_PREFIX,
    CheckpointHandler,
    ResumeHandler,
    TrainingState,
    latest_checkpoint,
    load_network_files,
    require_file,
    save_atomic,
)
from .cross_domain import DIFFERENCE_RULES, CrossDomainSynthesis
from .cyclegan_step import ATTENTION_MODES, CycleGANStep
from .detection_step import DetectionStep, detection_collate
from .feature_svm import FeatureSVM, image_features
from .gan_step import GANStep
from .history_buffer import HistoryBuffer
from .image_pool import ImagePool
from .mcgan_step import MCGANStep
from .mcgan_synthesis import MCGANSynthesis, NoduleGenerator, evaluate_mcgan, format_nodule_table
from .munit_step import MUNITStep
from .progressive import (
    BoxPlacementEvaluation,
    DetectionDatalistWriter,
    ProgressiveBatchSampler,
    ProgressiveGANStep,
    ProgressiveSchedule,
    box_placement_statistics,
)
from .refinement import (
    RefinedDatalistWriter,
    evaluate_refinement,
    make_degraded_synthetic,
    refinement_entries,
    synthetic_entries,
)
from .schedules import LinearDecay, constant_then_linear_decay
from .simgan_step import SimGANStep
from .step import DivergenceError, TrainingStep, unwrap
from .trainer import AdversarialTrainer, rank_seed

__all__ = [
    "DetectionStep",
    "detection_collate",
    "BoxPlacementEvaluation",
    "box_placement_statistics",
    "DetectionDatalistWriter",
    "ProgressiveBatchSampler",
    "ProgressiveGANStep",
    "ProgressiveSchedule",
    "MCGANStep",
    "MCGANSynthesis",
    "NoduleGenerator",
    "evaluate_mcgan",
    "format_nodule_table",
    "ATTENTION_MODES",
    "AdversarialTrainer",
    "CrossDomainSynthesis",
    "CycleGANStep",
    "DIFFERENCE_RULES",
    "ImagePool",
    "LinearDecay",
    "constant_then_linear_decay",
    "CHECKPOINT_PREFIX",
    "CheckpointHandler",
    "DivergenceError",
    "FeatureSVM",
    "GANStep",
    "ResumeHandler",
    "TrainingState",
    "TrainingStep",
    "latest_checkpoint",
    "load_network_files",
    "rank_seed",
    "require_file",
    "save_atomic",
    "image_features",
    "unwrap",
]
__all__ += [
    "HistoryBuffer",
    "MUNITStep",
    "RefinedDatalistWriter",
    "SimGANStep",
    "evaluate_refinement",
    "make_degraded_synthetic",
    "refinement_entries",
    "synthetic_entries",
]
