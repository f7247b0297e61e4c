"""StyleGAN2 generator and discriminator, 2D and 3D, with the mask conditioning of C-SG (paper 004, sec. 3.2).

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", sec. 2 and 4, appendix B,
config F); the 3D form follows 3D-StyleGAN (Hong et al. 2021): the same layers with 3D convolutions.

- :class:`MappingNetwork`: ``z`` -> pixel norm -> ``mapping_layers`` equalised fully connected layers (learning-rate
  multiplier 0.01, leaky ReLU) -> ``w``; keeps the running mean ``w_avg`` in train mode and applies the truncation
  trick ``w' = w_avg + psi * (w - w_avg)`` on the first ``truncation_cutoff`` style vectors (all by default).
- Synthesis (:class:`StyleGAN2Generator`): a learned constant at the start resolution, one modulated 3x3
  convolution there and two per later resolution (the first upsamples by a transposed convolution and the
  ``[1, 3, 3, 1]`` FIR filter), per-pixel noise after each, bias and leaky ReLU (0.2, gain ``sqrt(2)``); skip
  architecture (sec. 4.1, Fig. 7b): a ``toRGB`` per resolution, summed with the FIR-upsampled image so far.
  ``num_ws = 2 * k + 2`` style vectors for ``k`` doublings (the convolutions and the last ``toRGB``; each ``toRGB``
  shares the style of the next block's first convolution, as in StyleGAN2).
- :class:`StyleGAN2Discriminator`: residual architecture (sec. 4.1, Fig. 7c): ``fromRGB`` at the full resolution,
  then per resolution a block ``conv 3x3 -> conv 3x3 with FIR downsampling`` plus a ``1x1`` FIR-downsampled skip,
  summed and multiplied by ``1 / sqrt(2)``; at the start resolution minibatch standard deviation (group 4, one
  channel), a 3x3 convolution, a fully connected layer and a last one to one logit.

Channels per resolution ``r``: ``min(channel_base // r, channel_max)`` (StyleGAN2: 16384 and 512). Equalised
learning rate in every layer (weights ``N(0, 1)``, scaled by ``1 / sqrt(fan_in)`` at run time).

Sizes: every axis of ``image_size`` must be a multiple of ``2**k``, with ``k`` such that the smallest axis is
``start_size * 2**k``; the start shape is ``image_size // 2**k`` (anisotropic 3D volumes keep their aspect ratio).
The channel rule's ``r`` is the size along the first spatial axis at that level.

C-SG (paper 004, sec. 3.2, Fig. 2), ``condition_channels = K > 0``: the condition is the one-hot label mask
``(B, K, *image_size)`` in ``[0, 1]``. In the generator the mask, resampled to each layer's resolution, is
concatenated with the output of every weight-demodulated convolution (Fig. 2f), so that every following modulated
convolution and every ``toRGB`` takes ``K`` more input channels. The concatenation follows the layer's noise, bias
and activation (the layer's output), so that the mask reaches the next convolution unchanged rather than with
learned noise and bias added to it. In the discriminator the mask is concatenated with the image before
``fromRGB`` (Fig. 2b) and, resampled, with the input of every residual block (Fig. 2d; both of its paths take it).

The mask is resampled by area averaging (average pooling by ``2**j`` from the full resolution, ``mode="area"``):
each coarse cell then holds the fraction of each class inside it, the one-hot channels still sum to one, and a
lesion smaller than a cell still leaves a trace, where nearest-neighbour subsampling would drop or keep it by
chance of alignment; it is also the low-pass resampling that the discriminator applies to the image (box
instead of the ``[1, 3, 3, 1]`` filter, which would spread the mask across borders). Paper 004 does not name its
resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks.progressive import EqualizedConv, EqualizedLinear, MinibatchStdDev, PixelNorm
from .blocks.stylegan2 import FIRResample, ModulatedConv, NoiseInjection, ScaledLeakyReLU, ToRGB

__all__ = ["MappingNetwork", "StyleGAN2Discriminator", "StyleGAN2Generator", "stylegan2_shapes"]


def stylegan2_shapes(image_size: int | Sequence[int], spatial_dims: int, start_size: int = 4) -> list[list[int]]:
    """Spatial shapes of the resolutions, from the start shape to ``image_size`` (each twice the previous).

    Args:
        image_size: the output size, one int for every axis or one per axis.
        spatial_dims: 1, 2 or 3.
        start_size: size of the smallest axis at the start resolution (StyleGAN2: 4).

    Raises:
        ValueError: when the smallest axis is not ``start_size * 2**k`` or another axis is not a multiple of ``2**k``.
    """
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
    size = [int(image_size)] * spatial_dims if isinstance(image_size, int) else [int(s) for s in image_size]
    if len(size) != spatial_dims:
        raise ValueError(f"image_size needs {spatial_dims} values (one per spatial axis), got {list(size)}.")
    ratio = min(size) / start_size if start_size >= 1 else 0.0
    k = round(math.log2(ratio)) if ratio >= 1 else -1
    if k < 0 or ratio != 2 ** k or any(s % 2**k != 0 for s in size):
        raise ValueError(
            f"image_size {size} does not fit start_size {start_size}: the smallest axis must be start_size * 2**k "
            f"and every axis a multiple of 2**k (e.g. 4, 8, ..., 256 with start_size 4)."
        )
    return [[s // 2 ** (k - j) for s in size] for j in range(k + 1)]


def _channels(shape: Sequence[int], channel_base: int, channel_max: int) -> int:
    """StyleGAN2's feature maps at a resolution: ``min(channel_base // r, channel_max)``, ``r`` along the first axis."""
    return max(1, min(channel_base // int(shape[0]), channel_max))


def _resample_condition(condition: torch.Tensor, shape: List[int]) -> torch.Tensor:
    """The mask area-averaged to ``shape`` (the module docstring says why)."""
    if list(condition.shape[2:]) == shape:
        return condition
    return F.interpolate(condition, size=shape, mode="area")


def _check_condition(condition: Optional[torch.Tensor], condition_channels: int, ndim: int) -> None:
    if condition_channels > 0:
        if condition is None:
            raise ValueError(f"this network is conditional (C-SG): give the mask ({condition_channels} channels).")
        if condition.dim() != ndim or condition.shape[1] != condition_channels:
            raise ValueError(f"the condition must be (B, {condition_channels}, *spatial), got {list(condition.shape)}.")
    elif condition is not None:
        raise ValueError("this network has condition_channels=0: do not give a condition.")


class MappingNetwork(nn.Module):
    """StyleGAN2's mapping network with the running mean of ``w`` and the truncation trick.

    Args:
        latent_dim: length of ``z``.
        style_dim: length of ``w``.
        num_ws: style vectors to broadcast ``w`` to (the synthesis network's ``num_ws``).
        num_layers: fully connected layers (8).
        lr_multiplier: learning-rate multiplier of the layers (0.01, appendix B).
        w_avg_beta: decay of the running mean ``w_avg`` (0.995), updated at every call in train mode.

    Shapes:
        ``forward(z, truncation_psi=1, truncation_cutoff=None)``: ``z`` ``(B, latent_dim)``; output
        ``(B, num_ws, style_dim)``.
    """

    def __init__(
        self,
        latent_dim: int,
        style_dim: int,
        num_ws: int,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the mapping network needs at least one layer, got {num_layers}.")
        self.num_ws = num_ws
        self.w_avg_beta = float(w_avg_beta)
        layers: list[nn.Module] = [PixelNorm()]
        for i in range(num_layers):
            layers += [
                EqualizedLinear(latent_dim if i == 0 else style_dim, style_dim, 1.0, lr_multiplier=lr_multiplier),
                ScaledLeakyReLU(),
            ]
        self.net = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(style_dim))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None
    ) -> torch.Tensor:
        w = self.net(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1.0:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            head = self.w_avg.to(ws.dtype).lerp(ws[:, :cutoff], truncation_psi)
            ws = torch.cat([head, ws[:, cutoff:]], dim=1)
        return ws


class _SynthesisLayer(nn.Module):
    """Modulated (and demodulated) convolution, noise, bias, leaky ReLU; ``(B, C_in, *S) -> (B, C_out, *S * up)``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        style_dim: int,
        shape: Sequence[int],
        up: int,
        resample_filter: Sequence[int],
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv(
            spatial_dims, in_channels, out_channels, 3, style_dim, up=up, resample_filter=resample_filter
        )
        self.noise = NoiseInjection(shape)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.bias_shape = [1, out_channels] + [1] * spatial_dims
        self.act = ScaledLeakyReLU()

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = self.noise(self.conv(x, w), noise_mode)
        return self.act(x + self.bias.reshape(self.bias_shape).to(x.dtype))


class _SynthesisBlock(nn.Module):
    """One doubling of the resolution: two synthesis layers (the first upsamples), its ``toRGB`` and the skip sum."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        image_channels: int,
        condition_channels: int,
        style_dim: int,
        shape: Sequence[int],
        resample_filter: Sequence[int],
    ) -> None:
        super().__init__()
        k = condition_channels
        self.shape = [int(s) for s in shape]
        self.condition_channels = k
        self.conv0 = _SynthesisLayer(spatial_dims, in_channels + k, out_channels, style_dim, shape, 2, resample_filter)
        self.conv1 = _SynthesisLayer(spatial_dims, out_channels + k, out_channels, style_dim, shape, 1, resample_filter)
        self.to_rgb = ToRGB(spatial_dims, out_channels + k, image_channels, style_dim)
        self.upsample = FIRResample(resample_filter, up=2)

    def forward(
        self, x: torch.Tensor, image: torch.Tensor, ws: torch.Tensor, condition: Optional[torch.Tensor], noise_mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: features with the mask of the previous resolution; ``ws``: ``(B, 3, style_dim)``."""
        mask: Optional[torch.Tensor] = None
        if condition is not None:
            mask = _resample_condition(condition.to(x.dtype), self.shape)
        x = self.conv0(x, ws[:, 0], noise_mode)
        if mask is not None:
            x = torch.cat([x, mask], dim=1)
        x = self.conv1(x, ws[:, 1], noise_mode)
        if mask is not None:
            x = torch.cat([x, mask], dim=1)
        image = self.upsample(image) + self.to_rgb(x, ws[:, 2])
        return x, image


class _SynthesisNetwork(nn.Module):
    """``ws`` (and the mask) -> image: the synthesis part of :class:`StyleGAN2Generator`."""

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        shapes: Sequence[Sequence[int]],
        channels: Sequence[int],
        style_dim: int,
        condition_channels: int,
        resample_filter: Sequence[int],
    ) -> None:
        super().__init__()
        k = condition_channels
        self.condition_channels = k
        self.spatial_dims = spatial_dims
        self.num_ws = 2 * len(shapes)
        self.start_shape = [int(s) for s in shapes[0]]
        self.const = nn.Parameter(torch.randn([channels[0]] + self.start_shape))
        self.start_conv = _SynthesisLayer(
            spatial_dims, channels[0], channels[0], style_dim, shapes[0], 1, resample_filter
        )
        self.start_to_rgb = ToRGB(spatial_dims, channels[0] + k, out_channels, style_dim)
        self.blocks = nn.ModuleList(
            [
                _SynthesisBlock(
                    spatial_dims, channels[j - 1], channels[j], out_channels, k, style_dim, shapes[j], resample_filter
                )
                for j in range(1, len(shapes))
            ]
        )

    def forward(self, ws: torch.Tensor, condition: Optional[torch.Tensor], noise_mode: str) -> torch.Tensor:
        if not torch.jit.is_tracing() and (ws.dim() != 3 or ws.shape[1] != self.num_ws):  # a constant in a trace
            raise ValueError(f"ws must be (B, {self.num_ws}, style_dim), got {list(ws.shape)}.")
        _check_condition(condition, self.condition_channels, self.spatial_dims + 2)
        x = self.const.unsqueeze(0).repeat([ws.shape[0]] + [1] * (self.spatial_dims + 1)).to(ws.dtype)
        x = self.start_conv(x, ws[:, 0], noise_mode)
        if condition is not None:
            x = torch.cat([x, _resample_condition(condition.to(x.dtype), self.start_shape)], dim=1)
        image = self.start_to_rgb(x, ws[:, 1])
        index = 1
        for block in self.blocks:
            x, image = block(x, image, ws[:, index : index + 3], condition, noise_mode)
            index += 2
        return image


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (mapping and skip synthesis networks); B-SG, M-SG and, with a mask condition, C-SG.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        out_channels: generated channels (B-SG: image channels + one-hot mask channels; M-SG: the mask channels;
            C-SG: the image channels).
        image_size: output size, an int for every axis or one per axis (see the module docstring).
        latent_dim: length of ``z`` (512).
        style_dim: length of ``w`` (512).
        mapping_layers: layers of the mapping network (8).
        mapping_lr_multiplier: their learning-rate multiplier (0.01).
        channel_base: ``channel_base // r`` feature maps at resolution ``r`` (16384) ...
        channel_max: ... at most ``channel_max`` (512).
        start_size: smallest axis of the learned constant (4).
        condition_channels: C-SG's mask channels ``K`` (0: unconditional).
        resample_filter: FIR filter of the upsampling (``[1, 3, 3, 1]``).
        w_avg_beta: decay of the running mean of ``w`` (0.995).

    Attributes:
        num_ws: number of style vectors the synthesis takes (for style mixing).
        w_avg: running mean of ``w``, ``(style_dim,)`` (a buffer of the mapping network).

    Shapes:
        ``forward(z, condition=None, truncation_psi=1, truncation_cutoff=None, noise_mode="random")``: ``z``
        ``(B, latent_dim)``, ``condition`` ``(B, K, *image_size)`` in ``[0, 1]`` (required iff ``K > 0``); output
        ``(B, out_channels, *image_size)``, linear (real data scaled to ``[-1, 1]``).
    """

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        image_size: int | Sequence[int],
        latent_dim: int = 512,
        style_dim: int = 512,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        channel_base: int = 16384,
        channel_max: int = 512,
        start_size: int = 4,
        condition_channels: int = 0,
        resample_filter: Sequence[int] = (1, 3, 3, 1),
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if condition_channels < 0:
            raise ValueError(f"condition_channels must be >= 0, got {condition_channels}.")
        shapes = stylegan2_shapes(image_size, spatial_dims, start_size)
        self.spatial_dims = spatial_dims
        self.out_channels = out_channels
        self.image_size = shapes[-1]
        self.latent_dim = latent_dim
        self.style_dim = style_dim
        self.condition_channels = condition_channels
        self.channels = [_channels(s, channel_base, channel_max) for s in shapes]
        self.synthesis_network = _SynthesisNetwork(
            spatial_dims, out_channels, shapes, self.channels, style_dim, condition_channels, resample_filter
        )
        self.num_ws = self.synthesis_network.num_ws
        self.mapping_network = MappingNetwork(
            latent_dim, style_dim, self.num_ws, mapping_layers, mapping_lr_multiplier, w_avg_beta
        )

    @property
    def w_avg(self) -> torch.Tensor:
        """Running mean of ``w`` ``(style_dim,)``, tracked by :meth:`mapping` in train mode."""
        return self.mapping_network.w_avg

    def mapping(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None
    ) -> torch.Tensor:
        """``z`` ``(B, latent_dim)`` -> ``ws`` ``(B, num_ws, style_dim)``, truncated towards ``w_avg`` by ``psi``."""
        return self.mapping_network(z, truncation_psi, truncation_cutoff)

    def synthesis(
        self, ws: torch.Tensor, condition: Optional[torch.Tensor] = None, noise_mode: str = "random"
    ) -> torch.Tensor:
        """``ws`` ``(B, num_ws, style_dim)`` (and the mask) -> image ``(B, out_channels, *image_size)``.

        ``noise_mode``: ``"random"``, ``"const"`` (deterministic) or ``"none"`` (others raise ``ValueError``).
        """
        return self.synthesis_network(ws, condition, noise_mode)

    def forward(
        self,
        z: torch.Tensor,
        condition: Optional[torch.Tensor] = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: Optional[int] = None,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), condition, noise_mode)


class _DiscriminatorBlock(nn.Module):
    """Residual block (Fig. 7c): ``conv 3x3 -> FIR blur -> conv 3x3 stride 2``, plus ``FIR down -> conv 1x1``,
    summed and scaled by ``1 / sqrt(2)``; ``(B, C_in (+K), *S) -> (B, C_out, *S / 2)``."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, resample_filter: Sequence[int]) -> None:
        super().__init__()
        taps = len(resample_filter)
        # blur then a 3x3 convolution with stride 2 ("valid"): L + pad - taps + 1 = L + 1 samples, then L / 2
        blur_pad = (taps - 2 + 1) // 2 + 1, (taps - 2) // 2 + 1
        self.conv0 = nn.Sequential(
            EqualizedConv(spatial_dims, in_channels, in_channels, 3, gain=1.0), ScaledLeakyReLU()
        )
        self.conv1 = nn.Sequential(
            FIRResample(resample_filter, padding=blur_pad),
            EqualizedConv(spatial_dims, in_channels, out_channels, 3, padding=0, gain=1.0, stride=2),
            ScaledLeakyReLU(),
        )
        self.skip = nn.Sequential(
            FIRResample(resample_filter, down=2),
            EqualizedConv(spatial_dims, in_channels, out_channels, 1, gain=1.0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator; with ``condition_channels > 0`` the C-SG discriminator (paper 004, Fig. 2).

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: channels of the judged images (the generator's ``out_channels``).
        image_size: input size, as the generator's.
        channel_base: see :class:`StyleGAN2Generator`.
        channel_max: see :class:`StyleGAN2Generator`.
        condition_channels: C-SG's mask channels ``K`` (0: unconditional).
        mbstd_group_size: minibatch standard deviation group (4).
        mbstd_num_channels: its extra channels (1).
        resample_filter: FIR filter of the downsampling (``[1, 3, 3, 1]``).
        start_size: smallest axis at the last block (4), as the generator's.

    Shapes:
        ``forward(x, condition=None)``: ``x`` ``(B, in_channels, *image_size)``, ``condition``
        ``(B, K, *image_size)`` in ``[0, 1]`` (required iff ``K > 0``); output ``(B, 1)`` logits.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        image_size: int | Sequence[int],
        channel_base: int = 16384,
        channel_max: int = 512,
        condition_channels: int = 0,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        resample_filter: Sequence[int] = (1, 3, 3, 1),
        start_size: int = 4,
    ) -> None:
        super().__init__()
        if condition_channels < 0:
            raise ValueError(f"condition_channels must be >= 0, got {condition_channels}.")
        shapes = stylegan2_shapes(image_size, spatial_dims, start_size)[::-1]  # full resolution first
        ch = [_channels(s, channel_base, channel_max) for s in shapes]
        k = condition_channels
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.condition_channels = k
        self.image_size = shapes[0]
        self.block_shapes = [list(s) for s in shapes[:-1]]
        self.from_rgb = nn.Sequential(
            EqualizedConv(spatial_dims, in_channels + k, ch[0], 1, gain=1.0), ScaledLeakyReLU()
        )
        self.blocks = nn.ModuleList(
            [_DiscriminatorBlock(spatial_dims, ch[j] + k, ch[j + 1], resample_filter) for j in range(len(shapes) - 1)]
        )
        end = ch[-1]
        self.mbstd = MinibatchStdDev(mbstd_group_size, num_channels=mbstd_num_channels)
        self.conv = nn.Sequential(
            EqualizedConv(spatial_dims, end + mbstd_num_channels, end, 3, gain=1.0), ScaledLeakyReLU()
        )
        self.fc = nn.Sequential(EqualizedLinear(end * math.prod(shapes[-1]), end, gain=1.0), ScaledLeakyReLU())
        self.out = EqualizedLinear(end, 1, gain=1.0)

    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        _check_condition(condition, self.condition_channels, self.spatial_dims + 2)
        if condition is not None:
            x = torch.cat([x, _resample_condition(condition.to(x.dtype), list(x.shape[2:]))], dim=1)
        h = self.from_rgb(x)
        for j, block in enumerate(self.blocks):
            if condition is not None:
                h = torch.cat([h, _resample_condition(condition.to(h.dtype), self.block_shapes[j])], dim=1)
            h = block(h)
        h = self.conv(self.mbstd(h))
        return self.out(self.fc(h.flatten(1)))
