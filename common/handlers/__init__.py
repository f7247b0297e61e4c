"""Ignite/MONAI event handlers shared by the bundles: sample grids, synthetic-data export, predicted masks and
classes, the classification/segmentation metric handlers, and the end-of-training run summary."""

from common.handlers.best_checkpoint import BEST_CHECKPOINT_NAME, BestCheckpointHandler, select_checkpoint
from common.handlers.classification_predictions import ClassificationPredictionWriter
from common.handlers.datalist_writers import DetectionDatalistWriter, RefinedDatalistWriter
from common.handlers.metrics import (
    ClassificationMetricsHandler,
    MetricsHandler,
    MetricsReport,
    PerImageMetricsHandler,
    SegmentationMetricsHandler,
    stack_pred_label,
)
from common.handlers.predictions import PredictionWriter, prediction_path
from common.handlers.run_summary import RunSummaryHandler, display_path
from common.handlers.sample_grid import SampleGridHandler, make_grid, save_png
from common.handlers.synthetic_export import SyntheticDatalistWriter

__all__ = [
    "BEST_CHECKPOINT_NAME",
    "BestCheckpointHandler",
    "select_checkpoint",
    "make_grid",
    "save_png",
    "PredictionWriter",
    "prediction_path",
    "RunSummaryHandler",
    "SampleGridHandler",
    "SyntheticDatalistWriter",
    "DetectionDatalistWriter",
    "RefinedDatalistWriter",
    "ClassificationMetricsHandler",
    "ClassificationPredictionWriter",
    "MetricsHandler",
    "MetricsReport",
    "PerImageMetricsHandler",
    "SegmentationMetricsHandler",
    "display_path",
    "stack_pred_label",
]
