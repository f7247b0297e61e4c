"""Layers of progressive GANs (Karras et al. 2018, "Progressive Growing of GANs", sec. 3 and 4).

- :class:`PixelNorm`: pixelwise feature vector normalisation in the generator (sec. 4.2),
  ``b = a / sqrt(mean_c(a^2) + eps)``.
- :class:`MinibatchStdDev`: minibatch standard deviation (sec. 3): the standard deviation of every feature at
  every position over a group of samples, averaged to one value per group and appended as a constant channel.
- :class:`EqualizedConv` / :class:`EqualizedLinear`: equalised learning rate (sec. 4.1): weights are stored
  ``N(0, 1)`` and scaled at run time by the He constant ``c = gain / sqrt(fan_in)`` (``gain = sqrt(2)``).
  :class:`EqualizedLinear` also takes StyleGAN2's learning-rate multiplier (Karras et al. 2020, appendix B: the
  mapping network's layers use 0.01): weights stored ``N(0, 1 / lr_multiplier)``, scaled by
  ``lr_multiplier * gain / sqrt(fan_in)``, bias scaled by ``lr_multiplier``, so that Adam's step on the effective
  parameters is ``lr_multiplier`` times smaller.

Used by the PGGAN and CPGGAN networks of Han's thesis, sec. 4.2.2 and 5.2.2 (:mod:`common.networks.progressive`).
The runtime scale is applied to the layer's input, ``conv(c * x) = conv_{c * w}(x)`` (both are linear in the
weights, and the bias is added after), so the layers are MONAI factory convolutions and TorchScript-exportable.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv

#: He initialisation gain for ReLU-like activations, the default of the equalised-learning-rate layers.
HE_GAIN = math.sqrt(2.0)

__all__ = ["EqualizedConv", "EqualizedLinear", "MinibatchStdDev", "PixelNorm"]


class PixelNorm(nn.Module):
    """Pixelwise feature vector normalisation: each position's feature vector scaled to unit root-mean-square.

    Args:
        eps: added to the mean square (Karras et al. use 1e-8).

    Shapes:
        input ``(B, C, *spatial)`` or ``(B, C)``; output the same.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation layer (Karras et al. 2018, sec. 3).

    The batch is split into groups of ``group_size`` samples (the largest divisor of the batch size not above
    ``group_size``; sample ``i`` belongs to group ``i % num_groups``, as in the reference implementation). For each
    group the (biased) standard deviation over the group of every feature at every position is averaged over
    features and positions; that scalar fills one extra channel of each sample of the group.

    With ``num_channels = F > 1`` (StyleGAN2's ``mbstd_num_channels``; Karras et al. 2020 use 1) the features are
    split into ``F`` consecutive groups of ``C / F`` channels and each gives its own averaged standard deviation and
    its own extra channel.

    Args:
        group_size: samples per group (4 in the paper).
        eps: added to the variance before the square root.
        num_channels: extra channels ``F`` (must divide the input channels).

    Shapes:
        input ``(B, C, *spatial)``; output ``(B, C + num_channels, *spatial)``.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8, num_channels: int = 1) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}.")
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}.")
        self.group_size = group_size
        self.eps = eps
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        group = min(self.group_size, batch)
        while batch % group != 0:
            group -= 1
        num_groups = batch // group
        f = self.num_channels
        if x.shape[1] % f != 0:
            raise ValueError(f"num_channels {f} must divide the input channels, got {x.shape[1]}.")
        y = x.reshape([group, num_groups] + list(x.shape[1:])).float()  # sample i -> (i // G', i % G')
        y = (y - y.mean(dim=0, keepdim=True)).pow(2).mean(dim=0)
        y = torch.sqrt(y + self.eps)
        y = y.reshape(num_groups, f, -1).mean(dim=2)  # one value per group and channel group
        y = y.to(x.dtype).repeat(group, 1)  # back to batch order: sample i gets y[i % num_groups]
        shape = [batch, f] + list(x.shape[2:])
        y = y.reshape([batch, f] + [1] * (x.ndim - 2)).expand(shape)
        return torch.cat([x, y], dim=1)


class EqualizedConv(nn.Module):
    """Convolution with equalised learning rate, for 1D/2D/3D (MONAI ``Conv`` factory).

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size (same on every axis).
        padding: zero padding; default ``kernel_size // 2`` ("same").
        gain: the He gain (``sqrt(2)`` for leaky-ReLU layers, 1 for linear outputs such as ``toRGB``).
        bias: use a bias (initialised to 0).
        stride: the convolution's stride (same on every axis).

    Shapes:
        input ``(B, in_channels, *spatial)``; output ``(B, out_channels, *spatial')``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int | None = None,
        gain: float = HE_GAIN,
        bias: bool = True,
        stride: int = 1,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = Conv[Conv.CONV, spatial_dims](
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        nn.init.normal_(self.conv.weight, 0.0, 1.0)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        fan_in = in_channels * kernel_size**spatial_dims
        self.scale = float(gain / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x * self.scale)


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalised learning rate.

    Args:
        in_features: input features.
        out_features: output features.
        gain: the He gain (``sqrt(2)`` by default).
        bias: use a bias.
        lr_multiplier: StyleGAN2's learning-rate multiplier (1: plain equalised learning rate).
        bias_init: the initial effective bias (StyleGAN2's style affine layers start at 1, so that the styles start
            near 1); stored as ``bias_init / lr_multiplier``.

    Shapes:
        input ``(B, in_features)``; output ``(B, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        gain: float = HE_GAIN,
        bias: bool = True,
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        if lr_multiplier <= 0:
            raise ValueError(f"lr_multiplier must be > 0, got {lr_multiplier}.")
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        nn.init.normal_(self.linear.weight, 0.0, 1.0 / lr_multiplier)
        if self.linear.bias is not None:
            nn.init.constant_(self.linear.bias, bias_init / lr_multiplier)
        self.scale = float(gain * lr_multiplier / math.sqrt(in_features))
        self.bias_gain = float(lr_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.linear.bias
        if bias is not None and self.bias_gain != 1.0:
            bias = bias * self.bias_gain
        return F.linear(x * self.scale, self.linear.weight, bias)
