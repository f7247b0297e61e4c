"""Data, export and evaluation helpers of the refinement bundles (Han's thesis, sec. 4.2.3: MUNIT/SimGAN refine
noise-to-image GAN outputs toward the real images of the same class).

- :func:`refinement_entries`: the two unpaired domains, A = synthetic images of one class (from a synthetic
  datalist, e.g. ``bundles/dcgan_wgan`` or PGGAN output), B = real images of the same class;
- :func:`make_degraded_synthetic`: a deterministic stand-in synthetic datalist made from the phantom (blur and
  noise), so that the bundles train from a clean clone before any generator has been run;
- :class:`RefinedDatalistWriter`: the refined images as a synthetic datalist that keeps each source entry's class
  and generator provenance and adds ``refined_by``;
- :func:`evaluate_refinement`: FID/KID of synthetic vs real and refined vs real in one named feature space, and the
  outlier filter's rejection rate of both sets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from common.handlers.synthetic_export import SyntheticDatalistWriter
from common.handlers.utils import atomic_write_json

__all__ = [
    "RefinedDatalistWriter",
    "evaluate_refinement",
    "make_degraded_synthetic",
    "refinement_entries",
    "synthetic_entries",
]

SYNTHETIC_DOMAIN, REAL_DOMAIN = 1, 0


def _class_entries(entries: Sequence[Mapping], cls: int | None, class_key: str) -> list[dict]:
    return [dict(e) for e in entries if cls is None or (class_key in e and int(e[class_key]) == int(cls))]


def synthetic_entries(
    synthetic_datalist: str, refine_class: int | None = None, section: str = "training", class_key: str = "class"
) -> list[dict]:
    """Entries (absolute paths) of ``section`` of a synthetic datalist, of class ``refine_class`` (all if ``None``),
    each with its position in the section under ``"index"``.

    Raises:
        FileNotFoundError: when the datalist does not exist.
        ValueError: when no entry has the class.
    """
    from monai.data import load_decathlon_datalist

    if not os.path.isfile(synthetic_datalist):
        raise FileNotFoundError(
            f"synthetic datalist not found: {synthetic_datalist!r}; give the datalist.json written by a generator "
            "bundle's inference (e.g. bundles/dcgan_wgan/eval/synthetic/datalist.json) as synthetic_datalist."
        )
    entries = load_decathlon_datalist(synthetic_datalist, True, section)
    for i, e in enumerate(entries):
        e["index"] = i
    chosen = _class_entries(entries, refine_class, class_key)
    if not chosen:
        have = sorted({str(e.get(class_key)) for e in entries})
        raise ValueError(
            f"{synthetic_datalist}: no {section!r} entry of class {refine_class} (classes present: {have}); set "
            "refine_class to one of them, or to null for a datalist without classes."
        )
    return chosen


def refinement_entries(
    synthetic_datalist: str,
    real_datalist: str,
    refine_class: int | None = None,
    synthetic_section: str = "training",
    real_section: str = "training",
    class_key: str = "class",
    domain_key: str = "domain",
) -> list[dict]:
    """Entries of both domains for :class:`common.data.UnpairedDataset`: synthetic ones with ``domain = 1``
    (the "positive" domain A), real ones with ``domain = 0`` (domain B), both of class ``refine_class``.

    Raises:
        ValueError: when either domain has no entry of the class.
    """
    from monai.data import load_decathlon_datalist

    syn = synthetic_entries(synthetic_datalist, refine_class, synthetic_section, class_key)
    real = _class_entries(load_decathlon_datalist(real_datalist, True, real_section), refine_class, class_key)
    if not real:
        raise ValueError(f"{real_datalist}: no {real_section!r} entry of class {refine_class} (the real domain B).")
    return [{**e, domain_key: SYNTHETIC_DOMAIN} for e in syn] + [{**e, domain_key: REAL_DOMAIN} for e in real]


def make_degraded_synthetic(
    datalist: str,
    output_dir: str,
    section: str = "training",
    blur_sigma: float = 1.5,
    noise_std: float = 0.1,
    seed: int = 0,
    channel_names: Sequence[str] | None = None,
) -> str:
    """Write a stand-in synthetic datalist: every image of ``section`` blurred and noised, deterministically.

    Each channel ``x`` of each image becomes ``gaussian_filter(x, blur_sigma) + noise_std * std(x) * n`` with
    ``n ~ N(0, 1)`` from ``numpy.random.default_rng(seed + index)``; the class of the source is kept. The files and
    ``<output_dir>/datalist.json`` are written with :class:`~common.handlers.SyntheticDatalistWriter` (generator
    ``phantom-degradation``, no checkpoint). Nothing is done when the datalist already exists. No collective is
    run: in a distributed run call it on one rank only (then a barrier) so the files are written once.

    Returns:
        the path of the synthetic datalist.
    """
    import nibabel as nib
    from monai.data import load_decathlon_datalist
    from scipy.ndimage import gaussian_filter

    path = os.path.join(output_dir, "datalist.json")
    if os.path.isfile(path):
        return path
    entries = load_decathlon_datalist(datalist, True, section)
    writer = SyntheticDatalistWriter(
        output_dir,
        bundle_name="phantom-degradation",
        bundle_version=f"blur{blur_sigma}-noise{noise_std}-seed{seed}",
        checkpoint=None,
        source_key="source",
        copy_keys=("class",),
        channel_names=channel_names,
        prefix="degraded",
        extra_entry={"method": "degradation"},
    )
    base = os.path.dirname(os.path.abspath(datalist))
    os.makedirs(output_dir, exist_ok=True)
    for index, entry in enumerate(entries):
        files = entry["image"] if isinstance(entry["image"], (list, tuple)) else [entry["image"]]
        rng = np.random.default_rng(seed + index)
        channels = []
        for f in files:
            x = np.asarray(nib.load(f).get_fdata(), dtype=np.float32)
            y = gaussian_filter(x, blur_sigma) + noise_std * float(x.std()) * rng.standard_normal(x.shape)
            channels.append(y.astype(np.float32))
        source = [os.path.relpath(f, base) for f in files]
        writer.write_sample({"pred": np.stack(channels, 0), "source": source, "class": entry.get("class")})
    # one process writes the whole set (rank 0 alone in distributed runs): write the datalist without
    # ``writer.write_datalist()``, whose entry gathering is a collective the other ranks never join
    atomic_write_json(writer.datalist(), path)
    return path


class RefinedDatalistWriter(SyntheticDatalistWriter):
    """:class:`~common.handlers.SyntheticDatalistWriter` for refined images that keeps their source's provenance.

    Every batch must carry ``index_key``, the position of the source entry in ``source_section`` of
    ``source_datalist``. Each written entry has: ``image`` (the refined files), ``synthetic: true``, ``source`` (the
    synthetic input image, relative to the new datalist), ``generator`` (the source entry's generator provenance),
    ``refined_by`` (this bundle's name/version/checkpoint/sha256 and ``method``), and every other key of the source
    entry (``class``, ``method`` renamed ``generator_method``...), except the outlier-filter keys.

    Args:
        source_datalist: the synthetic datalist that was refined.
        method: refinement method name (``"munit"``, ``"simgan"``).
        source_section: its section.
        index_key: batch key of the source entry index.
        other args: see :class:`~common.handlers.SyntheticDatalistWriter`.
    """

    _DROP = ("image", "source", "generator", "index", "outlier_score", "outlier_threshold", "outlier_reason")

    def __init__(
        self,
        source_datalist: str,
        method: str,
        *args: Any,
        source_section: str = "training",
        index_key: str = "index",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("prefix", "refined")
        super().__init__(*args, **kwargs)
        with open(source_datalist) as f:
            raw = json.load(f)
        self.source_base = os.path.dirname(os.path.abspath(source_datalist))
        self.source_entries = list(raw.get(source_section, []))
        self.source_generator = raw.get("generator")
        self.method = method
        self.index_key = index_key
        self.refined_by = {**self.generator_info, "method": method}
        self.generator_info = dict(self.source_generator or {})

    def _rel(self, path: Any) -> Any:
        if isinstance(path, (list, tuple)):
            return [self._rel(p) for p in path]
        absolute = path if os.path.isabs(path) else os.path.join(self.source_base, path)
        return os.path.relpath(absolute, os.path.dirname(os.path.abspath(self.datalist_path)))

    def write_sample(self, sample: Mapping) -> dict:
        index = int(np.asarray(self._lookup(sample, self.index_key)).reshape(-1)[0])
        source = self.source_entries[index]
        entry = super().write_sample(sample)
        entry["source"] = self._rel(source["image"])
        entry["generator"] = dict(source.get("generator") or self.source_generator or {})
        for key, value in source.items():
            if key in self._DROP:
                continue
            entry["generator_method" if key == "method" else key] = value
        entry["refined_by"] = dict(self.refined_by)
        return entry

    def datalist(self, entries: Sequence[dict] | None = None) -> dict:
        data = super().datalist(entries)
        data["refined_by"] = dict(self.refined_by)
        data["description"] = f"synthetic data refined by {self.bundle_name} {self.bundle_version} ({self.method})"
        return data


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
    all sets. Writes ``output_file`` (JSON) and prints a table.
    """
    from monai.data import load_decathlon_datalist

    from common.handlers.utils import atomic_write_json
    from common.metrics.evaluation import format_table
    from common.metrics.features import build_feature_extractor, extract_features
    from common.metrics.generative import fid, kid
    from common.metrics.outliers import FeatureOutlierFilter, read_datalist_images

    real = _class_entries(load_decathlon_datalist(real_datalist, True, real_section), refine_class, class_key)
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
    atomic_write_json(results, output_file)
    print(format_table(results))
    return results
