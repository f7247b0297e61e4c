"""MONAI-style transforms shared by the bundles."""

from .channels import SelectChannels, SelectChannelsd
from .enhancement import DifferencePseudoLabeld, attach_difference_maps, mix_synthetic_pairs, pseudo_label_entries
from .predictions import PredictionWriter, prediction_path

__all__ = [
    "SelectChannels",
    "SelectChannelsd",
    "DifferencePseudoLabeld",
    "attach_difference_maps",
    "mix_synthetic_pairs",
    "pseudo_label_entries",
    "PredictionWriter",
    "prediction_path",
]
