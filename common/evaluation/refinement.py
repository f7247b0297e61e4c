"""Evaluation of the refinement bundles (Han's thesis, sec. 4.2.3: MUNIT/SimGAN refine noise-to-image GAN outputs
toward the real images of the same class): FID/KID of synthetic vs real and refined vs real in one named feature
space, and the outlier filter's rejection rate of both sets."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from common.data.images import read_datalist_images
from common.data.refinement import class_entries, synthetic_entries
from common.evaluation.report import write_report
from common.metrics.features import build_feature_extractor, extract_features
from common.metrics.generative import fid, kid
from common.metrics.outliers import FeatureOutlierFilter
from monai.data import load_decathlon_datalist

__all__ = ["evaluate_refinement"]

logger = logging.getLogger(__name__)


def evaluate_refinement(
    synthetic_datalist: str,
    refined_datalist: str,
    real_datalist: str,
    output_file: str,
    spatial_dims: int,
    image_size: int,
    refine_class: int | None = None,
    real_section: str = "test",
    class_key: str = "class",
    real_channels: Sequence[int] | None = None,
    synthetic_channels: Sequence[int] | None = None,
    refined_channels: Sequence[int] | None = None,
    feature_arch: str = "resnet18",
    feature_weights: str | None = None,
    outlier_method: str = "knn",
    outlier_k: int = 5,
    outlier_quantile: float = 0.95,
    kid_subsets: int = 50,
    device: Any = "cpu",
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """FID/KID of synthetic vs real and refined vs real, and the outlier-filter rejection rate of both sets.

    Real images: ``real_section`` of ``real_datalist``, class ``refine_class``; synthetic images: the entries of the
    class in ``synthetic_datalist``; refined images: every entry of ``refined_datalist`` (kept and rejected, so that
    the metrics describe the refiner rather than the filter). All images are scaled to ``[0, 1]`` per channel and
    resized to ``image_size``; one feature extractor (:func:`common.metrics.build_feature_extractor`, named) serves
    all sets. Writes ``output_file`` (JSON) and logs a table (:func:`common.evaluation.report.write_report`).
    """
    real = class_entries(load_decathlon_datalist(real_datalist, True, real_section), refine_class, class_key)
    if len(real) < 2:
        raise ValueError(f"{real_datalist}: {real_section!r} has {len(real)} entries of class {refine_class}; need 2+.")
    syn = synthetic_entries(synthetic_datalist, refine_class, "training", class_key)
    with open(refined_datalist) as f:
        refined_raw = json.load(f)
    refined = load_decathlon_datalist(refined_datalist, True, "training")
    if "rejected" in refined_raw and refined_raw["rejected"]:
        refined = refined + load_decathlon_datalist(refined_datalist, True, "rejected")
    images = {
        "real": read_datalist_images(real, spatial_dims, image_size, real_channels),
        "synthetic": read_datalist_images(syn, spatial_dims, image_size, synthetic_channels),
        "refined": read_datalist_images(refined, spatial_dims, image_size, refined_channels),
    }
    extractor = build_feature_extractor(
        spatial_dims, images["real"].shape[1], weights_path=feature_weights, arch=feature_arch, seed=seed
    )
    feats = {k: extract_features(extractor, v, device=device) for k, v in images.items()}
    k = min(outlier_k, feats["real"].shape[0] - 1)
    filt = FeatureOutlierFilter(outlier_method, max(k, 1), outlier_quantile).fit(feats["real"])
    results: dict[str, Any] = {"feature_extractor": str(extractor.name), "refine_class": refine_class}
    for name in ("synthetic", "refined"):
        kid_mean, kid_std = kid(feats["real"], feats[name], num_subsets=kid_subsets, seed=seed)
        results[f"fid_{name}"] = fid(feats["real"], feats[name])
        results[f"kid_mean_{name}"], results[f"kid_std_{name}"] = kid_mean, kid_std
        results[f"outlier_rejection_rate_{name}"] = filt.filter(feats[name]).rejection_rate
        results[f"num_{name}"] = int(feats[name].shape[0])
    results.update(
        num_real=int(feats["real"].shape[0]),
        real_section=real_section,
        outlier_filter={"method": outlier_method, "k": max(k, 1), "quantile": outlier_quantile},
        outlier_threshold=float(filt.threshold or 0.0),
        filter_at_inference=refined_raw.get("outlier_filter"),
    )
    results.update(dict(extra or {}))
    write_report(results, output_file, title="refinement evaluation", log=logger)
    return results
