"""Evaluation pipelines: objects that load data, run trained networks, compute several metrics and report them.

The layer above :mod:`common.engines`: the metrics themselves are the pure functions of :mod:`common.metrics`; every
pipeline here reports through :func:`write_report` (a JSON file written atomically and a table in the log).

- :class:`GenerativeEvaluation`: FID, KID, MMD and SSIM diversity of synthetic against real images;
- :class:`PairedGenerativeEvaluation`: the same for the images and the masks of synthetic image+mask pairs, with the
  mask realism statistics (class areas, connected components) against real pairs (StyleGAN2 family);
- :class:`ConditionalGenerativeEvaluation`: FID, PA and the copy check of an image-conditioned generator (GA-UNet);
- :class:`QuickGenerativeCheck`: the same for a few samples of a generator at the end of training, next to real
  training vs real test images;
- :class:`TranslationEvaluation`: realism, attention overlap and locality of a P <-> N translation (CDA-GAN);
- :class:`DiscriminatorMapProbe`: whether attention-guided discriminators judge the image or only the map beside it;
- :class:`DetectionEvaluation`: CPM/FROC, CPM by attribute, per-image sensitivity/FPs and COCO mAP of a detector;
- :class:`MCGANSynthesis`, :class:`NoduleGenerator`, :func:`evaluate_mcgan`: MCGAN nodules in CT volumes;
- :class:`CrossDomainSynthesis`: CDA-GAN's Algorithm 2 synthetic set and Algorithm 3 difference maps;
- :class:`FeatureSVM`: the SVM baseline of the classification bundle;
- :func:`evaluate_refinement`, :func:`make_degraded_synthetic`: the refinement bundles' evaluation and stand-in data;
- :class:`BoxPlacementEvaluation`: where a CPGGAN puts the lesions its boxes ask for;
- :func:`filter_synthetic_datalist`: the feature-space outlier filter applied to a synthetic datalist;
- :func:`tsne_real_vs_synthetic`: t-SNE of real vs synthetic images drawn from two datalists;
- :func:`run_for_each`: one configured pipeline run at several values of one setting (e.g. MCGAN's 1x/2x/3x sets).
"""

from common.evaluation.box_placement import BoxPlacementEvaluation, box_placement_statistics
from common.evaluation.conditional import ConditionalGenerativeEvaluation
from common.evaluation.cross_domain import DIFFERENCE_RULES, CrossDomainSynthesis
from common.evaluation.degraded import make_degraded_synthetic
from common.evaluation.detection import DetectionEvaluation
from common.evaluation.discriminator_probe import DiscriminatorMapProbe
from common.evaluation.embeddings import tsne_real_vs_synthetic
from common.evaluation.feature_svm import FeatureSVM
from common.evaluation.generative import REFERENCE_KEYS, RESULT_KEYS, GenerativeEvaluation
from common.evaluation.mcgan import (
    MCGANSynthesis,
    NoduleGenerator,
    evaluate_mcgan,
    format_nodule_table,
    nodule_statistics,
)
from common.evaluation.outlier_filter import filter_synthetic_datalist
from common.evaluation.paired_generative import PAIRED_REFERENCE_KEYS, PAIRED_RESULT_KEYS, PairedGenerativeEvaluation
from common.evaluation.quick_check import QuickGenerativeCheck
from common.evaluation.refinement import evaluate_refinement
from common.evaluation.report import format_table, write_report
from common.evaluation.sweep import run_for_each
from common.evaluation.translation import TranslationEvaluation

__all__ = [
    "BoxPlacementEvaluation",
    "ConditionalGenerativeEvaluation",
    "CrossDomainSynthesis",
    "DIFFERENCE_RULES",
    "DetectionEvaluation",
    "DiscriminatorMapProbe",
    "FeatureSVM",
    "GenerativeEvaluation",
    "MCGANSynthesis",
    "NoduleGenerator",
    "PAIRED_REFERENCE_KEYS",
    "PAIRED_RESULT_KEYS",
    "PairedGenerativeEvaluation",
    "QuickGenerativeCheck",
    "REFERENCE_KEYS",
    "RESULT_KEYS",
    "TranslationEvaluation",
    "box_placement_statistics",
    "evaluate_mcgan",
    "evaluate_refinement",
    "filter_synthetic_datalist",
    "format_nodule_table",
    "format_table",
    "make_degraded_synthetic",
    "nodule_statistics",
    "run_for_each",
    "tsne_real_vs_synthetic",
    "write_report",
]

from .refiner_selection import prediction_accuracy, select_refined_set  # noqa: E402

__all__ += ["prediction_accuracy", "select_refined_set"]

from .visual_turing import VisualTuringError, make_study  # noqa: E402
from .visual_turing_score import score_study  # noqa: E402

__all__ += ["VisualTuringError", "make_study", "score_study"]
