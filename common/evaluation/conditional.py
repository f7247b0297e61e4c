"""Evaluation of an image-conditioned generator (GA-UNet, paper 002 sec. III-A, Table II): FID and PA of K synthetic
images per real test image, and a check that the samples are not copies of the training images.

For every real image ``x_i`` of the evaluated split (the ``test`` section) and its class ``c``, ``samples_per_image``
images ``x_g = G(z, x_i[, c])`` are drawn (the GAN / cGAN baselines get zeros in place of ``x_i``, as they were
trained). Then:

- **FID** (with KID, MMD and SSIM diversity) of the synthetic set against the real split, by
  :class:`~common.evaluation.GenerativeEvaluation` with its named feature extractor (written as
  ``feature_extractor``), with the real *training* images scored the same way as the reference (``fid_reference``,
  ``kid_reference_mean``: what copying the training set would score);
- **PA**, per-pixel accuracy as paper 002 uses it for discriminability ([12] pix2pix's FCN-score, [37], [39]): a
  scorer trained on the real *training* images labels each ``x_g``, and PA is the share of pixels labelled with the
  class ``c`` it was generated for (one class per image: the share of images; :mod:`common.metrics.pixel_accuracy`),
  with the 95 % Student-t interval over the images as Table II's "±". The scorer is the project's
  :class:`~common.evaluation.FeatureSVM` (hand-crafted features, RBF SVM; its name is written as ``pa_scorer``), so
  the metric needs no downloaded network; its accuracy on the real split (``pa_real``) is the ceiling to read PA
  against;
- **memorisation**: the L2 distance of each synthetic image to its nearest training image, against the same
  distance of the real split's images (``nn_distance_fake_median``, ``nn_distance_real_median``) and the share of
  synthetic images nearer to a training image than the 5 % quantile of the real ones (``copy_fraction``): a
  generator that copies (eq. 2-4 discussion: "... other than just a duplicate or simple modification of x_j") drives
  it towards 1.

Images enter in ``[-1, 1]`` (the training chain's range) and are mapped to ``[0, 1]`` for the feature extractor and
the scorer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from common.evaluation.feature_svm import FeatureSVM
from common.evaluation.generative import GenerativeEvaluation
from common.metrics.pixel_accuracy import PixelAccuracyMetric

__all__ = ["ConditionalGenerativeEvaluation"]

logger = logging.getLogger(__name__)


def _batches(loader: Iterable[Mapping[str, Any]], image_key: str, class_key: str) -> list[dict[str, torch.Tensor]]:
    """The loader's batches as ``{"image": (B, C, *S) in [0, 1], "class": (B,)}`` on the CPU."""
    out = []
    for batch in loader:
        image = (torch.as_tensor(batch[image_key]).float().cpu() + 1.0) / 2.0
        out.append({"image": image.clamp(0.0, 1.0), "class": torch.as_tensor(batch[class_key]).reshape(-1).long()})
    if not out:
        raise ValueError("a data loader of the evaluation yielded no batch.")
    return out


def _nearest_distances(queries: torch.Tensor, references: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Per query, the root-mean-square distance to its nearest reference image (``(N, ...)`` vs ``(M, ...)``)."""
    refs = references.flatten(1).double()
    result = []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk].flatten(1).double()
        result.append(torch.cdist(q, refs).min(dim=1).values / np.sqrt(q.shape[1]))
    return torch.cat(result).float()


class ConditionalGenerativeEvaluation:
    """FID, PA (with its 95 % interval) and the copy check of a conditional generator; see the module docstring.

    Args:
        generator: ``G(x, z[, labels=...]) -> (B, C, *S)`` in ``[-1, 1]``.
        real_loader: the evaluated real split (dicts with ``image`` ``(B, C, *S)`` in ``[-1, 1]`` and the class).
        train_loader: the real training split, same form: the PA scorer is fitted on it, and it is the reference
            of the copy check.
        latent_dim: length of ``z``.
        samples_per_image: synthetic images per real image (K).
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: number of classes.
        output_file: path of the JSON results.
        model_dir: folder of the scorer's record (``svm_model.npz``).
        use_labels: pass the classes to the generator (cGAN, GA-UNet with class information).
        image_condition: give the generator ``x_i`` (GA-UNet); ``False``: zeros (the GAN / cGAN baselines).
        weights_path, arch: FID feature extractor (see :class:`~common.evaluation.GenerativeEvaluation`).
        device: device of the generator.
        seed: seed of the latents (and of the FID helpers).
        image_key, class_key: batch keys.
        extra: entries merged into the results (run identifiers).
        generative_args: further arguments of :class:`~common.evaluation.GenerativeEvaluation`
            (e.g. ``kid_subset_size``).
    """

    def __init__(
        self,
        generator: nn.Module,
        real_loader: Iterable[Mapping[str, Any]],
        train_loader: Iterable[Mapping[str, Any]],
        latent_dim: int,
        samples_per_image: int,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        output_file: str,
        model_dir: str,
        use_labels: bool = False,
        image_condition: bool = True,
        weights_path: str | None = None,
        arch: str = "resnet18",
        device: str | torch.device = "cpu",
        seed: int = 0,
        image_key: str = "image",
        class_key: str = "class",
        extra: Mapping[str, Any] | None = None,
        generative_args: Mapping[str, Any] | None = None,
    ) -> None:
        if samples_per_image < 1:
            raise ValueError(f"samples_per_image must be >= 1, got {samples_per_image}.")
        self.generator = generator
        self.real_loader, self.train_loader = real_loader, train_loader
        self.latent_dim, self.samples_per_image = int(latent_dim), int(samples_per_image)
        self.spatial_dims, self.in_channels, self.num_classes = int(spatial_dims), int(in_channels), int(num_classes)
        self.output_file, self.model_dir = str(output_file), str(model_dir)
        self.use_labels, self.image_condition = bool(use_labels), bool(image_condition)
        self.weights_path, self.arch = weights_path, arch
        self.device = torch.device(device)
        self.seed = int(seed)
        self.image_key, self.class_key = image_key, class_key
        self.extra = dict(extra or {})
        self.generative_args = dict(generative_args or {})

    @torch.no_grad()
    def generate(self, real: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """K synthetic batches per real batch, in ``[0, 1]``, each with the class of its ``x_i``."""
        was_training = self.generator.training
        self.generator.eval()
        gen = torch.Generator().manual_seed(self.seed)
        out = []
        try:
            for batch in real:
                x = batch["image"].to(self.device) * 2.0 - 1.0
                if not self.image_condition:
                    x = torch.zeros_like(x)
                labels = {"labels": batch["class"].to(self.device)} if self.use_labels else {}
                for _ in range(self.samples_per_image):
                    z = torch.randn(x.shape[0], self.latent_dim, generator=gen).to(self.device)
                    fake = self.generator(x, z, **labels).float().cpu()
                    out.append({"image": ((fake + 1.0) / 2.0).clamp(0.0, 1.0), "class": batch["class"]})
        finally:
            self.generator.train(was_training)
        return out

    def run(self) -> dict[str, Any]:
        """Generate, score and write the results; returns them."""
        real = _batches(self.real_loader, self.image_key, self.class_key)
        train = _batches(self.train_loader, self.image_key, self.class_key)
        fake = self.generate(real)
        scorer = FeatureSVM(train, self.model_dir, num_classes=self.num_classes)
        scorer.fit()  # records svm_model.npz in model_dir
        results: dict[str, Any] = {}
        for name, batches in (("pa", fake), ("pa_real", real)):
            scores, labels = scorer.scores(batches)
            metric = PixelAccuracyMetric()
            metric(torch.as_tensor(scores), torch.as_tensor(labels))
            mean, half_width = metric.confidence_interval(0.95)
            results[name], results[f"{name}_ci95"] = float(mean), float(half_width)
        results["pa_scorer"] = (
            "FeatureSVM (thumbnail, histogram, percentile features; RBF SVC) fitted on real training images"
        )
        train_images = torch.cat([b["image"] for b in train])
        fake_images = torch.cat([b["image"] for b in fake])
        real_images = torch.cat([b["image"] for b in real])
        d_fake = _nearest_distances(fake_images, train_images)
        d_real = _nearest_distances(real_images, train_images)
        threshold = float(torch.quantile(d_real, 0.05))
        results.update(
            nn_distance_fake_median=float(d_fake.median()),
            nn_distance_real_median=float(d_real.median()),
            nn_distance_real_q05=threshold,
            copy_fraction=float((d_fake < threshold).float().mean()),
            samples_per_image=self.samples_per_image,
            num_train=int(train_images.shape[0]),
        )
        clash = sorted(set(results) & set(self.extra))
        if clash:
            raise ValueError(f"extra keys {clash} clash with result keys.")
        evaluation = GenerativeEvaluation(
            real_images,
            fake_images,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            output_file=self.output_file,
            weights_path=self.weights_path,
            arch=self.arch,
            device=self.device,
            seed=self.seed,
            reference_loader=train_images,
            extra={**results, **self.extra},
            **self.generative_args,
        )
        return evaluation.run()

    def __call__(self) -> dict[str, Any]:
        """Same as :meth:`run`, so a bundle can call the instance."""
        return self.run()
