"""A quick end-of-training check of a noise-to-image generator: FID/KID and SSIM diversity of a few samples against
the real test split, next to the same numbers for real training images (the real-vs-real reference)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from common.data import latent_samples
from common.evaluation.generative import GenerativeEvaluation
from common.metrics.features import build_feature_extractor
from monai.data import load_decathlon_datalist
from monai.utils import convert_to_tensor

__all__ = ["QuickGenerativeCheck"]

logger = logging.getLogger(__name__)

_COMPARED = ("fid", "kid_mean", "kid_std", "mmd", "ssim_diversity_fake")


class QuickGenerativeCheck:
    """Cheap FID/KID and SSIM diversity of ``num_samples`` generated images against the real ``real_section`` split,
    with the reference computed the same way: ``num_samples`` real ``reference_section`` images against the same split.

    FID and KID with few samples are biased upwards (and FID's covariances are singular below the feature dimension):
    the absolute values mean little, but the generated and the reference values are computed with the same feature
    extractor, the same test images and the same numbers of images, so a generator close to the data gives values
    close to the reference. Both comparisons are :class:`~common.evaluation.GenerativeEvaluation` runs on tensors
    ``(N, C, *spatial)`` (their JSON reports go to a temporary folder, their tables to the log); only the numbers
    are returned, for :class:`common.handlers.RunSummaryHandler` to log and write at the end of training.

    The latents are those of :func:`common.data.latent_samples` with ``seed``, the ones the inference config draws,
    so the generated images are the first ``num_samples`` images ``inference.yaml`` writes with the same seed. The
    generator runs in eval mode without gradients (its mode is restored) inside a forked RNG: the training run's
    RNG state is not changed. Real images are read from the datalist with ``transform`` (the training
    preprocessing); real and generated images are then mapped from ``value_range`` to [0, 1] and clipped, as the
    inference postprocessing and ``evaluate.yaml`` do. Nothing is read before the call, so building the object in a
    config costs nothing when the check is switched off.

    Args:
        datalist: Decathlon-style datalist JSON holding ``real_section`` and ``reference_section``.
        transform: maps a datalist entry (dict) to a dict whose ``image_key`` is a tensor ``(C, *spatial)``.
        spatial_dims: 2 or 3.
        in_channels: channels of the images.
        generator: network mapping latents ``(B, *latent_size)`` to images ``(B, C, *spatial)``; a
            ``DistributedDataParallel``/``DataParallel`` wrapper is unwrapped. Exclusive with ``sample_fn``.
        latent_size: latent shape per sample (int or sequence), required with ``generator``.
        sample_fn: alternatively, a callable ``n -> (n, C, *spatial)`` drawing ``n`` generated images.
        num_samples: generated images, and real reference images (fewer when the reference split is smaller).
        real_section: the held-out real split both sets are compared with.
        reference_section: the real split of the reference set (a seeded random subset of it).
        max_real: at most this many ``real_section`` images (the first ones); None: all.
        value_range: intensity range of the generated and transformed real images, mapped to [0, 1].
        image_key: key of the image in the transformed entries.
        weights_path: local weights of the feature extractor; None: the named random-init fallback.
        arch: MONAI ResNet name of the feature extractor.
        device: device of generation and feature extraction.
        batch_size: generator and feature-extractor batch size.
        kid_subsets: number of KID subsets.
        diversity_pairs: image pairs of the SSIM diversity.
        seed: seed of the latents, the reference subset, the fallback extractor, KID subsets and diversity pairs.
    """

    def __init__(
        self,
        datalist: str | os.PathLike,
        transform: Callable[[dict], dict],
        spatial_dims: int,
        in_channels: int,
        generator: torch.nn.Module | None = None,
        latent_size: int | Sequence[int] | None = None,
        sample_fn: Callable[[int], torch.Tensor] | None = None,
        num_samples: int = 64,
        real_section: str = "test",
        reference_section: str = "training",
        max_real: int | None = None,
        value_range: Sequence[float] = (-1.0, 1.0),
        image_key: str = "image",
        weights_path: str | None = None,
        arch: str = "resnet18",
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        kid_subsets: int = 100,
        diversity_pairs: int = 100,
        seed: int = 0,
    ) -> None:
        if (generator is None) == (sample_fn is None):
            raise ValueError("exactly one of `generator` and `sample_fn` must be given.")
        if generator is not None and latent_size is None:
            raise ValueError("`latent_size` is required with `generator`.")
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2, got {num_samples}.")
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}.")
        self.datalist = os.fspath(datalist)
        self.transform = transform
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.generator = generator
        self.latent_size = latent_size
        self.sample_fn = sample_fn
        self.num_samples = int(num_samples)
        self.real_section = real_section
        self.reference_section = reference_section
        self.max_real = max_real
        self.value_range = (lo, hi)
        self.image_key = image_key
        self.weights_path = weights_path
        self.arch = arch
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.kid_subsets = int(kid_subsets)
        self.diversity_pairs = int(diversity_pairs)
        self.seed = int(seed)

    def _to_unit(self, images: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        return ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0.0, 1.0)

    def _real(self, section: str, count: int | None, shuffle: bool) -> torch.Tensor:
        entries = load_decathlon_datalist(self.datalist, True, section)
        if len(entries) < 2:
            raise ValueError(f"the '{section}' split of {self.datalist} has {len(entries)} images; 2 are needed.")
        order = np.arange(len(entries))
        if shuffle:
            order = np.random.default_rng(self.seed).permutation(len(entries))
        if count is not None:
            order = order[:count]
        images = [convert_to_tensor(self.transform(dict(entries[i]))[self.image_key], track_meta=False) for i in order]
        return self._to_unit(torch.stack(images))

    def _network(self) -> torch.nn.Module:
        net = self.generator
        if isinstance(net, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            net = net.module
        return net  # type: ignore[return-value]

    def generate(self) -> torch.Tensor:
        """The generated images, mapped to [0, 1], on CPU.

        Returns:
            tensor ``(num_samples, C, *spatial)``.
        """
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.manual_seed(self.seed)
            if self.sample_fn is not None:
                return self._to_unit(self.sample_fn(self.num_samples)[: self.num_samples])
            net = self._network()
            was_training = net.training
            net.eval()
            try:
                assert self.latent_size is not None
                z = torch.stack([e["image"] for e in latent_samples(self.num_samples, self.latent_size, self.seed)])
                out = [net(z[i : i + self.batch_size].to(self.device)).cpu() for i in range(0, len(z), self.batch_size)]
            finally:
                net.train(was_training)
        return self._to_unit(torch.cat(out))

    def __call__(self) -> dict[str, Any]:
        """Generate, read the real sets and run the two comparisons.

        Returns:
            ``feature_extractor`` (its name); ``generated`` and ``reference`` (the real ``reference_section``
            images), each ``{"fid", "kid_mean", "kid_std", "mmd", "ssim_diversity", "num_images"}`` against the
            ``real_section`` images (the reference also names its ``section``); ``real``: ``section``,
            ``num_images`` and ``ssim_diversity`` of the ``real_section`` images; ``seconds``, the time taken.
        """
        start = time.perf_counter()
        real = self._real(self.real_section, self.max_real, shuffle=False)
        reference = self._real(self.reference_section, self.num_samples, shuffle=True)
        fake = self.generate()
        extractor = build_feature_extractor(
            self.spatial_dims, self.in_channels, weights_path=self.weights_path, arch=self.arch, seed=self.seed
        )
        runs: dict[str, dict[str, Any]] = {}
        sources = {"generated": "generated", "reference": f"real {self.reference_section}"}
        with tempfile.TemporaryDirectory() as tmp:
            for name, images in (("generated", fake), ("reference", reference)):
                runs[name] = GenerativeEvaluation(
                    real_loader=real,
                    fake_loader=images,
                    spatial_dims=self.spatial_dims,
                    in_channels=self.in_channels,
                    output_file=os.path.join(tmp, f"{name}.json"),
                    device=self.device,
                    kid_subsets=self.kid_subsets,
                    diversity_pairs=self.diversity_pairs,
                    batch_size=self.batch_size,
                    seed=self.seed,
                    feature_extractor=extractor,
                    extra={"compared": f"{sources[name]} vs real {self.real_section}"},
                ).run()
        results: dict[str, Any] = {"feature_extractor": runs["generated"]["feature_extractor"]}
        for name, images in (("generated", fake), ("reference", reference)):
            results[name] = {key.replace("_fake", ""): float(runs[name][key]) for key in _COMPARED}
            results[name]["num_images"] = int(images.shape[0])
        results["reference"]["section"] = self.reference_section
        results["real"] = {
            "section": self.real_section,
            "num_images": int(real.shape[0]),
            "ssim_diversity": float(runs["generated"]["ssim_diversity_real"]),
        }
        results["seconds"] = round(time.perf_counter() - start, 3)
        return results
