"""Sampling of image+mask pairs from the StyleGAN2 family of paper 004 (Vu et al., sec. 3.1-3.3, Fig. 3).

:class:`ImageMaskSampler` turns latents into one tensor holding the image channels followed by the label mask as
one-hot channels in ``[-1, 1]``, whatever the pipeline:

- **B-SG** (Fig. 3b): one generator makes both, ``G_b(z) = (x, m)``; its mask channels are continuous and are
  decoded by ``argmax`` downstream (the one-hot output here is that decoding);
- **MC-SG** (Fig. 3c, sec. 3.3): "We first used M-SG to generate masks. We then used the generated masks by M-SG as
  conditions to make C-SG generate images": ``m = onehot(argmax G_m(z_m))``, ``x = G_c(z_c | m)``.

Both generators follow :class:`~common.networks.StyleGAN2Generator`'s call, ``G(z, condition=None,
truncation_psi=..., truncation_cutoff=..., noise_mode=...)``, so the StyleGAN2 truncation trick applies to each.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ImageMaskSampler"]

NOISE_MODES = ("random", "const", "none")


class ImageMaskSampler(nn.Module):
    """Image+mask pairs from a B-SG generator, or from M-SG masks fed to a C-SG generator (MC-SG).

    Args:
        generator: B-SG's generator (``image_channels + num_classes`` outputs) or, with ``mask_generator``, C-SG's
            (``image_channels`` outputs, ``num_classes`` condition channels).
        image_channels: image channels ``C``.
        num_classes: mask classes ``K``, background included.
        mask_generator: M-SG's generator (``num_classes`` outputs); given: the MC-SG pipeline.
        truncation_psi: StyleGAN's truncation ``w' = w_avg + psi (w - w_avg)`` (1: off).
        truncation_cutoff: truncate only the first ``cutoff`` style vectors (``None``: all).
        noise_mode: the generators' per-pixel noise, ``"random"``, ``"const"`` or ``"none"``.

    Shapes:
        input ``z``: ``(B, latent_dim)`` for B-SG; ``(B, 2, latent_dim)`` for MC-SG (``z[:, 0]`` for the mask,
        ``z[:, 1]`` for the image). Output ``(B, C + K, *S)``: the image in the generator's range (``[-1, 1]`` for
        data scaled so), then the one-hot mask scaled to ``{-1, 1}``.
    """

    def __init__(
        self,
        generator: nn.Module,
        image_channels: int,
        num_classes: int,
        mask_generator: nn.Module | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
    ) -> None:
        super().__init__()
        if image_channels < 1 or num_classes < 2:
            raise ValueError(f"need image_channels >= 1 and num_classes >= 2, got {image_channels}, {num_classes}.")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
        self.generator = generator
        self.mask_generator = mask_generator
        self.image_channels = int(image_channels)
        self.num_classes = int(num_classes)
        self.truncation = {"truncation_psi": float(truncation_psi), "truncation_cutoff": truncation_cutoff}
        self.noise_mode = noise_mode

    def one_hot(self, scores: torch.Tensor) -> torch.Tensor:
        """``(B, K, *S)`` class scores -> the one-hot mask of their ``argmax``, ``(B, K, *S)`` in ``{0, 1}``."""
        labels = scores.argmax(dim=1)
        return F.one_hot(labels, self.num_classes).movedim(-1, 1).to(scores.dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        kwargs = dict(self.truncation, noise_mode=self.noise_mode)
        if self.mask_generator is None:
            if z.ndim != 2:
                raise ValueError(f"B-SG takes latents (B, latent_dim), got {tuple(z.shape)}.")
            out = self.generator(z, **kwargs)
            expected = self.image_channels + self.num_classes
            if out.shape[1] != expected:
                raise ValueError(f"B-SG's generator gave {out.shape[1]} channels, expected {expected} (image + mask).")
            image, scores = out[:, : self.image_channels], out[:, self.image_channels :]
        else:
            if z.ndim != 3 or z.shape[1] != 2:
                raise ValueError(f"MC-SG takes latents (B, 2, latent_dim) (mask, image), got {tuple(z.shape)}.")
            scores = self.mask_generator(z[:, 0], **kwargs)
            if scores.shape[1] != self.num_classes:
                raise ValueError(f"M-SG's generator gave {scores.shape[1]} channels, expected {self.num_classes}.")
            mask = self.one_hot(scores)
            return torch.cat([self.generator(z[:, 1], condition=mask, **kwargs), mask * 2.0 - 1.0], dim=1)
        return torch.cat([image, self.one_hot(scores) * 2.0 - 1.0], dim=1)
