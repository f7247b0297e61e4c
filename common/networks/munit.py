"""MUNIT: multimodal unsupervised image-to-image translation (Huang et al. 2018), in 2D and 3D.

Han's thesis (sec. 4.2.3) refines PGGAN-generated brain MR slices toward the real image distribution with MUNIT: the
synthetic images are domain A, the real images of the same class domain B, and the refined image is the A -> B
translation. The networks follow the MUNIT paper (sec. 3 and appendix B):

- content encoder: ``c7s1-64, d128, d256, R256 x 4`` (instance norm, ReLU, reflection padding); the content code is
  a feature map at 1/4 of the image size;
- style encoder: ``c7s1-64, d128, d256, d256, d256``, global average pooling and a fully connected layer to the
  8-dimensional style code; no normalisation (it would remove the style information);
- decoder: ``R256 x 4`` residual blocks with adaptive instance normalisation (AdaIN) whose per-channel scale and
  shift come from a 3-layer MLP (256 units, ReLU) of the style code, then ``u128, u64`` (nearest upsampling x2 and a
  5x5 convolution with layer norm), and ``c7s1-C`` with tanh;
- discriminator: multi-scale (3 scales: the image and its 2x and 4x average-pooled versions), each a 4x4 stride-2
  ``d64-d128-d256-d512`` stack with LeakyReLU(0.2) and a 1x1 convolution to one logit per patch (LSGAN).

``d<k>``: 4x4 convolution with stride 2 and ``k`` filters; ``R<k>``: residual block of two 3x3 convolutions;
``c7s1-<k>``: 7x7 convolution, stride 1. Layer norm over ``(C, *spatial)`` with a per-channel affine is
:class:`torch.nn.GroupNorm` with one group. Every layer is built with MONAI's factories from ``spatial_dims``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Act, Conv, Norm, Pool

__all__ = [
    "AdaptiveInstanceNorm",
    "MUNIT",
    "MUNITContentEncoder",
    "MUNITDecoder",
    "MUNITGenerator",
    "MUNITStyleEncoder",
    "MultiScaleDiscriminator",
]


def _conv(spatial_dims: int, cin: int, cout: int, kernel: int, stride: int = 1, pad: bool = True) -> nn.Module:
    conv_type = Conv[Conv.CONV, spatial_dims]
    padding = (kernel - 1) // 2 if pad else 0
    mode = "reflect" if padding > 0 else "zeros"
    return conv_type(cin, cout, kernel, stride=stride, padding=padding, padding_mode=mode)


def _conv_block(spatial_dims: int, cin: int, cout: int, kernel: int, stride: int, norm: str | None) -> nn.Sequential:
    """Convolution (reflection padding), optional instance or layer norm, ReLU."""
    layers: list[nn.Module] = [_conv(spatial_dims, cin, cout, kernel, stride)]
    if norm == "instance":
        layers.append(Norm[Norm.INSTANCE, spatial_dims](cout, affine=False))
    elif norm == "layer":
        layers.append(nn.GroupNorm(1, cout))
    layers.append(Act[Act.RELU](inplace=True))
    return nn.Sequential(*layers)


class AdaptiveInstanceNorm(nn.Module):
    """Adaptive instance normalisation (Huang & Belongie 2017; MUNIT eq. 7): ``gamma * (x - mu(x)) / sigma(x) + beta``.

    ``mu`` and ``sigma`` are the mean and (biased) standard deviation of each channel of each sample over the spatial
    dimensions; ``gamma`` and ``beta`` are given per sample and channel (by the MLP of the style code).

    The normalisation is an ``nn.InstanceNorm{2,3}d`` submodule without parameters or running statistics (nothing
    in the ``state_dict``), so that a training step's ``conv_algorithm: auto`` computes it by the group-norm kernel
    like the encoders' instance norms (:mod:`common.networks.blocks.instance_norm_kernel`).

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance.
        spatial_dims: 2 or 3 (the input's spatial dimensions).

    Shapes:
        ``x``: ``(B, C, *spatial)``; ``gamma``, ``beta``: ``(B, C)``; output like ``x``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, spatial_dims: int = 2) -> None:
        super().__init__()
        self.num_features = num_features
        self.norm = Norm[Norm.INSTANCE, spatial_dims](num_features, eps=eps, affine=False)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        normalised = self.norm(x)
        shape = [x.shape[0], x.shape[1]] + [1] * (x.dim() - 2)
        return normalised * gamma.reshape(shape) + beta.reshape(shape)


class _ResBlock(nn.Module):
    """Residual block of two 3x3 convolutions with instance norm (content encoder)."""

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(spatial_dims, channels, channels, 3, 1, "instance"),
            _conv(spatial_dims, channels, channels, 3),
            Norm[Norm.INSTANCE, spatial_dims](channels, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _AdaINResBlock(nn.Module):
    """Residual block of two 3x3 convolutions with AdaIN; takes its ``4 C`` AdaIN parameters ``(B, 4 C)``."""

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_adain_params = 4 * channels
        self.conv1 = _conv(spatial_dims, channels, channels, 3)
        self.norm1 = AdaptiveInstanceNorm(channels, spatial_dims=spatial_dims)
        self.conv2 = _conv(spatial_dims, channels, channels, 3)
        self.norm2 = AdaptiveInstanceNorm(channels, spatial_dims=spatial_dims)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        c = self.channels
        # MUNIT's MLP outputs the AdaIN bias first, then the scale, for each layer
        h = F.relu(self.norm1(self.conv1(x), params[:, c : 2 * c], params[:, :c]))
        h = self.norm2(self.conv2(h), params[:, 3 * c : 4 * c], params[:, 2 * c : 3 * c])
        return x + h


class MUNITContentEncoder(nn.Module):
    """Content encoder: ``c7s1-base``, ``num_downsample`` x ``d(2^i base)``, ``num_res_blocks`` residual blocks.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        base_channels: channels of the first convolution (64).
        num_downsample: stride-2 convolutions (2), each doubling the channels.
        num_res_blocks: residual blocks at the lowest resolution (4).

    Shapes:
        ``(B, in_channels, *spatial)`` -> content ``(B, base * 2^num_downsample, *spatial / 2^num_downsample)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_channels: int = 64,
        num_downsample: int = 2,
        num_res_blocks: int = 4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_block(spatial_dims, in_channels, base_channels, 7, 1, "instance")]
        ch = base_channels
        for _ in range(num_downsample):
            layers.append(_conv_block(spatial_dims, ch, 2 * ch, 4, 2, "instance"))
            ch *= 2
        layers += [_ResBlock(spatial_dims, ch) for _ in range(num_res_blocks)]
        self.model = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MUNITStyleEncoder(nn.Module):
    """Style encoder: ``c7s1-base``, ``num_downsample`` stride-2 convolutions (channels doubled for the first two),
    global average pooling and a linear layer (1x1 convolution) to the style code; no normalisation.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        style_dim: length of the style code (8).
        base_channels: channels of the first convolution (64).
        num_downsample: stride-2 convolutions (4).

    Shapes:
        ``(B, in_channels, *spatial)`` -> style ``(B, style_dim)``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, style_dim: int = 8, base_channels: int = 64, num_downsample: int = 4
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_block(spatial_dims, in_channels, base_channels, 7, 1, None)]
        ch = base_channels
        for i in range(num_downsample):
            out = 2 * ch if i < 2 else ch
            layers.append(_conv_block(spatial_dims, ch, out, 4, 2, None))
            ch = out
        layers.append(Pool[Pool.ADAPTIVEAVG, spatial_dims](1))
        layers.append(Conv[Conv.CONV, spatial_dims](ch, style_dim, 1))
        self.model = nn.Sequential(*layers)
        self.style_dim = style_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)


class MUNITDecoder(nn.Module):
    """Decoder: AdaIN residual blocks (parameters from an MLP of the style code), upsampling, ``c7s1`` and tanh.

    Args:
        spatial_dims: 2 or 3.
        out_channels: image channels.
        content_channels: channels of the content code (``base * 2^num_upsample``).
        style_dim: length of the style code.
        num_upsample: nearest x2 upsampling + 5x5 convolution + layer norm + ReLU steps, each halving the channels.
        num_res_blocks: AdaIN residual blocks (4).
        mlp_dim: hidden units of the 3-layer style MLP (256).

    Shapes:
        content ``(B, content_channels, *s)`` and style ``(B, style_dim)`` -> image ``(B, out_channels, *s * 2^up)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        content_channels: int = 256,
        style_dim: int = 8,
        num_upsample: int = 2,
        num_res_blocks: int = 4,
        mlp_dim: int = 256,
    ) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList([_AdaINResBlock(spatial_dims, content_channels) for _ in range(num_res_blocks)])
        self.num_adain_params = sum(b.num_adain_params for b in self.res_blocks)
        self.mlp = nn.Sequential(
            nn.Linear(style_dim, mlp_dim),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_dim, mlp_dim),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_dim, self.num_adain_params),
        )
        layers: list[nn.Module] = []
        ch = content_channels
        for _ in range(num_upsample):
            layers += [
                nn.Upsample(scale_factor=2.0, mode="nearest"),
                _conv_block(spatial_dims, ch, ch // 2, 5, 1, "layer"),
            ]
            ch //= 2
        layers += [_conv(spatial_dims, ch, out_channels, 7), nn.Tanh()]
        self.upsample = nn.Sequential(*layers)

    def adain_params(self, style: torch.Tensor) -> torch.Tensor:
        """The AdaIN parameters ``(B, num_adain_params)`` of a style code ``(B, style_dim)``."""
        return self.mlp(style.flatten(1))

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        params = self.adain_params(style)
        offset = 0
        x = content
        for block in self.res_blocks:
            n = block.num_adain_params
            x = block(x, params[:, offset : offset + n])
            offset += n
        return self.upsample(x)


class MUNITGenerator(nn.Module):
    """One domain's auto-encoder of MUNIT: content encoder, style encoder and AdaIN decoder.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        base_channels: channels of the first convolutions (64).
        style_dim: length of the style code (8).
        num_downsample: content encoder downsamplings = decoder upsamplings (2).
        num_res_blocks: residual blocks of the content encoder and the decoder (4).
        style_downsample: stride-2 convolutions of the style encoder (4).
        mlp_dim: hidden units of the style MLP (256).

    Shapes:
        ``forward``: ``(B, C, *spatial)`` -> reconstruction of the same shape; spatial sizes must be divisible by
        ``2^num_downsample``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_channels: int = 64,
        style_dim: int = 8,
        num_downsample: int = 2,
        num_res_blocks: int = 4,
        style_downsample: int = 4,
        mlp_dim: int = 256,
    ) -> None:
        super().__init__()
        self.style_dim = style_dim
        self.enc_content = MUNITContentEncoder(spatial_dims, in_channels, base_channels, num_downsample, num_res_blocks)
        self.enc_style = MUNITStyleEncoder(spatial_dims, in_channels, style_dim, base_channels, style_downsample)
        self.dec = MUNITDecoder(
            spatial_dims, in_channels, self.enc_content.out_channels, style_dim, num_downsample, num_res_blocks, mlp_dim
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Content ``(B, C', *spatial')`` and style ``(B, style_dim)`` codes of images."""
        return self.enc_content(x), self.enc_style(x)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Image from a content and a style code."""
        return self.dec(content, style)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        content, style = self.encode(x)
        return self.decode(content, style)


class MUNIT(nn.Module):
    """The two auto-encoders of MUNIT and the A -> B translation used as the refiner (Han, sec. 4.2.3).

    ``forward(image)`` translates domain A (synthetic) images to domain B (real) with one fixed style code, the
    registered buffer ``fixed_style`` ``(1, style_dim)`` drawn from ``N(0, I)`` with ``style_seed`` at construction
    and stored in the state dict, so that the exported network (TorchScript) is deterministic. :meth:`translate`
    takes any style code (e.g. a fresh sample per image, MUNIT's multimodal output).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (both domains).
        style_seed: seed of ``fixed_style``.
        other args: see :class:`MUNITGenerator`.

    Shapes:
        ``(B, C, *spatial)`` -> ``(B, C, *spatial)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_channels: int = 64,
        style_dim: int = 8,
        num_downsample: int = 2,
        num_res_blocks: int = 4,
        style_downsample: int = 4,
        mlp_dim: int = 256,
        style_seed: int = 0,
    ) -> None:
        super().__init__()
        args = (spatial_dims, in_channels, base_channels, style_dim, num_downsample, num_res_blocks)
        self.gen_a = MUNITGenerator(*args, style_downsample=style_downsample, mlp_dim=mlp_dim)
        self.gen_b = MUNITGenerator(*args, style_downsample=style_downsample, mlp_dim=mlp_dim)
        self.style_dim = style_dim
        style = torch.randn(1, style_dim, generator=torch.Generator().manual_seed(int(style_seed)))
        self.register_buffer("fixed_style", style)

    def translate(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """A -> B: domain B's decoder on the content of ``x`` with the style code ``style`` ``(B or 1, style_dim)``."""
        return self.gen_b.dec(self.gen_a.enc_content(x), style.expand(x.shape[0], -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.translate(x, self.fixed_style)


class _ScaleDiscriminator(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, base_channels: int, num_layers: int) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = []
        ch_in, ch = in_channels, base_channels
        for _ in range(num_layers):
            layers += [conv(ch_in, ch, 4, stride=2, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.2, inplace=True)]
            ch_in, ch = ch, ch * 2
        layers.append(conv(ch_in, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MultiScaleDiscriminator(nn.Module):
    """MUNIT's multi-scale PatchGAN discriminator (LSGAN outputs, no normalisation).

    Scale ``i`` sees the image average-pooled ``i`` times (3x3, stride 2, padding 1, padding excluded from the mean).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        base_channels: channels of the first convolution (64), doubled at each layer.
        num_layers: stride-2 4x4 convolutions per scale (4).
        num_scales: number of scales (3).

    Shapes:
        ``(B, C, *spatial)`` -> a list of ``num_scales`` patch-logit maps ``(B, 1, *spatial / 2^(num_layers + i))``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, base_channels: int = 64, num_layers: int = 4, num_scales: int = 3
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            [_ScaleDiscriminator(spatial_dims, in_channels, base_channels, num_layers) for _ in range(num_scales)]
        )
        self.downsample = Pool[Pool.AVG, spatial_dims](3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for scale in self.scales:
            outputs.append(scale(x))
            x = self.downsample(x)
        return outputs


def munit_content_size(spatial_size: Sequence[int], num_downsample: int = 2) -> tuple[int, ...]:
    """Spatial size of the content code of an image of ``spatial_size``."""
    return tuple(int(s) // (2**num_downsample) for s in spatial_size)
