"""Evaluation of generated image+mask pairs (StyleGAN2 family of paper 004: FID of images and of masks, and
a mask realism statistic) against the real pairs of a datalist section.

Both sets are Decathlon-style datalists whose entries have an ``image`` (one file, or a list of single-channel files)
and a ``label`` (an integer label map with classes ``0 .. K-1``); every synthetic entry carries ``"synthetic": true``
as :class:`~common.handlers.SyntheticDatalistWriter` (with ``label_key``) writes it. :class:`PairedGenerativeEvaluation`
reports:

- the **images**: FID, KID, MMD and SSIM diversity of :class:`~common.evaluation.GenerativeEvaluation`, with its
  named feature extractor (``feature_extractor`` in the results), under ``image_<metric>``;
- the **masks**: the same metrics under ``mask_<metric>``, for the label maps rendered as one-channel images
  ``label / (K - 1)`` in ``[0, 1]`` (background 0, the last class 1; a grey-level picture of the mask, which every
  feature extractor reads whatever its number of input channels, and whose features see the shapes and the
  arrangement of the classes). Its extractor is built by the same rule for one channel (``mask_feature_extractor``);
  no per-image intensity normalisation is applied to the rendering;
- the **mask realism statistics** of :func:`common.metrics.compare_mask_sets`: per class, the area fraction and the
  number of connected components in each set (mean, standard deviation, 1-D Wasserstein distance), the fraction of
  masks containing the class and the classes only one set has (``mask_statistics``, with the class-averaged
  distances and the class lists also at the top level);
- with a ``reference_section`` (e.g. the generator's own real ``training`` pairs): the same image and mask FID/KID
  and class-averaged mask distances of that real set against the real pairs (keys :data:`PAIRED_REFERENCE_KEYS`),
  the real-vs-real reference beside which the synthetic numbers read (a random-init extractor's FID means little
  alone; FID falls with the number of images, so compare sets of similar size).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from common.data.validation import DatalistError, DatalistProblem, load_datalist_file, validate_datalist
from common.evaluation.generative import GenerativeEvaluation
from common.evaluation.report import write_report
from common.metrics.mask_statistics import compare_mask_sets
from common.transforms import SqueezeToSpatialDimsd
from common.utils.tables import format_table
from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureTyped, LoadImaged, Resized, ScaleIntensityd
from monai.utils import ensure_tuple

__all__ = ["PAIRED_REFERENCE_KEYS", "PAIRED_RESULT_KEYS", "PairedGenerativeEvaluation"]

logger = logging.getLogger(__name__)

_SET_METRICS = ("fid", "kid_mean", "kid_std", "mmd", "ssim_diversity_fake", "ssim_diversity_real")

PAIRED_RESULT_KEYS = (
    *(f"image_{m}" for m in _SET_METRICS),
    *(f"mask_{m}" for m in _SET_METRICS),
    "feature_extractor",
    "mask_feature_extractor",
    "feature_dim",
    "diversity_metric",
    "mask_rendering",
    "mask_area_fraction_wasserstein",
    "mask_components_wasserstein",
    "mask_classes_only_in_synthetic",
    "mask_classes_missing_in_synthetic",
    "mask_statistics",
    "num_real",
    "num_synthetic",
    "num_classes",
    "spatial_dims",
    "real_datalist",
    "real_section",
    "synthetic_datalist",
    "synthetic_section",
)
"""Keys written by :meth:`PairedGenerativeEvaluation.run`; ``extra`` may not reuse them."""

PAIRED_REFERENCE_KEYS = (
    *(f"{kind}_{m}_reference" for kind in ("image", "mask") for m in ("fid", "kid_mean", "kid_std")),
    "mask_area_fraction_wasserstein_reference",
    "mask_components_wasserstein_reference",
    "num_reference",
    "reference_section",
)
"""Keys written as well with a ``reference_section``; ``extra`` may not reuse them either."""

MASK_RENDERING = "label / (num_classes - 1): one channel in [0, 1]"


class PairedGenerativeEvaluation:
    """FID of images and of masks, and the mask realism statistics, of a synthetic image+mask set against real pairs.

    :meth:`run` reads both sets once (MONAI ``LoadImaged`` channel first; singleton axes beyond ``spatial_dims``
    dropped; images min-max scaled to ``[0, 1]`` per image and channel when ``scale``, so that real intensities and
    the generator's range compare; with ``image_size``, images resized with area interpolation and label maps with
    nearest neighbour), then runs :class:`~common.evaluation.GenerativeEvaluation` on the images and on the rendered
    masks (see the module docstring) and :func:`~common.metrics.compare_mask_sets` on the label maps. It writes:

    - ``<output_dir>/image_metrics.json`` and ``<output_dir>/mask_metrics.json``: the two
      :class:`~common.evaluation.GenerativeEvaluation` reports as they are;
    - ``<output_dir>/<metrics_name>``: the combined results (keys :data:`PAIRED_RESULT_KEYS`, then ``extra``),
      atomically, with their table (without the nested ``mask_statistics``) in the log.

    All images and label maps of both sets are held in CPU memory.

    Args:
        real_datalist: datalist JSON file of the real pairs.
        synthetic_datalist: datalist JSON file of the synthetic pairs (entries flagged ``"synthetic": true``).
        num_classes: number of mask classes ``K``, background included; label values must be in ``[0, K)``.
        spatial_dims: 2 or 3.
        output_dir: folder of the JSON files (created).
        real_section: section of ``real_datalist`` holding the real pairs (e.g. the held-out ``test`` split).
        reference_section: optional section of ``real_datalist`` (e.g. ``training``, the generator's own real pairs)
            scored against the real pairs like the synthetic set: the real-vs-real reference (module docstring).
        synthetic_section: section of ``synthetic_datalist`` holding the synthetic pairs.
        image_size: grid every image and mask is resized to (an int for every axis, or one per axis); ``None``
            keeps the files' grids, which must then all be the same.
        scale: min-max scale every image channel to ``[0, 1]``.
        weights_path: local weights of the feature extractors (see :func:`common.metrics.build_feature_extractor`);
            ``None`` uses the named random-init fallback.
        arch: MONAI ResNet name of the feature extractors.
        device: device of the feature extraction.
        connectivity: connectivity of the connected components (see :func:`common.metrics.class_component_counts`).
        class_names: ``K`` class names used in ``mask_statistics``; default ``"0"``, ``"1"``, ...
        image_key: entry key of the image file(s).
        label_key: entry key of the label map file.
        validate: check both datalists and every file first with :func:`common.data.validate_datalist` (readable
            files, label grid equal to the image's, label values in ``[0, K)``).
        seed: seed of the fallback extractor, KID subsets and diversity pairs.
        metrics_name: file name of the combined results in ``output_dir``.
        extra: entries merged into the combined results (run identifiers); keys must not be in
            :data:`PAIRED_RESULT_KEYS`.
        generative_args: further arguments of both :class:`~common.evaluation.GenerativeEvaluation` runs (e.g.
            ``input_size``, ``kid_subset_size``, ``diversity_pairs``, ``batch_size``; ``normalize`` applies to the
            images only).

    Raises:
        ValueError: for ``spatial_dims`` not 2 or 3, ``num_classes < 2`` or ``extra`` keys that clash.
    """

    def __init__(
        self,
        real_datalist: str | os.PathLike,
        synthetic_datalist: str | os.PathLike,
        num_classes: int,
        spatial_dims: int,
        output_dir: str | os.PathLike,
        real_section: str = "test",
        synthetic_section: str = "training",
        reference_section: str | None = None,
        image_size: int | Sequence[int] | None = None,
        scale: bool = True,
        weights_path: str | None = None,
        arch: str = "resnet18",
        device: str | torch.device = "cpu",
        connectivity: int = 1,
        class_names: Sequence[str] | None = None,
        image_key: str = "image",
        label_key: str = "label",
        validate: bool = True,
        seed: int = 0,
        metrics_name: str = "metrics.json",
        extra: Mapping[str, Any] | None = None,
        generative_args: Mapping[str, Any] | None = None,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background and at least one class), got {num_classes}.")
        clash = sorted(set(extra or {}) & {*PAIRED_RESULT_KEYS, *PAIRED_REFERENCE_KEYS})
        if clash:
            raise ValueError(f"extra keys {clash} clash with result keys.")
        self.real_datalist = os.path.abspath(os.fspath(real_datalist))
        self.synthetic_datalist = os.path.abspath(os.fspath(synthetic_datalist))
        self.num_classes, self.spatial_dims = int(num_classes), int(spatial_dims)
        self.output_dir = os.fspath(output_dir)
        self.real_section, self.synthetic_section = real_section, synthetic_section
        self.reference_section = reference_section
        self.image_size = image_size
        self.scale = bool(scale)
        self.weights_path, self.arch = weights_path, arch
        self.device = torch.device(device)
        self.connectivity = int(connectivity)
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.image_key, self.label_key = image_key, label_key
        self.validate = bool(validate)
        self.seed = int(seed)
        self.metrics_name = metrics_name
        self.extra = dict(extra or {})
        self.generative_args = dict(generative_args or {})

    def _transform(self) -> Compose:
        keys = [self.image_key, self.label_key]
        steps: list[Any] = [
            LoadImaged(keys=keys, image_only=True, ensure_channel_first=True),
            SqueezeToSpatialDimsd(keys=keys, spatial_dims=self.spatial_dims),
        ]
        if self.scale:
            steps.append(ScaleIntensityd(keys=self.image_key, minv=0.0, maxv=1.0, channel_wise=True))
        if self.image_size is not None:
            size = [int(self.image_size)] * self.spatial_dims if isinstance(self.image_size, int) else self.image_size
            steps += [
                Resized(keys=self.image_key, spatial_size=size, mode="area"),
                Resized(keys=self.label_key, spatial_size=size, mode="nearest"),
            ]
        steps += [
            EnsureTyped(keys=self.image_key, dtype=torch.float32, track_meta=False),
            EnsureTyped(keys=self.label_key, track_meta=False),
        ]
        return Compose(steps)

    def _entries(self, datalist: str, section: str, synthetic: bool) -> list[dict]:
        """The section's entries with absolute paths; every structural problem raised at once as DatalistError."""
        if self.validate:
            validate_datalist(
                datalist,
                sections=[section],
                image_key=self.image_key,
                label_key=self.label_key,
                spatial_dims=self.spatial_dims,
                label_values=range(self.num_classes),
            )
        raw = load_datalist_file(datalist).get(section)
        if not isinstance(raw, list) or not raw:
            raise DatalistError(
                [DatalistProblem(section, None, None, datalist, "section is missing or empty")], datalist
            )
        problems = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict):
                problems.append(DatalistProblem(section, i, None, None, "entry is not an object"))
                continue
            for key in (self.image_key, self.label_key):
                if key not in entry:
                    problems.append(DatalistProblem(section, i, key, None, "key is missing (image+mask pairs needed)"))
            if synthetic and entry.get("synthetic") is not True:
                problems.append(DatalistProblem(section, i, "synthetic", None, "entry is not flagged synthetic: true"))
        if problems:
            raise DatalistError(problems, datalist)
        return load_decathlon_datalist(datalist, True, section)

    def read(self, datalist: str, section: str, synthetic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and label maps of one datalist section.

        Args:
            datalist: the datalist JSON file.
            section: its section of image+mask pairs.
            synthetic: the entries must be flagged ``"synthetic": true``.

        Returns:
            images ``(N, C, *S)`` float32 and label maps ``(N, 1, *S)`` int64.

        Raises:
            DatalistError: naming the datalist, the entries and the files: missing section or keys, unflagged
                synthetic entries, unreadable files, labels with several channels or non-integer values, images of
                different channel counts or (without ``image_size``) grids, and the problems of
                :func:`common.data.validate_datalist` when ``validate``.
        """
        transform = self._transform()
        images, labels, problems = [], [], []
        for i, entry in enumerate(self._entries(datalist, section, synthetic)):
            files = {key: [str(f) for f in ensure_tuple(entry[key])] for key in (self.image_key, self.label_key)}
            missing = [(key, f) for key, names in files.items() for f in names if not os.path.exists(f)]
            for key, f in missing:
                problems.append(DatalistProblem(section, i, key, f, "file not found"))
            if len(files[self.label_key]) != 1:
                problem = f"label must be one file, got {len(files[self.label_key])}"
                problems.append(DatalistProblem(section, i, self.label_key, None, problem))
            if missing or len(files[self.label_key]) != 1:
                continue
            label_file = files[self.label_key][0]
            try:
                item = transform({self.image_key: entry[self.image_key], self.label_key: label_file})
            except Exception as e:  # MONAI wraps reader errors in RuntimeError: name the entry and its files
                where = ", ".join(f for names in files.values() for f in names)
                problems.append(
                    DatalistProblem(section, i, None, where, f"could not be read ({type(e).__name__}: {e})")
                )
                continue
            image, label = item[self.image_key], item[self.label_key]
            grid = tuple(image.shape) if not images else tuple(images[0].shape)
            if label.shape[0] != 1:
                problems.append(DatalistProblem(section, i, self.label_key, label_file, "label must have 1 channel"))
            elif label.shape[1:] != image.shape[1:]:
                problem = f"label grid {tuple(label.shape[1:])} differs from its image's {tuple(image.shape[1:])}"
                problems.append(DatalistProblem(section, i, self.label_key, label_file, problem))
            elif label.is_floating_point() and not torch.equal(label, label.round()):
                problems.append(DatalistProblem(section, i, self.label_key, label_file, "label has non-integer values"))
            elif tuple(image.shape) != grid:
                problem = f"image (C, *S) {tuple(image.shape)} differs from the section's first image {grid}" + (
                    "" if self.image_size is not None else "; set image_size to compare different grids"
                )
                problems.append(DatalistProblem(section, i, self.image_key, files[self.image_key][0], problem))
            else:
                images.append(image)
                labels.append(label.long())
        if problems:
            raise DatalistError(problems, datalist)
        return torch.stack(images), torch.stack(labels)

    def _check_sets(self, real: torch.Tensor, other: torch.Tensor, section: str, datalist: str) -> None:
        """Raises DatalistError when the images (C, *S) of ``section`` of ``datalist`` differ from the real ones."""
        if real.shape[1:] != other.shape[1:]:
            problem = (
                f"images (C, *S) {tuple(other.shape[1:])} differ from the real images "
                f"{tuple(real.shape[1:])} of '{self.real_datalist}' section {self.real_section!r}"
                + ("" if self.image_size is not None else "; set image_size to compare different grids")
            )
            raise DatalistError([DatalistProblem(section, None, self.image_key, None, problem)], datalist)

    def _generative(self, real: torch.Tensor, synthetic: torch.Tensor, name: str, **overrides: Any) -> dict[str, Any]:
        args = {**self.generative_args, **overrides}
        return GenerativeEvaluation(
            real,
            synthetic,
            spatial_dims=self.spatial_dims,
            in_channels=int(real.shape[1]),
            output_file=os.path.join(self.output_dir, name),
            weights_path=self.weights_path,
            arch=self.arch,
            device=self.device,
            seed=self.seed,
            **args,
        ).run()

    def run(self) -> dict[str, Any]:
        """Reads both sets, computes the metrics, writes the JSON files and logs the table.

        Returns:
            the combined results written to ``<output_dir>/<metrics_name>``.
        """
        real_images, real_labels = self.read(self.real_datalist, self.real_section, synthetic=False)
        fake_images, fake_labels = self.read(self.synthetic_datalist, self.synthetic_section, synthetic=True)
        # labels share their images' grids (checked by read)
        self._check_sets(real_images, fake_images, self.synthetic_section, self.synthetic_datalist)
        ref_images = ref_labels = None
        if self.reference_section is not None:
            ref_images, ref_labels = self.read(self.real_datalist, self.reference_section, synthetic=False)
            self._check_sets(real_images, ref_images, self.reference_section, self.real_datalist)
        scale = float(self.num_classes - 1)
        images = self._generative(real_images, fake_images, "image_metrics.json", reference_loader=ref_images)
        masks = self._generative(
            real_labels / scale,
            fake_labels / scale,
            "mask_metrics.json",
            normalize=None,
            reference_loader=None if ref_labels is None else ref_labels / scale,
        )
        statistics = compare_mask_sets(
            real_labels, fake_labels, self.num_classes, self.spatial_dims, self.connectivity, self.class_names
        )
        results: dict[str, Any] = {f"image_{m}": images[m] for m in _SET_METRICS}
        results.update({f"mask_{m}": masks[m] for m in _SET_METRICS})
        results.update(
            feature_extractor=images["feature_extractor"],
            mask_feature_extractor=masks["feature_extractor"],
            feature_dim=images["feature_dim"],
            diversity_metric=images["diversity_metric"],
            mask_rendering=MASK_RENDERING,
            mask_area_fraction_wasserstein=statistics["mean_wasserstein_area_fraction"],
            mask_components_wasserstein=statistics["mean_wasserstein_components"],
            mask_classes_only_in_synthetic=statistics["classes_only_in_synthetic"],
            mask_classes_missing_in_synthetic=statistics["classes_missing_in_synthetic"],
            mask_statistics=statistics,
            num_real=int(real_images.shape[0]),
            num_synthetic=int(fake_images.shape[0]),
            num_classes=self.num_classes,
            spatial_dims=self.spatial_dims,
            real_datalist=self.real_datalist,
            real_section=self.real_section,
            synthetic_datalist=self.synthetic_datalist,
            synthetic_section=self.synthetic_section,
        )
        if ref_labels is not None:
            reference = compare_mask_sets(
                real_labels, ref_labels, self.num_classes, self.spatial_dims, self.connectivity, self.class_names
            )
            names = {"fid": "fid_reference", "kid_mean": "kid_reference_mean", "kid_std": "kid_reference_std"}
            for kind, report in (("image", images), ("mask", masks)):
                results.update({f"{kind}_{m}_reference": report[key] for m, key in names.items()})
            results.update(
                mask_area_fraction_wasserstein_reference=reference["mean_wasserstein_area_fraction"],
                mask_components_wasserstein_reference=reference["mean_wasserstein_components"],
                num_reference=int(ref_labels.shape[0]),
                reference_section=self.reference_section,
            )
        results.update(self.extra)
        table = format_table({k: v for k, v in results.items() if k != "mask_statistics"})
        write_report(
            results,
            os.path.join(self.output_dir, self.metrics_name),
            table=table,
            title="paired generative evaluation",
            log=logger,
            indent=2,
            default=str,
        )
        return results

    def __call__(self) -> dict[str, Any]:
        """Same as :meth:`run`, so a bundle can call the instance."""
        return self.run()
