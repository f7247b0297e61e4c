"""Evaluation runner comparing a set of real images with a set of synthetic images (FID, KID, MMD, diversity)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.evaluation.report import write_report
from common.metrics.features import build_feature_extractor, extract_features
from common.metrics.generative import fid, kid, mmd, ssim_diversity

__all__ = ["GenerativeEvaluation", "REFERENCE_KEYS", "RESULT_KEYS"]

logger = logging.getLogger(__name__)

RESULT_KEYS = (
    "fid",
    "kid_mean",
    "kid_std",
    "mmd",
    "ssim_diversity_fake",
    "ssim_diversity_real",
    "num_real",
    "num_fake",
    "feature_dim",
    "feature_extractor",
    "spatial_dims",
    "diversity_metric",
)
"""Keys written by :meth:`GenerativeEvaluation.run`; ``extra`` may not reuse them."""

REFERENCE_KEYS = ("fid_reference", "kid_reference_mean", "kid_reference_std", "num_reference")
"""Keys written as well when a ``reference_loader`` is given; ``extra`` may not reuse them either."""


class GenerativeEvaluation:
    """Compares real and synthetic images with FID, KID, MMD and SSIM diversity; configurable from a bundle YAML.

    :meth:`run` reads both sets once, computes features with the extractor from
    :func:`common.metrics.features.build_feature_extractor` (or the given ``feature_extractor``), and reports:

    - ``fid``, ``kid_mean``, ``kid_std``: feature-space distances (see :mod:`common.metrics.generative`);
    - ``mmd``: linear-kernel MMD on the images (first ``min(N, M)`` of each set; when the spatial sizes differ, the
      synthetic images are resampled to the real size with trilinear/bilinear interpolation for this metric only);
    - ``ssim_diversity_fake`` and ``ssim_diversity_real``: mean (MS-)SSIM between random pairs within each set,
      the real value serving as the reference (lower is more diverse);
    - ``num_real``, ``num_fake``, ``feature_dim``, ``feature_extractor`` (the extractor's name), ``spatial_dims``,
      ``diversity_metric``;
    - with a ``reference_loader`` (e.g. the generator's own real training images): ``fid_reference``,
      ``kid_reference_mean``, ``kid_reference_std`` and ``num_reference``, that set scored against the real images
      with the same extractor, i.e. what a copy of it would score. KID is unbiased in the set sizes and compares
      directly; FID falls with the number of images, so read ``fid`` against ``fid_reference`` only for similar
      sizes;
    - then the ``extra`` entries.

    The results are written as JSON to ``output_file`` atomically (parent folders created) and logged as a table by
    :func:`common.evaluation.report.write_report`. All images of both sets are kept in CPU memory for MMD and SSIM.

    Args:
        real_loader: real images: a tensor ``(N, C, *spatial)`` or an iterable of batches (dicts with ``image_key``).
        fake_loader: synthetic images, same forms as ``real_loader``.
        spatial_dims: 2 or 3.
        in_channels: number of image channels.
        output_file: path of the JSON result file.
        weights_path: optional local weights of the feature extractor; ``None`` uses the named random-init fallback.
        arch: a MONAI ResNet name or ``"inception_v3_fid"`` (see :func:`common.metrics.features.build_feature_extractor`).
        device: device for feature extraction.
        image_key: key of the images in dict batches.
        kid_subsets: number of KID subsets.
        kid_subset_size: KID subset size (clipped to the smaller set).
        diversity_pairs: number of image pairs for SSIM diversity.
        multiscale: use MS-SSIM for diversity.
        extra: entries merged into the results (e.g. run or checkpoint identifiers); keys must not be in
            :data:`RESULT_KEYS`.
        input_size: feature extractor input size (see :func:`build_feature_extractor`).
        normalize: feature extractor per-image normalisation (see :func:`build_feature_extractor`).
        batch_size: largest batch passed to the feature extractor.
        seed: seed of the fallback initialisation, KID subsets and diversity pairs.
        feature_extractor: a ready extractor module with a ``name`` attribute; overrides ``weights_path``/``arch``.
        reference_loader: optional third set, same forms as ``real_loader``, scored against the real images as the
            reference of the synthetic ones (above).
    """

    def __init__(
        self,
        real_loader: torch.Tensor | Iterable,
        fake_loader: torch.Tensor | Iterable,
        spatial_dims: int,
        in_channels: int,
        output_file: str,
        weights_path: str | None = None,
        arch: str = "resnet18",
        device: str | torch.device = "cpu",
        image_key: str = "image",
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        diversity_pairs: int = 100,
        multiscale: bool = False,
        extra: Mapping[str, Any] | None = None,
        input_size: int | None = None,
        normalize: str | None = None,
        batch_size: int = 16,
        seed: int = 0,
        feature_extractor: nn.Module | None = None,
        reference_loader: torch.Tensor | Iterable | None = None,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        clash = sorted(set(extra or {}) & {*RESULT_KEYS, *REFERENCE_KEYS})
        if clash:
            raise ValueError(f"extra keys {clash} clash with result keys.")
        self.real_loader = real_loader
        self.fake_loader = fake_loader
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.output_file = str(output_file)
        self.weights_path = weights_path
        self.arch = arch
        self.device = torch.device(device)
        self.image_key = image_key
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.diversity_pairs = diversity_pairs
        self.multiscale = multiscale
        self.extra = dict(extra or {})
        self.input_size = input_size
        self.normalize = normalize
        self.batch_size = batch_size
        self.seed = seed
        self.feature_extractor = feature_extractor
        self.reference_loader = reference_loader

    def _extractor(self) -> nn.Module:
        if self.feature_extractor is None:
            self.feature_extractor = build_feature_extractor(
                self.spatial_dims,
                self.in_channels,
                weights_path=self.weights_path,
                arch=self.arch,
                input_size=self.input_size,
                normalize=self.normalize,
                seed=self.seed,
            )
        return self.feature_extractor

    def _read(self, extractor: nn.Module, data: torch.Tensor | Iterable) -> tuple[torch.Tensor, torch.Tensor]:
        return extract_features(  # type: ignore[return-value]
            extractor, data, self.batch_size, self.device, self.image_key, return_images=True
        )

    def run(self) -> dict[str, Any]:
        """Computes the metrics, writes the JSON file and logs the table.

        Returns:
            the results written to ``output_file``.
        """
        extractor = self._extractor()
        name = str(getattr(extractor, "name", type(extractor).__name__))
        real_feats, real_images = self._read(extractor, self.real_loader)
        fake_feats, fake_images = self._read(extractor, self.fake_loader)
        if real_feats.shape[0] < real_feats.shape[1] or fake_feats.shape[0] < fake_feats.shape[1]:
            logger.warning(
                "FID with %d real / %d fake samples and %d features: covariances are singular, FID is biased.",
                real_feats.shape[0],
                fake_feats.shape[0],
                real_feats.shape[1],
            )
        kid_mean, kid_std = kid(
            real_feats, fake_feats, num_subsets=self.kid_subsets, subset_size=self.kid_subset_size, seed=self.seed
        )
        mmd_fake = fake_images
        if fake_images.shape[2:] != real_images.shape[2:]:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            mmd_fake = F.interpolate(fake_images.float(), size=real_images.shape[2:], mode=mode, align_corners=False)
        diversity = {"num_pairs": self.diversity_pairs, "seed": self.seed, "multiscale": self.multiscale}
        results: dict[str, Any] = {
            "fid": fid(real_feats, fake_feats),
            "kid_mean": kid_mean,
            "kid_std": kid_std,
            "mmd": mmd(real_images, mmd_fake),
            "ssim_diversity_fake": ssim_diversity(fake_images, self.spatial_dims, **diversity),
            "ssim_diversity_real": ssim_diversity(real_images, self.spatial_dims, **diversity),
            "num_real": int(real_feats.shape[0]),
            "num_fake": int(fake_feats.shape[0]),
            "feature_dim": int(real_feats.shape[1]),
            "feature_extractor": name,
            "spatial_dims": self.spatial_dims,
            "diversity_metric": "ms-ssim" if self.multiscale else "ssim",
        }
        if self.reference_loader is not None:
            ref_feats, _ = self._read(extractor, self.reference_loader)
            ref_kid_mean, ref_kid_std = kid(
                real_feats, ref_feats, num_subsets=self.kid_subsets, subset_size=self.kid_subset_size, seed=self.seed
            )
            results.update(
                fid_reference=fid(real_feats, ref_feats),
                kid_reference_mean=ref_kid_mean,
                kid_reference_std=ref_kid_std,
                num_reference=int(ref_feats.shape[0]),
            )
        results.update(self.extra)
        write_report(results, self.output_file, title="generative evaluation", log=logger, indent=2, default=str)
        return results

    def __call__(self) -> dict[str, Any]:
        """Same as :meth:`run`, so a bundle can call the instance."""
        return self.run()
