"""MSG-GAN generator and discriminator (Karnewar & Wang 2020, "MSG-GAN: Multi-Scale Gradients for GANs").

A baseline of the CDA-GAN paper (Xu et al., paper 000, sec. 4.4 (iii), Tables 2-3, Fig. 6: "MSG-GAN ... trained to
generate images on datasets ... the synthetic samples were combined with the real samples"). MSG-GAN is the ProGAN
architecture (:mod:`common.networks.progressive`) trained at all resolutions at once, without progressive growing:

- the generator's every block emits an image through its own 1x1 ``toRGB`` (``o_i = r_i(a_i)``), from
  ``start_size`` (4x4) up to ``image_size``: :meth:`MSGGANGenerator.multi_scale` returns all of them;
- the discriminator receives at each of its blocks the (real or generated) image of that block's resolution,
  combined with the features coming from the finer block by the combine function ``phi``:

  - ``"simple"`` (``phi_simple(x1, x2) = [x1; x2]``): the image concatenated to the features (the default, the
    combine function of MSG-GAN's main experiments),
  - ``"lin_cat"`` (``phi_lin_cat(x1, x2) = [r'(x1); x2]``): a 1x1 convolution of the image, then concatenation,
  - ``"cat_lin"`` (``phi_cat_lin(x1, x2) = r'([x1; x2])``): concatenation, then a 1x1 convolution;

  the finest image enters through a ``fromRGB`` 1x1 convolution as in ProGAN; the last (4x4) block has the
  minibatch standard deviation layer. Pixel norm in the generator and equalised learning rate everywhere
  (:mod:`common.networks.blocks.progressive`).

Both networks take ``spatial_dims`` 2 or 3. Images are ordered from the coarsest (``start_size``) to the finest
(``image_size``) in every list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Pool

from .blocks.progressive import EqualizedConv, EqualizedLinear, MinibatchStdDev
from .progressive import _GeneratorBlock, _GeneratorStart, progressive_channels, progressive_resolutions

__all__ = ["COMBINE_MODES", "MSGGANDiscriminator", "MSGGANGenerator"]

#: the combine functions ``phi`` of the MSG-GAN discriminator.
COMBINE_MODES = ("simple", "lin_cat", "cat_lin")


def _stage_channels(num_stages: int, channels: Sequence[int] | None, fmap_base: int, fmap_max: int) -> list[int]:
    ch = list(channels) if channels is not None else progressive_channels(num_stages, fmap_base, fmap_max)
    if len(ch) != num_stages:
        raise ValueError(f"channels needs {num_stages} values (one per resolution), got {len(ch)}.")
    return ch


class MSGGANGenerator(nn.Module):
    """MSG-GAN generator: ProGAN's generator at full size, with a ``toRGB`` output at every block.

    The blocks are those of :class:`~common.networks.ProgressiveGenerator` (latent -> pixel norm -> dense to
    ``start_size^d`` -> conv 3x3; then per resolution: nearest 2x upsampling, 2 x (conv 3x3, leaky ReLU 0.2, pixel
    norm)), each with its own 1x1 ``toRGB`` (linear: training images are in ``[-1, 1]``).

    Args:
        spatial_dims: 2 or 3.
        latent_size: length of the latent vector.
        out_channels: image channels.
        image_size: the finest output size.
        start_size: the coarsest output size (4).
        channels: feature channels per resolution; default :func:`~common.networks.progressive_channels`.
        fmap_base: see :func:`~common.networks.progressive_channels`.
        fmap_max: see :func:`~common.networks.progressive_channels`.

    Shapes:
        ``forward(z)``: ``z`` ``(B, latent_size)`` -> ``(B, out_channels, *[image_size] * spatial_dims)`` (the finest
        image, for inference and export). ``multi_scale(z)``: the list of ``(B, out_channels, *[r] * spatial_dims)``
        for ``r`` in :attr:`resolutions` (coarse to fine), the training output fed to :class:`MSGGANDiscriminator`.
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
    ) -> None:
        super().__init__()
        self.resolutions = progressive_resolutions(image_size, start_size)
        ch = _stage_channels(len(self.resolutions), channels, fmap_base, fmap_max)
        self.spatial_dims = spatial_dims
        self.latent_size = latent_size
        self.out_channels = out_channels
        self.channels = ch
        self.start = _GeneratorStart(spatial_dims, latent_size, ch[0], start_size, out_channels)
        self.blocks = nn.ModuleList(
            [_GeneratorBlock(spatial_dims, ch[s - 1], ch[s], out_channels, 0) for s in range(1, len(ch))]
        )
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")

    def multi_scale(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The images of every block, coarse to fine (see the class docstring for shapes)."""
        h = self.start(z)
        images = [self.start.to_rgb(h)]
        for block in self.blocks:
            h = block(self.upsample(h))
            images.append(block.to_rgb(h))
        return images

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.multi_scale(z)[-1]


class _Combine(nn.Module):
    """``phi(image, features)`` of one discriminator block (see the module docstring)."""

    def __init__(self, spatial_dims: int, mode: str, image_channels: int, channels: int) -> None:
        super().__init__()
        self.mode = mode
        self.linear: nn.Module = nn.Identity()
        if mode == "simple":
            self.out_channels = channels + image_channels
        elif mode == "lin_cat":
            # r' maps the image to as many channels as the features (a choice: the paper leaves the width open)
            self.linear = EqualizedConv(spatial_dims, image_channels, channels, 1)
            self.out_channels = 2 * channels
        else:  # cat_lin
            self.linear = EqualizedConv(spatial_dims, channels + image_channels, channels, 1)
            self.out_channels = channels

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.mode == "simple":
            return torch.cat([image.to(features.dtype), features], dim=1)
        if self.mode == "lin_cat":
            return torch.cat([self.linear(image.to(features.dtype)), features], dim=1)
        return self.linear(torch.cat([image.to(features.dtype), features], dim=1))


class MSGGANDiscriminator(nn.Module):
    """MSG-GAN discriminator: ProGAN's discriminator at full size, fed the image of every resolution.

    Per resolution ``r_s`` from the finest to ``2 * start_size``: (``fromRGB`` at the finest, ``phi`` at the others)
    -> conv 3x3 -> leaky ReLU -> conv 3x3 -> leaky ReLU -> 2x average pooling; at ``start_size``: ``phi`` ->
    minibatch standard deviation -> conv 3x3 -> conv ``start_size`` (valid) -> dense to one score.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        image_size: the finest input size.
        start_size: the coarsest input size (4).
        channels: feature channels per resolution (as the generator's); default from ``fmap_base``/``fmap_max``.
        fmap_base: see :func:`~common.networks.progressive_channels`.
        fmap_max: see :func:`~common.networks.progressive_channels`.
        combine: the combine function ``phi``: ``"simple"`` (default), ``"lin_cat"`` or ``"cat_lin"``.
        group_size: minibatch standard deviation group size (4).

    Shapes:
        ``forward(images)``: a list (or tuple) of ``(B, in_channels, *[r] * spatial_dims)`` for ``r`` in
        :attr:`resolutions`, coarse to fine (as :meth:`MSGGANGenerator.multi_scale` returns them) -> ``(B, 1)``.
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
        combine: str = "simple",
        group_size: int = 4,
    ) -> None:
        super().__init__()
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}.")
        self.resolutions = progressive_resolutions(image_size, start_size)
        n = len(self.resolutions)
        ch = _stage_channels(n, channels, fmap_base, fmap_max)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.channels = ch
        self.combine = combine
        self.from_rgb = nn.Sequential(EqualizedConv(spatial_dims, in_channels, ch[-1], 1), nn.LeakyReLU(0.2))
        # phi of resolution s (0 .. n-2); the finest image enters through fromRGB instead
        self.combines = nn.ModuleList([_Combine(spatial_dims, combine, in_channels, ch[s]) for s in range(n - 1)])
        blocks = []
        for s in range(n - 1, 0, -1):  # finest first, the order of the forward pass
            c_in = ch[s] if s == n - 1 else self.combines[s].out_channels
            blocks.append(
                nn.Sequential(
                    EqualizedConv(spatial_dims, c_in, ch[s], 3),
                    nn.LeakyReLU(0.2),
                    EqualizedConv(spatial_dims, ch[s], ch[s - 1], 3),
                    nn.LeakyReLU(0.2),
                    Pool[Pool.AVG, spatial_dims](kernel_size=2),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        c_end = self.combines[0].out_channels if n > 1 else ch[0]
        self.end = nn.Sequential(
            MinibatchStdDev(group_size),
            EqualizedConv(spatial_dims, c_end + 1, ch[0], 3),
            nn.LeakyReLU(0.2),
            EqualizedConv(spatial_dims, ch[0], ch[0], start_size, padding=0),
            nn.LeakyReLU(0.2),
        )
        self.dense = EqualizedLinear(ch[0], 1, gain=1.0)

    def forward(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        n = len(self.resolutions)
        if len(images) != n:
            raise ValueError(f"the discriminator takes {n} images (resolutions {self.resolutions}), got {len(images)}.")
        for x, r in zip(images, self.resolutions):
            if list(x.shape[2:]) != [r] * self.spatial_dims:
                raise ValueError(f"expected an image of size {r} per axis, got shape {tuple(x.shape)}.")
        h = self.from_rgb(images[-1])
        for j, block in enumerate(self.blocks):
            s = n - 1 - j
            if s != n - 1:
                h = self.combines[s](images[s], h)
            h = block(h)
        if n > 1:
            h = self.combines[0](images[0], h)
        return self.dense(self.end(h).flatten(1))
