"""MONAI-style transforms shared by the bundles."""

from .bias_field import N4BiasFieldCorrectiond
from .box_condition import BoxConditiond, augment_boxes, boxes_to_condition, condition_samples, scale_boxes
from .channels import SelectChannels, SelectChannelsd
from .mixing import MIX_MODES, BatchMixer, ClassificationPrepareBatch, SegmentationPrepareBatch
from .nodule import (
    DEFAULT_HU_WINDOW,
    NODULE_CONDITIONS,
    ConditionAugmentd,
    NoduleVOId,
    NoiseBoxd,
    PasteNoduled,
    TileConditionsd,
    augment_box,
    central_box,
    condition_vector,
    crop_voi,
    hu_to_unit,
    lung_mask,
    nodule_entries,
    nodule_region,
    paste_nodule,
    sample_lung_box,
    unit_to_hu,
)
from .pseudo_label import DifferencePseudoLabeld
from .shift import RandShiftFractiond
from .spatial import SpatialAxesError, SqueezeToSpatialDims, SqueezeToSpatialDimsd

__all__ = [
    "N4BiasFieldCorrectiond",
    "BoxConditiond",
    "augment_boxes",
    "boxes_to_condition",
    "condition_samples",
    "scale_boxes",
    "SelectChannels",
    "SelectChannelsd",
    "MIX_MODES",
    "BatchMixer",
    "ClassificationPrepareBatch",
    "SegmentationPrepareBatch",
    "DEFAULT_HU_WINDOW",
    "NODULE_CONDITIONS",
    "ConditionAugmentd",
    "NoduleVOId",
    "NoiseBoxd",
    "PasteNoduled",
    "TileConditionsd",
    "augment_box",
    "central_box",
    "condition_vector",
    "crop_voi",
    "hu_to_unit",
    "lung_mask",
    "nodule_entries",
    "nodule_region",
    "paste_nodule",
    "sample_lung_box",
    "unit_to_hu",
    "DifferencePseudoLabeld",
    "RandShiftFractiond",
    "SpatialAxesError",
    "SqueezeToSpatialDims",
    "SqueezeToSpatialDimsd",
]

from .channel_layout import PlaceChannels, PlaceChannelsd  # noqa: E402

__all__ += ["PlaceChannels", "PlaceChannelsd"]
