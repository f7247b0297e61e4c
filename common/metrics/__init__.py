"""Pure metric functions and classes: feature extractors, FID, KID, MMD, SSIM diversity, classification,
segmentation and detection metrics, mask realism statistics, statistics, embeddings and the feature-space outlier
filter. The pipelines that load data, run networks and write reports are in :mod:`common.evaluation`."""

from common.metrics.classification import CLASSIFICATION_KEYS, ClassificationMetrics, classification_metrics, rank_auc
from common.metrics.embeddings import image_features, tsne_embedding
from common.metrics.features import (
    INCEPTION_FID_ARCH,
    INCEPTION_FID_WEIGHTS,
    SUPPORTED_ARCHS,
    CentralSlices,
    FeatureExtractor,
    FeatureWeightsError,
    build_feature_extractor,
    extract_features,
    load_state_dict_file,
)
from common.metrics.generative import MS_SSIM_WEIGHTS, fid, kid, mmd, polynomial_kernel, ssim_diversity, unbiased_mmd2
from common.metrics.segmentation import SEGMENTATION_KEYS, SegmentationMetrics, dsc_per_image, segmentation_metrics
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
from common.metrics.translation import attention_dice_iou, change_inside_outside

__all__ = [
    "CLASSIFICATION_KEYS",
    "ClassificationMetrics",
    "classification_metrics",
    "rank_auc",
    "CentralSlices",
    "FeatureExtractor",
    "FeatureWeightsError",
    "INCEPTION_FID_ARCH",
    "INCEPTION_FID_WEIGHTS",
    "MS_SSIM_WEIGHTS",
    "SEGMENTATION_KEYS",
    "SegmentationMetrics",
    "dsc_per_image",
    "segmentation_metrics",
    "SUPPORTED_ARCHS",
    "attention_dice_iou",
    "change_inside_outside",
    "build_feature_extractor",
    "extract_features",
    "fid",
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
    "tsne_embedding",
]

from common.metrics.detection import (  # noqa: E402
    CPM_FP_RATES,
    DetectionScore,
    coco_metrics,
    cpm,
    cpm_bootstrap,
    cpm_by_attribute,
    detection_score,
    froc_curve,
    match_image,
    sensitivity_at_fp_rates,
    sensitivity_fp_per_image,
)

__all__ += [
    "CPM_FP_RATES",
    "DetectionScore",
    "coco_metrics",
    "cpm",
    "cpm_bootstrap",
    "cpm_by_attribute",
    "detection_score",
    "froc_curve",
    "match_image",
    "sensitivity_at_fp_rates",
    "sensitivity_fp_per_image",
]

from common.metrics.outliers import (  # noqa: E402
    OUTLIER_METHODS,
    FeatureOutlierFilter,
    OutlierResult,
    image_feature_vectors,
)

__all__ += ["OUTLIER_METHODS", "FeatureOutlierFilter", "OutlierResult", "image_feature_vectors"]

from common.metrics.pixel_accuracy import PixelAccuracyMetric, pixel_accuracy  # noqa: E402
from common.metrics.statistics import mean_confidence_interval  # noqa: E402

__all__ += ["PixelAccuracyMetric", "mean_confidence_interval", "pixel_accuracy"]

from common.metrics.mask_statistics import (  # noqa: E402
    MASK_STATISTICS,
    class_area_fractions,
    class_component_counts,
    compare_mask_sets,
    mask_statistics,
)

__all__ += ["MASK_STATISTICS", "class_area_fractions", "class_component_counts", "compare_mask_sets", "mask_statistics"]

from common.metrics.reader_study import (  # noqa: E402
    binomial_accuracy,
    cohen_kappa,
    confusion_counts,
    fleiss_kappa,
    rating_counts,
    score_task,
)

__all__ += ["binomial_accuracy", "cohen_kappa", "confusion_counts", "fleiss_kappa", "rating_counts", "score_task"]

from common.metrics.bootstrap import (  # noqa: E402
    BINARY_METRICS,
    BootstrapCI,
    bootstrap_auc_ci,
    bootstrap_binary_ci,
    bootstrap_ci,
    bootstrap_mean_ci,
)

__all__ += [
    "BINARY_METRICS",
    "BootstrapCI",
    "bootstrap_auc_ci",
    "bootstrap_binary_ci",
    "bootstrap_ci",
    "bootstrap_mean_ci",
]
