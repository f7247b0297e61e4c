"""Metrics for generated images: pluggable feature extractors, FID, KID, MMD, SSIM diversity and an evaluation
runner that writes a JSON report."""

from common.metrics.classification import (
    CLASSIFICATION_KEYS,
    ClassificationMetrics,
    ClassificationMetricsHandler,
    ClassificationPredictionWriter,
    classification_metrics,
    rank_auc,
)
from common.metrics.embeddings import image_features, load_datalist_images, tsne_embedding, tsne_real_vs_synthetic
from common.metrics.evaluation import RESULT_KEYS, GenerativeEvaluation, format_table
from common.metrics.features import (
    SUPPORTED_ARCHS,
    FeatureExtractor,
    build_feature_extractor,
    extract_features,
    load_state_dict_file,
)
from common.metrics.generative import MS_SSIM_WEIGHTS, fid, kid, mmd, polynomial_kernel, ssim_diversity, unbiased_mmd2
from common.metrics.segmentation import (
    SEGMENTATION_KEYS,
    SegmentationMetrics,
    SegmentationMetricsHandler,
    segmentation_metrics,
)
from common.metrics.statistics import (
    FriedmanResult,
    NemenyiResult,
    average_ranks,
    compare_methods,
    friedman_test,
    nemenyi_critical_difference,
    nemenyi_q_alpha,
    nemenyi_test,
    rank_blocks,
)
from common.metrics.translation import TranslationEvaluation, attention_dice_iou, change_inside_outside

__all__ = [
    "CLASSIFICATION_KEYS",
    "ClassificationMetrics",
    "ClassificationMetricsHandler",
    "ClassificationPredictionWriter",
    "classification_metrics",
    "rank_auc",
    "FeatureExtractor",
    "GenerativeEvaluation",
    "MS_SSIM_WEIGHTS",
    "RESULT_KEYS",
    "SEGMENTATION_KEYS",
    "SegmentationMetrics",
    "SegmentationMetricsHandler",
    "segmentation_metrics",
    "SUPPORTED_ARCHS",
    "TranslationEvaluation",
    "attention_dice_iou",
    "change_inside_outside",
    "build_feature_extractor",
    "extract_features",
    "fid",
    "format_table",
    "kid",
    "load_state_dict_file",
    "mmd",
    "polynomial_kernel",
    "ssim_diversity",
    "unbiased_mmd2",
    "FriedmanResult",
    "NemenyiResult",
    "average_ranks",
    "compare_methods",
    "friedman_test",
    "nemenyi_critical_difference",
    "nemenyi_q_alpha",
    "nemenyi_test",
    "rank_blocks",
    "image_features",
    "load_datalist_images",
    "tsne_embedding",
    "tsne_real_vs_synthetic",
]

from common.metrics.detection import (  # noqa: E402
    CPM_FP_RATES,
    DetectionEvaluation,
    coco_metrics,
    cpm,
    cpm_by_attribute,
    froc_curve,
    match_image,
    sensitivity_at_fp_rates,
    sensitivity_fp_per_image,
)

__all__ += [
    "CPM_FP_RATES",
    "DetectionEvaluation",
    "coco_metrics",
    "cpm",
    "cpm_by_attribute",
    "froc_curve",
    "match_image",
    "sensitivity_at_fp_rates",
    "sensitivity_fp_per_image",
]

from common.metrics.outliers import (  # noqa: E402
    OUTLIER_METHODS,
    FeatureOutlierFilter,
    OutlierResult,
    filter_synthetic_datalist,
    image_feature_vectors,
    read_datalist_images,
)

__all__ += [
    "OUTLIER_METHODS",
    "FeatureOutlierFilter",
    "OutlierResult",
    "filter_synthetic_datalist",
    "image_feature_vectors",
    "read_datalist_images",
]
