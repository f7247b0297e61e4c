"""Ignite engines: one adversarial workflow that runs a method's training step, with checkpoints and resume."""

from .acceleration import MEMORY_FORMATS, AccelerationSettingError, NetworkAcceleration, accelerate_inference
from .adaptive_augment import ADA_TRANSFORMS, AdaptiveAugment
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
from .cyclegan_step import ATTENTION_MODES, REAL_ATTENTION_MAPS, CycleGANStep
from .detection_step import DetectionStep, detection_collate
from .diff_augment import DiffAugment
from .ga_unet_step import GAUNetStep
from .gan_step import GANStep
from .grad_sync import all_reduce_gradients, gradient_buckets
from .history_buffer import HistoryBuffer
from .image_pool import ImagePool
from .mcgan_step import MCGANStep
from .msg_gan_step import MSG_GAN_LOSSES, MSGGANStep, image_pyramid
from .munit_step import MUNITStep
from .pix2pix_step import Pix2PixStep
from .precision import (
    AMP_CHOICES,
    BF16_MIN_SPEEDUP,
    CPU_BF16_ENV,
    PrecisionPolicy,
    cpu_bf16_speedup,
    cpu_has_amx,
    resolve_precision,
)
from .progressive import ProgressiveBatchSampler, ProgressiveGANStep, ProgressiveSchedule
from .schedules import LinearDecay, constant_then_linear_decay
from .simgan_step import SimGANStep
from .step import SCHEDULER_INTERVALS, CriticLosses, DivergenceError, PrecisionState, TrainingStep, unwrap
from .stylegan2_step import StyleGAN2Step
from .trainer import AdversarialTrainer, StepTrainer, rank_seed

__all__ = [
    "DetectionStep",
    "detection_collate",
    "ProgressiveBatchSampler",
    "ProgressiveGANStep",
    "ProgressiveSchedule",
    "MCGANStep",
    "ATTENTION_MODES",
    "AdversarialTrainer",
    "CriticLosses",
    "SCHEDULER_INTERVALS",
    "StepTrainer",
    "CycleGANStep",
    "ImagePool",
    "LinearDecay",
    "constant_then_linear_decay",
    "CHECKPOINT_PREFIX",
    "CheckpointHandler",
    "DivergenceError",
    "GANStep",
    "ResumeHandler",
    "TrainingState",
    "TrainingStep",
    "latest_checkpoint",
    "load_network_files",
    "rank_seed",
    "require_file",
    "save_atomic",
    "unwrap",
    "REAL_ATTENTION_MAPS",
]
__all__ += ["DiffAugment", "HistoryBuffer", "MUNITStep", "SimGANStep"]
__all__ += ["GAUNetStep"]
__all__ += ["ADA_TRANSFORMS", "AdaptiveAugment", "StyleGAN2Step"]
__all__ += ["Pix2PixStep"]
__all__ += ["MSG_GAN_LOSSES", "MSGGANStep", "image_pyramid"]
__all__ += ["AMP_CHOICES", "BF16_MIN_SPEEDUP", "CPU_BF16_ENV", "PrecisionPolicy", "PrecisionState"]
__all__ += ["cpu_bf16_speedup", "cpu_has_amx", "guard_tiny_3d_convolutions", "resolve_precision"]
__all__ += ["all_reduce_gradients", "gradient_buckets"]
__all__ += ["MEMORY_FORMATS", "AccelerationSettingError", "NetworkAcceleration", "accelerate_inference"]
