"""Progressive GAN generator and discriminator: PGGAN and the bounding-box-conditioned CPGGAN.

- PGGAN (Karras et al. 2018; Han thesis, sec. 4.2.2, Fig. 8): a generator and a discriminator that grow from
  ``start_size`` (4x4) to ``image_size`` (256x256) by doubling the resolution; each new stage is faded in with a
  weight ``alpha`` going from 0 to 1. Pixel norm after every generator convolution, minibatch standard deviation
  before the discriminator's last block, equalised learning rate everywhere (:mod:`common.networks.blocks.progressive`).
- CPGGAN (Han thesis, sec. 5.2.2, Fig. 13), ``condition_channels > 0``: the conditioning image (black, with white
  bounding boxes) is resized to the input resolution of every generator block after the first and concatenated with
  the upsampled features ("resize the conditioning image to the previous generator's output resolution ... and
  concatenate them (noise samples generate the first 4x4 images)"); the discriminator sees the conditioning image
  concatenated with the real or synthetic image.

Both networks take ``stage`` (0: ``start_size``; ``-1``: the last) and ``alpha`` (fade-in weight of that stage) as
forward arguments, so a fixed-stage network (the default: last stage, ``alpha = 1``) is TorchScript-exportable.

Fade-in (Karras et al., sec. 2, Fig. 2): at stage ``s`` the generator outputs
``alpha * toRGB_s(block_s(up(h))) + (1 - alpha) * up(toRGB_{s-1}(h))`` and the discriminator computes
``alpha * block_s(fromRGB_s(x)) + (1 - alpha) * fromRGB_{s-1}(down(x))``: at ``alpha = 0`` both equal the previous
stage's networks applied on the up-/down-sampled signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Pool

from .blocks.progressive import EqualizedConv, EqualizedLinear, MinibatchStdDev, PixelNorm

__all__ = [
    "ConditionalSynthesisNetwork",
    "ProgressiveDiscriminator",
    "ProgressiveGenerator",
    "progressive_channels",
    "progressive_resolutions",
]


def progressive_resolutions(image_size: int, start_size: int = 4) -> list[int]:
    """Resolutions of the stages, ``[start_size, 2 * start_size, ..., image_size]``.

    Raises:
        ValueError: when ``image_size / start_size`` is not a power of two.
    """
    ratio = image_size / start_size
    if start_size < 1 or ratio < 1 or ratio != 2 ** round(math.log2(ratio)):
        raise ValueError(f"image_size / start_size must be a power of two >= 1, got {image_size} / {start_size}.")
    return [start_size * 2**s for s in range(round(math.log2(ratio)) + 1)]


def progressive_channels(num_stages: int, fmap_base: int = 8192, fmap_max: int = 512) -> list[int]:
    """Feature channels per stage, ``min(fmap_max, fmap_base / 2^(s + 1))`` (Karras et al.'s ``nf``).

    With the defaults: 512 at 4..32 px, then 256, 128, 64 at 64, 128, 256 px (the PGGAN of the thesis, Fig. 8).
    """
    return [max(1, min(fmap_max, fmap_base // 2 ** (s + 1))) for s in range(num_stages)]


def _resize_condition(condition: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The condition image resized (area averaging) to the spatial size of ``like``."""
    size: list[int] = [int(s) for s in like.shape[2:]]
    return F.interpolate(condition.to(like.dtype), size=size, mode="area")


class _GeneratorBlock(nn.Module):
    """Upsampled features (+ resized condition) -> 2 x (conv 3x3, leaky ReLU, pixel norm); and its ``toRGB``."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, image_channels: int, condition_channels: int
    ) -> None:
        super().__init__()
        self.condition_channels = condition_channels
        self.body = nn.Sequential(
            EqualizedConv(spatial_dims, in_channels + condition_channels, out_channels, 3),
            nn.LeakyReLU(0.2),
            PixelNorm(),
            EqualizedConv(spatial_dims, out_channels, out_channels, 3),
            nn.LeakyReLU(0.2),
            PixelNorm(),
        )
        self.to_rgb = EqualizedConv(spatial_dims, out_channels, image_channels, 1, gain=1.0)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if self.condition_channels > 0:
            if condition is None:
                raise ValueError("this generator is conditional: give the condition image.")
            x = torch.cat([x, _resize_condition(condition, x)], dim=1)
        return self.body(x)


class _GeneratorStart(nn.Module):
    """Latent -> pixel norm -> dense to ``start_size^d`` positions -> conv 3x3 (Karras et al., Table 2)."""

    def __init__(self, spatial_dims: int, latent_size: int, channels: int, start_size: int, image_channels: int):
        super().__init__()
        self.shape = [channels] + [start_size] * spatial_dims
        self.norm = PixelNorm()
        self.dense = EqualizedLinear(latent_size, channels * start_size**spatial_dims)
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2), PixelNorm(), EqualizedConv(spatial_dims, channels, channels, 3), nn.LeakyReLU(0.2)
        )
        self.out_norm = PixelNorm()
        self.to_rgb = EqualizedConv(spatial_dims, channels, image_channels, 1, gain=1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(self.norm(z.flatten(1))).reshape([z.shape[0]] + self.shape)
        return self.out_norm(self.body(h))


class ProgressiveGenerator(nn.Module):
    """Progressively grown generator (PGGAN; CPGGAN with ``condition_channels > 0``).

    Args:
        spatial_dims: 2 or 3.
        latent_size: length of the latent vector (512 in Karras et al.).
        out_channels: image channels.
        image_size: output size of the last stage (256 in the thesis).
        start_size: output size of the first stage (4).
        channels: feature channels per stage; default :func:`progressive_channels` with ``fmap_base``/``fmap_max``.
        fmap_base: see :func:`progressive_channels`.
        fmap_max: see :func:`progressive_channels`.
        condition_channels: channels of the conditioning image (CPGGAN: 1); 0 for an unconditional PGGAN.

    Shapes:
        ``forward(z, condition=None, stage=-1, alpha=1.0)``: ``z`` ``(B, latent_size)``; ``condition``
        ``(B, condition_channels, *any spatial)`` (resized inside); output ``(B, out_channels, *[r] * spatial_dims)``
        with ``r`` the resolution of ``stage``. No output activation (Karras et al.): training images are in
        ``[-1, 1]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        latent_size: int = 512,
        out_channels: int = 1,
        image_size: int = 256,
        start_size: int = 4,
        channels: Sequence[int] | None = None,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        condition_channels: int = 0,
    ) -> None:
        super().__init__()
        self.resolutions = progressive_resolutions(image_size, start_size)
        self.num_stages = len(self.resolutions)
        ch = list(channels) if channels is not None else progressive_channels(self.num_stages, fmap_base, fmap_max)
        if len(ch) != self.num_stages:
            raise ValueError(f"channels needs {self.num_stages} values (one per stage), got {len(ch)}.")
        self.spatial_dims = spatial_dims
        self.latent_size = latent_size
        self.out_channels = out_channels
        self.condition_channels = condition_channels
        self.channels = ch
        self.start = _GeneratorStart(spatial_dims, latent_size, ch[0], start_size, out_channels)
        self.blocks = nn.ModuleList(
            [
                _GeneratorBlock(spatial_dims, ch[s - 1], ch[s], out_channels, condition_channels)
                for s in range(1, len(ch))
            ]
        )
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")

    def forward(
        self, z: torch.Tensor, condition: torch.Tensor | None = None, stage: int = -1, alpha: float = 1.0
    ) -> torch.Tensor:
        return self.generate(z, condition, stage, alpha)

    def generate(
        self, z: torch.Tensor, condition: torch.Tensor | None = None, stage: int = -1, alpha: float = 1.0
    ) -> torch.Tensor:
        """The generator's output at ``stage`` and fade-in ``alpha`` (see the class docstring for shapes)."""
        last = self.num_stages - 1 if stage < 0 else stage
        if last >= self.num_stages:
            raise ValueError(f"stage {stage} does not exist (the generator has {self.num_stages} stages).")
        h = self.start(z)
        if last == 0:
            return self.start.to_rgb(h)
        previous = h
        if last == 1 and alpha < 1.0:
            previous = self.start.to_rgb(h)
        result = h
        for i, block in enumerate(self.blocks):
            s = i + 1
            if s <= last:
                h = block(self.upsample(h), condition)
                if s == last - 1 and alpha < 1.0:
                    previous = block.to_rgb(h)
                if s == last:
                    result = block.to_rgb(h)
                    if alpha < 1.0:
                        result = alpha * result + (1.0 - alpha) * self.upsample(previous)
        return result


class _DiscriminatorBlock(nn.Module):
    """``fromRGB`` of a stage, and its body: 2 x (conv 3x3, leaky ReLU), then 2x average pooling."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, image_channels: int) -> None:
        super().__init__()
        self.from_rgb = nn.Sequential(EqualizedConv(spatial_dims, image_channels, in_channels, 1), nn.LeakyReLU(0.2))
        self.body = nn.Sequential(
            EqualizedConv(spatial_dims, in_channels, in_channels, 3),
            nn.LeakyReLU(0.2),
            EqualizedConv(spatial_dims, in_channels, out_channels, 3),
            nn.LeakyReLU(0.2),
            Pool[Pool.AVG, spatial_dims](kernel_size=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _DiscriminatorEnd(nn.Module):
    """``fromRGB`` of the first stage and the last block: minibatch stddev, conv 3x3, conv ``start_size``, dense."""

    def __init__(self, spatial_dims: int, channels: int, start_size: int, image_channels: int, group_size: int) -> None:
        super().__init__()
        self.from_rgb = nn.Sequential(EqualizedConv(spatial_dims, image_channels, channels, 1), nn.LeakyReLU(0.2))
        self.body = nn.Sequential(
            MinibatchStdDev(group_size),
            EqualizedConv(spatial_dims, channels + 1, channels, 3),
            nn.LeakyReLU(0.2),
            EqualizedConv(spatial_dims, channels, channels, start_size, padding=0),
            nn.LeakyReLU(0.2),
        )
        self.dense = EqualizedLinear(channels, 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.body(x).flatten(1))


class ProgressiveDiscriminator(nn.Module):
    """Progressively grown discriminator (critic) of PGGAN/CPGGAN.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        image_size: input size of the last stage.
        start_size: input size of the first stage.
        channels: feature channels per stage (same meaning as the generator's); default from ``fmap_base``/``fmap_max``.
        fmap_base: see :func:`progressive_channels`.
        fmap_max: see :func:`progressive_channels`.
        condition_channels: channels of the conditioning image concatenated with the input (CPGGAN: 1).
        group_size: minibatch standard deviation group size (4).

    Shapes:
        ``forward(x, condition=None, stage=-1, alpha=1.0)``: ``x`` ``(B, in_channels, *[r] * spatial_dims)`` with ``r``
        the resolution of ``stage``; ``condition`` ``(B, condition_channels, *any spatial)``; output ``(B, 1)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 1,
        image_size: int = 256,
        start_size: int = 4,
        channels: Sequence[int] | None = None,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        condition_channels: int = 0,
        group_size: int = 4,
    ) -> None:
        super().__init__()
        self.resolutions = progressive_resolutions(image_size, start_size)
        self.num_stages = len(self.resolutions)
        ch = list(channels) if channels is not None else progressive_channels(self.num_stages, fmap_base, fmap_max)
        if len(ch) != self.num_stages:
            raise ValueError(f"channels needs {self.num_stages} values (one per stage), got {len(ch)}.")
        self.spatial_dims = spatial_dims
        self.condition_channels = condition_channels
        self.channels = ch
        image_channels = in_channels + condition_channels
        # stored from the last stage down to stage 1, the order in which the forward pass runs them
        self.blocks = nn.ModuleList(
            [_DiscriminatorBlock(spatial_dims, ch[s], ch[s - 1], image_channels) for s in range(len(ch) - 1, 0, -1)]
        )
        self.end = _DiscriminatorEnd(spatial_dims, ch[0], start_size, image_channels, group_size)
        self.downsample = Pool[Pool.AVG, spatial_dims](kernel_size=2)

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None = None, stage: int = -1, alpha: float = 1.0
    ) -> torch.Tensor:
        last = self.num_stages - 1 if stage < 0 else stage
        if last >= self.num_stages:
            raise ValueError(f"stage {stage} does not exist (the discriminator has {self.num_stages} stages).")
        if self.condition_channels > 0:
            if condition is None:
                raise ValueError("this discriminator is conditional: give the condition image.")
            x = torch.cat([x, _resize_condition(condition, x)], dim=1)
        h = x
        fading = False
        for j, block in enumerate(self.blocks):
            s = self.num_stages - 1 - j
            if s == last:
                h = block(block.from_rgb(x))
                fading = alpha < 1.0
            elif s < last:
                if fading:
                    h = alpha * h + (1.0 - alpha) * block.from_rgb(self.downsample(x))
                    fading = False
                h = block(h)
        if last == 0:
            h = self.end.from_rgb(x)
        elif fading:
            h = alpha * h + (1.0 - alpha) * self.end.from_rgb(self.downsample(x))
        return self.end(h)


class ConditionalSynthesisNetwork(ProgressiveGenerator):
    """Inference form of the conditional generator: condition image in, synthetic image out (CPGGAN, sec. 5.2.2).

    The model-zoo convention gives a network one input named ``image``: here it is the conditioning image, and the
    latent is an optional second argument (zeros, the mode of the latent prior, when omitted, which keeps the network
    deterministic for export checks). It is a :class:`ProgressiveGenerator` (same arguments, ``condition_channels``
    1 by default) at its last stage with ``alpha = 1``: the trained generator's weights load into it unchanged.

    Shapes:
        ``forward(image, latent=None)``: ``image`` ``(B, condition_channels, *spatial)``, ``latent``
        ``(B, latent_size)``; output ``(B, out_channels, *[image_size] * spatial_dims)``.
    """

    def __init__(self, spatial_dims: int, condition_channels: int = 1, **kwargs) -> None:
        super().__init__(spatial_dims, condition_channels=condition_channels, **kwargs)
        if condition_channels < 1:
            raise ValueError("ConditionalSynthesisNetwork needs condition_channels >= 1.")

    def forward(  # type: ignore[override]
        self, image: torch.Tensor, latent: torch.Tensor | None = None
    ) -> torch.Tensor:
        z = latent if latent is not None else torch.zeros(image.shape[0], self.latent_size, device=image.device)
        return self.generate(z, image, -1, 1.0)
