"""Ignite/MONAI event handlers shared by the bundles: sample grids, synthetic-data export and predicted masks."""

from common.handlers.predictions import PredictionWriter, prediction_path
from common.handlers.sample_grid import SampleGridHandler, make_grid, save_png
from common.handlers.synthetic_export import SyntheticDatalistWriter, sha256_file

__all__ = [
    "make_grid",
    "save_png",
    "PredictionWriter",
    "prediction_path",
    "SampleGridHandler",
    "SyntheticDatalistWriter",
    "sha256_file",
]
