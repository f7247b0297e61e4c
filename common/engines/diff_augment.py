"""Differentiable augmentation of a discriminator's inputs (Zhao et al. 2020, "Differentiable Augmentation for
Data-Efficient GAN Training", sec. 3).

With few training images the discriminator memorises them and its feedback to the generator stops being useful.
DiffAugment applies the same family of random, differentiable transformations to the real and to the generated
images *every time the discriminator sees them*, in the discriminator's and in the generator's update, so that the
generator gets gradients through the augmentation and does not learn to produce augmented-looking images (sec. 3,
Fig. 4: augmenting only the real images lets the augmentation leak into the samples).

:class:`DiffAugment` implements the paper's **translation**: each image is shifted by a random whole number of
pixels (voxels) along every spatial axis, within ``[-ratio, ratio]`` of that axis' size (1/8 in the paper), and the
uncovered border is filled with a constant (the paper pads with zeros; for intensities in ``[-1, 1]`` with a black
background, -1 keeps the background black). It works in 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DiffAugment"]

POLICIES = ("translation",)


class DiffAugment(nn.Module):
    """Random translation of a batch of images, differentiable with respect to the images (Zhao et al. 2020).

    Args:
        policy: augmentations applied in order; ``("translation",)`` (the only one implemented).
        ratio: largest shift along each spatial axis as a fraction of its size (``0.125`` in the paper).
        fill: value of the voxels shifted in from outside the image (``-1.0``: the background of images scaled to
            ``[-1, 1]``; the paper's ``0.0`` is the mid-grey of that range).
        generator: optional random generator of the shifts (default: torch's global one, so that a run with a fixed
            seed and exact resume reproduces them).

    Shapes:
        input ``(B, C, *spatial)`` with 2 or 3 spatial dims; output the same shape. Each sample gets its own shift;
        all channels of a sample the same one.
    """

    def __init__(
        self,
        policy: Sequence[str] = ("translation",),
        ratio: float = 0.125,
        fill: float = -1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        policy = (policy,) if isinstance(policy, str) else tuple(policy)
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policies {unknown}; implemented: {list(POLICIES)}.")
        if not 0.0 <= ratio < 0.5:
            raise ValueError(f"ratio must be in [0, 0.5), got {ratio}.")
        self.policy = policy
        self.ratio = float(ratio)
        self.fill = float(fill)
        self.generator = generator

    def translation_range(self, spatial_shape: Sequence[int]) -> list[int]:
        """Largest shift (voxels) along each axis: ``round(ratio * size)`` (``int(size * ratio + 0.5)``)."""
        return [int(size * self.ratio + 0.5) for size in spatial_shape]

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """Shift each sample of ``x`` by its own random offsets, filling the uncovered border with ``fill``."""
        if x.ndim not in (4, 5):
            raise ValueError(f"expected a (B, C, *spatial) batch with 2 or 3 spatial dims, got shape {tuple(x.shape)}.")
        spatial = list(x.shape[2:])
        limits = self.translation_range(spatial)
        if not any(limits):
            return x
        batch = x.shape[0]
        # offsets in [-m, m] per sample and axis, drawn on the CPU (reproducible across devices)
        offsets = [
            torch.randint(-m, m + 1, (batch,), generator=self.generator).tolist() if m else [0] * batch for m in limits
        ]
        pad: list[int] = []
        for m in reversed(limits):  # F.pad takes the last axis first
            pad += [m, m]
        padded = F.pad(x, pad, value=self.fill)
        crops = []
        for i in range(batch):
            # the output voxel j shows input voxel j - t: the crop of the padded image starting at m - t
            index = tuple(slice(m - off[i], m - off[i] + size) for m, off, size in zip(limits, offsets, spatial))
            crops.append(padded[(i, slice(None)) + index])
        return torch.stack(crops, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.policy:
            if name == "translation":
                x = self.translate(x)
        return x

    def extra_repr(self) -> str:
        return f"policy={list(self.policy)}, ratio={self.ratio}, fill={self.fill}"
