"""Residual block of the CycleGAN ResNet generator with a pluggable channel-attention slot.

CycleGAN (Zhu et al. 2017, appendix 7.2) uses residual blocks of two 3x3 convolutions with reflection padding and
instance normalisation. CDA-GAN (Xu et al. 2023, sec. 3.1.1, eq. 3) recalibrates the channels of the residual branch
``U = F(X)`` before the addition: ``X' = Z'U + X`` (the "AMSE-Residual" block); the SE and CBAM baselines fill the
same slot.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer

from .channel_attention import get_channel_attention

__all__ = ["ResidualAttentionBlock", "conv_bias", "make_norm"]


def make_norm(norm: str | tuple | None, spatial_dims: int, channels: int) -> nn.Module:
    """Normalisation layer from a MONAI ``Norm`` name (or ``(name, args)``), identity for ``None``."""
    return nn.Identity() if norm is None else get_norm_layer(norm, spatial_dims, channels)


def conv_bias(norm: str | tuple | None) -> bool:
    """Whether a conv followed by ``norm`` needs a bias: not before batch norm (its shift replaces it)."""
    if norm is None:
        return True
    name = norm[0] if isinstance(norm, tuple) else norm
    return str(name).lower() != "batch"


class ResidualAttentionBlock(nn.Module):
    """CycleGAN residual block with a channel-attention slot (CDA-GAN sec. 3.1.1, eq. 3).

    ``U = [pad, conv3, norm, ReLU, (dropout), pad, conv3, norm](X)`` and ``X' = A(U) + X`` where ``A`` is the
    attention block (``Z' * U``) or the identity (``attention=None``/``"none"``: the plain CycleGAN block).

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        channels: number of channels ``C`` (input and output).
        attention: ``None``/``"none"``, ``"se"``, ``"amse"`` (CDA-GAN) or ``"cbam"``.
        norm: MONAI ``Norm`` name or ``(name, args)``; ``"instance"`` (affine-free, as in CycleGAN) by default,
            ``None`` for no normalisation.
        padding_mode: padding of the 3x3 convolutions, ``"reflect"`` (CycleGAN), ``"replicate"`` or ``"zeros"``.
        dropout: dropout probability after the first ReLU (0.5 in CycleGAN's optional dropout; 0 by default).
        reduction: reduction ratio of the attention block.

    Shapes:
        input ``(B, C, *spatial)``; output ``(B, C, *spatial)``; every spatial size must exceed 1 for reflection.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        attention: str | None = None,
        norm: str | tuple | None = "instance",
        padding_mode: str = "reflect",
        dropout: float = 0.0,
        reduction: int = 16,
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            conv(channels, channels, 3, padding=1, padding_mode=padding_mode, bias=bias),
            make_norm(norm, spatial_dims, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            conv(channels, channels, 3, padding=1, padding_mode=padding_mode, bias=bias),
            make_norm(norm, spatial_dims, channels),
        ]
        self.conv_block = nn.Sequential(*layers)
        self.attention = get_channel_attention(attention, spatial_dims, channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``X``, shape ``(B, C, *spatial)``.

        Returns:
            ``X' = A(U) + X``, shape ``(B, C, *spatial)``.
        """
        return self.attention(self.conv_block(x)) + x
