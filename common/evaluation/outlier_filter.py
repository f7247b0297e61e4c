"""Filtering a synthetic datalist against the real images with the feature-space outlier filter
(:class:`common.metrics.FeatureOutlierFilter`; Han's thesis sec. 4 discards weird-looking synthetic images before
augmentation): the kept entries stay in the datalist, the rejected ones move to a ``rejected`` section with their
score and the reason."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from common.data.images import read_datalist_images
from common.metrics.outliers import FeatureOutlierFilter, image_feature_vectors
from common.utils import atomic_write_json
from monai.data import load_decathlon_datalist

__all__ = ["filter_synthetic_datalist"]

logger = logging.getLogger(__name__)


def _select(entries: list[dict], class_key: str, cls: int | None) -> list[int]:
    return [i for i, e in enumerate(entries) if cls is None or (class_key in e and int(e[class_key]) == int(cls))]


def filter_synthetic_datalist(
    synthetic_datalist: str,
    real_datalist: str,
    spatial_dims: int,
    image_size: int,
    output_datalist: str | None = None,
    report_file: str | None = None,
    real_section: str = "training",
    synthetic_section: str = "training",
    class_key: str = "class",
    real_class: int | None = None,
    real_channels: Sequence[int] | None = None,
    synthetic_channels: Sequence[int] | None = None,
    features: str = "resnet18",
    weights_path: str | None = None,
    method: str = "knn",
    k: int = 5,
    quantile: float = 0.95,
    threshold: float | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Filter a synthetic datalist against real images; write the kept datalist and a report of the rejections.

    The real reference is ``real_section`` of ``real_datalist`` (entries of ``real_class`` when given). Per class of
    the synthetic entries, the filter is fitted on the real images of the same class when the real datalist has
    that class (else on all reference images). ``output_datalist`` (default: ``synthetic_datalist`` itself,
    rewritten atomically) holds the kept entries under ``synthetic_section`` and the rejected ones under
    ``"rejected"``, each rejected entry with ``outlier_score``, ``outlier_threshold`` and ``outlier_reason``.
    ``report_file`` (JSON) holds the settings, the feature space's name, every score and the rejected entries.

    Returns:
        the summary: settings, counts, rejection rate, threshold(s), feature space.
    """
    with open(synthetic_datalist) as f:
        raw = json.load(f)
    raw_entries = list(raw.get(synthetic_section, []))
    syn_entries = load_decathlon_datalist(synthetic_datalist, True, synthetic_section)
    real_entries = load_decathlon_datalist(real_datalist, True, real_section)
    real_idx = _select(real_entries, class_key, real_class)
    if not real_idx:
        raise ValueError(f"{real_datalist}: no {real_section!r} entries of class {real_class} to filter against.")
    if not syn_entries:
        raise ValueError(f"{synthetic_datalist}: section {synthetic_section!r} is empty.")
    real_images = read_datalist_images([real_entries[i] for i in real_idx], spatial_dims, image_size, real_channels)
    syn_images = read_datalist_images(syn_entries, spatial_dims, image_size, synthetic_channels)
    both, name = image_feature_vectors(torch.cat([real_images, syn_images]), features, weights_path, device, seed)
    real_feats, syn_feats = both[: len(real_idx)], both[len(real_idx) :]

    scores = np.zeros(len(syn_entries))
    thresholds = np.zeros(len(syn_entries))
    groups: dict[Any, list[int]] = {}
    for i, e in enumerate(syn_entries):
        groups.setdefault(e.get(class_key) if real_class is None else real_class, []).append(i)
    per_class: dict[str, Any] = {}
    for cls, idx in groups.items():
        ref = [j for j, i in enumerate(real_idx) if cls is None or int(real_entries[i].get(class_key, -1)) == int(cls)]
        ref = ref or list(range(len(real_idx)))
        filt = FeatureOutlierFilter(method, k, quantile, threshold).fit(real_feats[ref])
        result = filt.filter(syn_feats[idx])
        scores[idx], thresholds[idx] = result.scores, result.threshold
        per_class[str(cls)] = {**result.summary(), "num_real": len(ref)}
    rejected = [i for i in range(len(syn_entries)) if scores[i] > thresholds[i]]
    kept = [i for i in range(len(syn_entries)) if scores[i] <= thresholds[i]]
    rejected_entries = []
    for i in rejected:
        entry = dict(raw_entries[i])
        entry.update(
            outlier_score=float(scores[i]),
            outlier_threshold=float(thresholds[i]),
            outlier_reason=(
                f"{method} distance {scores[i]:.4g} to the real images in the {name} feature space exceeds the "
                f"threshold {thresholds[i]:.4g} (quantile {quantile} of real-vs-real distances)"
                if threshold is None
                else f"{method} distance {scores[i]:.4g} exceeds the fixed threshold {thresholds[i]:.4g}"
            ),
        )
        rejected_entries.append(entry)
    summary = {
        "feature_space": name,
        "method": method,
        "k": k,
        "quantile": quantile,
        "fixed_threshold": threshold,
        "num_tested": len(syn_entries),
        "num_kept": len(kept),
        "num_rejected": len(rejected),
        "rejection_rate": len(rejected) / len(syn_entries),
        "per_class": per_class,
    }
    out = dict(raw)
    out[synthetic_section] = [raw_entries[i] for i in kept]
    out["rejected"] = rejected_entries
    out["outlier_filter"] = summary
    atomic_write_json(out, output_datalist or synthetic_datalist)
    if report_file is not None:
        report = {**summary, "scores": [float(s) for s in scores], "rejected": rejected_entries}
        atomic_write_json(report, report_file)
    logger.info(
        "outlier filter (%s): %d of %d synthetic images rejected (%s, %s features)",
        output_datalist or synthetic_datalist,
        len(rejected),
        len(syn_entries),
        method,
        name,
    )
    return summary
