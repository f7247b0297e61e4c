"""Channel attention blocks for the residual blocks of the CycleGAN-family generators.

- :class:`AMSEBlock`: the average-max squeeze-and-excitation block of CDA-GAN (Xu et al. 2023, sec. 3.1.1, eq. 1-3):
  the global average and the global max of each channel are ADDED before one shared excitation network.
- :class:`SEBlock`: squeeze-and-excitation (Hu et al. 2018), global average pooling only; MONAI's
  :class:`monai.networks.blocks.ChannelSELayer` with the reduction clamped so the hidden layer keeps one unit.
- :class:`CBAMBlock`: the convolutional block attention module (Woo et al. 2018): channel attention in which the
  average- and the max-pooled descriptors EACH pass the shared MLP and are added afterwards, followed by spatial
  attention. Sec. 3.1.1 of CDA-GAN contrasts the two squeezes; both are here for the ablation.

Every block maps ``U`` of shape ``(B, C, *spatial)`` to the recalibrated ``Z' * U`` of the same shape; the residual
addition ``X' = Z'U + X`` (eq. 3) belongs to :class:`common.networks.blocks.ResidualAttentionBlock`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer
from monai.networks.layers.factories import Conv, Pool

__all__ = ["AMSEBlock", "CBAMBlock", "SEBlock", "CHANNEL_ATTENTION", "get_channel_attention"]


def _hidden(channels: int, reduction: int) -> int:
    if channels < 1 or reduction < 1:
        raise ValueError(f"channels and reduction must be positive, got channels={channels} reduction={reduction}.")
    return max(1, channels // reduction)


class _MeanPlusMax(torch.autograd.Function):
    """``mean(U_p) + max(U_p)`` over the spatial positions of each channel (AMSE eq. 1), ``(B, C, *spatial) -> (B, C)``.

    The same values and gradients as adaptive average pooling plus adaptive max pooling (the max's gradient goes to
    one maximal position, as max pooling's does), with one full-size write in the backward pass instead of three
    (average-pool gradient, max-pool zeros and scatter, their sum). This saves about a third of the block's time
    on a CPU.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        maximum, index = flat.max(-1)
        ctx.save_for_backward(index)
        ctx.input_shape = x.shape  # type: ignore[attr-defined]
        return flat.mean(-1) + maximum

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (index,) = ctx.saved_tensors  # type: ignore[attr-defined]
        shape = ctx.input_shape  # type: ignore[attr-defined]
        positions = math.prod(shape[2:])
        grad_input = (grad / positions).unsqueeze(-1).expand(*grad.shape, positions).contiguous()
        grad_input.scatter_add_(-1, index.unsqueeze(-1), grad.unsqueeze(-1))
        return grad_input.view(shape)


class _ChannelRescale(torch.autograd.Function):
    """``Z' * U`` (eq. 3 without the residual): channel weights ``(B, C)`` times ``U`` ``(B, C, *spatial)``.

    The weights' gradient is a per-channel dot product of the output gradient and ``U``, computed without the
    full-size product that autograd's broadcast multiplication materialises.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weights)
        return x * _expand_spatial(weights, x.ndim)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, weights = ctx.saved_tensors  # type: ignore[attr-defined]
        needs_x, needs_weights = ctx.needs_input_grad  # type: ignore[attr-defined]
        grad_x = grad * _expand_spatial(weights, x.ndim) if needs_x else None
        grad_weights = None
        if needs_weights:
            grad_weights = torch.linalg.vecdot(grad.flatten(2), x.flatten(2).to(grad.dtype), dim=-1)
            grad_weights = grad_weights.to(weights.dtype)
        return grad_x, grad_weights


def _expand_spatial(weights: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(B, C)`` channel weights as ``(B, C, 1, ...)`` for an ``ndim``-dimensional input (TorchScript-friendly)."""
    for _ in range(ndim - 2):
        weights = weights.unsqueeze(-1)
    return weights


class SEBlock(ChannelSELayer):
    """Squeeze-and-excitation block (Hu et al. 2018): global average pooling, FC-ReLU-FC-sigmoid, rescale.

    MONAI's :class:`~monai.networks.blocks.ChannelSELayer` without the residual; the reduction ratio is clamped to
    ``channels`` so that the hidden layer has at least one unit (``max(1, channels // reduction)`` units). The
    parameters are those of ``ChannelSELayer`` (``fc.0`` is ``C -> C/r``, ``fc.2`` is ``C/r -> C``), so state dicts
    are interchangeable.

    Args:
        spatial_dims: number of spatial dimensions, 1, 2 or 3.
        channels: number of channels ``C`` of the input.
        reduction: reduction ratio ``r`` of the hidden layer (16 in Hu et al.).

    Shapes:
        input ``U`` ``(B, C, *spatial)``; output ``Z' * U`` ``(B, C, *spatial)``.
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16) -> None:
        _hidden(channels, reduction)
        super().__init__(spatial_dims, channels, r=min(reduction, channels))
        self.channels = channels

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """Global descriptor ``Z`` of each channel, ``(B, C, *spatial) -> (B, C)``: the spatial average."""
        return self.avg_pool(x).flatten(1)

    def excite(self, z: torch.Tensor) -> torch.Tensor:
        """Channel weights ``Z' = sigmoid(W2 ReLU(W1 Z))`` (eq. 2), ``(B, C) -> (B, C)``."""
        return self.fc(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``U``, shape ``(B, C, *spatial)``.

        Returns:
            ``Z' * U``, shape ``(B, C, *spatial)``.
        """
        weights = self.excite(self.squeeze(x))
        if torch.jit.is_scripting():  # TorchScript (model export) cannot compile the autograd function
            return x * _expand_spatial(weights, x.ndim)
        return self._rescale(x, weights)

    @torch.jit.unused
    def _rescale(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return _ChannelRescale.apply(x, weights)


class AMSEBlock(SEBlock):
    """Average-max squeeze-and-excitation block of CDA-GAN (Xu et al. 2023, sec. 3.1.1, eq. 1-3).

    Squeeze (eq. 1): ``Z_p = mean(U_p) + max(U_p)`` over the spatial positions of channel ``p``: the two pooled
    descriptors are summed BEFORE the excitation, unlike CBAM where each passes the MLP separately.
    Excitation (eq. 2): ``Z' = sigmoid(FC(ReLU(FC(Z))))`` with ``C -> max(1, C/r) -> C``.
    Rescale (eq. 3, without the residual): ``Z' * U``.

    Args:
        spatial_dims: number of spatial dimensions, 1, 2 or 3.
        channels: number of channels ``C`` of the input.
        reduction: reduction ratio ``r`` of the hidden layer (the paper does not give it; 16 as in SENet).

    Shapes:
        input ``U`` ``(B, C, *spatial)``; output ``Z' * U`` ``(B, C, *spatial)``.
    """

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1: spatial average plus spatial maximum of each channel, ``(B, C, *spatial) -> (B, C)``."""
        if torch.jit.is_scripting():  # TorchScript (model export): the same values through plain reductions
            flat = x.flatten(2)
            return flat.mean(-1) + flat.amax(-1)
        return self._mean_plus_max(x)

    @torch.jit.unused
    def _mean_plus_max(self, x: torch.Tensor) -> torch.Tensor:
        return _MeanPlusMax.apply(x)


class CBAMBlock(nn.Module):
    """Convolutional block attention module (Woo et al. 2018, sec. 3): channel then spatial attention.

    Channel attention (Woo et al. eq. 2): ``M_c = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))`` with one MLP
    ``C -> max(1, C/r) -> C`` (ReLU in between) shared by the two descriptors; ``F' = M_c * F``.
    Spatial attention (Woo et al. eq. 3): ``M_s = sigmoid(conv_kxk([mean_c(F'); max_c(F')]))``, a ``k^d``
    convolution (``k = 7``, zero padding ``k // 2``) of the channel-wise mean and max maps; ``F'' = M_s * F'``.

    Args:
        spatial_dims: number of spatial dimensions, 1, 2 or 3.
        channels: number of channels ``C`` of the input.
        reduction: reduction ratio ``r`` of the shared MLP (16 in Woo et al.).
        kernel_size: kernel size of the spatial-attention convolution (7 in Woo et al.).

    Shapes:
        input ``(B, C, *spatial)``; output ``(B, C, *spatial)``.
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.channels = channels
        self.avg_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.max_pool = Pool[Pool.ADAPTIVEMAX, spatial_dims](1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.spatial_conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size, padding=kernel_size // 2)

    def channel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights ``M_c``, ``(B, C, *spatial) -> (B, C, 1, ...)``."""
        weights = torch.sigmoid(self.mlp(self.avg_pool(x).flatten(1)) + self.mlp(self.max_pool(x).flatten(1)))
        return _expand_spatial(weights, x.ndim)

    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial weights ``M_s``, ``(B, C, *spatial) -> (B, 1, *spatial)``."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial_conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: feature map ``F``, shape ``(B, C, *spatial)``.

        Returns:
            ``M_s(F') * F'`` with ``F' = M_c(F) * F``, shape ``(B, C, *spatial)``.
        """
        x = x * self.channel_attention(x)
        return x * self.spatial_attention(x)


CHANNEL_ATTENTION: dict[str, type[nn.Module]] = {"se": SEBlock, "amse": AMSEBlock, "cbam": CBAMBlock}


def get_channel_attention(name: str | None, spatial_dims: int, channels: int, reduction: int = 16) -> nn.Module:
    """Build an attention block by name.

    Args:
        name: ``None`` or ``"none"`` (identity), ``"se"``, ``"amse"`` or ``"cbam"`` (case-insensitive).
        spatial_dims: number of spatial dimensions.
        channels: number of channels ``C``.
        reduction: reduction ratio ``r``.

    Returns:
        a module mapping ``(B, C, *spatial)`` to ``(B, C, *spatial)``.
    """
    key = "none" if name is None else name.lower()
    if key == "none":
        return nn.Identity()
    if key not in CHANNEL_ATTENTION:
        raise ValueError(
            f"unknown attention {name!r}; expected None, 'none', {', '.join(map(repr, CHANNEL_ATTENTION))}."
        )
    return CHANNEL_ATTENTION[key](spatial_dims, channels, reduction)
