"""Layers of StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), 1D/2D/3D.

- :func:`upfirdn`: upsample by zero insertion, pad (or crop), filter with a finite impulse response (FIR), downsample;
  separable (the same 1D filter on every spatial axis), in plain PyTorch, so that it runs on CPU and GPU and
  compiles with TorchScript. The resampling of StyleGAN2 (appendix B: "bilinear" up- and downsampling with the
  ``[1, 3, 3, 1]`` filter, following Zhang 2019).
- :class:`FIRResample`: 2x up- or downsampling (or a same-size blur) with a FIR filter, normalised to sum 1 per
  axis and multiplied by the upsampling factor per axis, so that a constant image stays constant.
- :class:`ModulatedConv`: convolution whose weights are scaled per sample by a style (modulation) and normalised
  to unit output variance (demodulation), sec. 2.2, eq. 1-3, run as one grouped convolution over the batch;
  optional 2x upsampling by a transposed convolution followed by a FIR blur (appendix B).
- :class:`NoiseInjection`: per-pixel Gaussian noise scaled by a learned per-layer strength (StyleGAN, Karras et al.
  2019, sec. 3.2; StyleGAN2 Fig. 2c).
- :class:`ToRGB`: modulated 1x1 convolution without demodulation, plus a bias (the skip generator, sec. 4.1).
- :class:`ScaledLeakyReLU`: leaky ReLU (slope 0.2) times ``sqrt(2)``, the activation of every StyleGAN2 layer.

Equalised learning rate everywhere: weights stored ``N(0, 1)`` and scaled at run time by ``1 / sqrt(fan_in)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .progressive import EqualizedLinear

#: He's gain of the leaky ReLU layers, the activation gain of StyleGAN2.
ACTIVATION_GAIN = math.sqrt(2.0)

__all__ = ["FIRResample", "ModulatedConv", "NoiseInjection", "ScaledLeakyReLU", "ToRGB", "upfirdn"]


def _conv_nd(x: torch.Tensor, weight: torch.Tensor, stride: List[int], padding: int, groups: int) -> torch.Tensor:
    """``conv1d``/``conv2d``/``conv3d`` chosen by the number of spatial dimensions of ``x``."""
    nd = x.dim() - 2
    if nd == 1:
        return F.conv1d(x, weight, stride=stride, padding=padding, groups=groups)
    if nd == 2:
        return F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)
    if nd == 3:
        return F.conv3d(x, weight, stride=stride, padding=padding, groups=groups)
    raise ValueError(f"1, 2 or 3 spatial dimensions are supported, got {nd}.")


def _conv_transpose_nd(x: torch.Tensor, weight: torch.Tensor, stride: int, groups: int) -> torch.Tensor:
    """``conv_transpose1d``/``2d``/``3d`` chosen by the number of spatial dimensions of ``x``, no padding."""
    nd = x.dim() - 2
    if nd == 1:
        return F.conv_transpose1d(x, weight, stride=stride, groups=groups)
    if nd == 2:
        return F.conv_transpose2d(x, weight, stride=stride, groups=groups)
    if nd == 3:
        return F.conv_transpose3d(x, weight, stride=stride, groups=groups)
    raise ValueError(f"1, 2 or 3 spatial dimensions are supported, got {nd}.")


def upfirdn(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, padding: Tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every spatial axis of ``x`` in turn (separable).

    Along each axis of length ``L``: ``up - 1`` zeros are inserted after every sample (length ``L * up``), then
    ``padding[0]`` zeros are added before and ``padding[1]`` after (negative values crop), the signal is convolved
    with ``kernel`` (a true convolution: the kernel is flipped; "valid" mode), and every ``down``-th sample is kept,
    from the first. Output length ``(L * up + padding[0] + padding[1] - len(kernel)) // down + 1``. Every channel is
    filtered independently.

    Args:
        x: ``(B, C, *spatial)`` with 1 to 3 spatial axes.
        kernel: the 1D filter ``(K,)``, used as given (no normalisation: see :class:`FIRResample`).
        up: upsampling factor (>= 1).
        down: downsampling factor (>= 1).
        padding: zeros before and after each axis, after upsampling.

    Returns:
        ``(B, C, *spatial')``.
    """
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got {up} and {down}.")
    batch, channels = x.shape[0], x.shape[1]
    nd = x.dim() - 2
    taps = kernel.shape[0]
    y = x.reshape([batch * channels, 1] + list(x.shape[2:]))
    flipped = kernel.flip(0).to(dtype=x.dtype, device=x.device)
    for axis in range(nd):
        dim = axis + 2
        if up > 1:
            y = y.transpose(dim, -1)
            shape = list(y.shape)
            y = F.pad(y.unsqueeze(-1), [0, up - 1]).reshape(shape[:-1] + [shape[-1] * up])
            y = y.transpose(dim, -1)
        pad = [0] * (2 * nd)
        pad[2 * (nd - 1 - axis)] = padding[0]
        pad[2 * (nd - 1 - axis) + 1] = padding[1]
        y = F.pad(y, pad)
        weight_shape = [1] * (nd + 2)
        weight_shape[dim] = taps
        stride = [1] * nd
        stride[axis] = down
        y = _conv_nd(y, flipped.reshape(weight_shape), stride, 0, 1)
    return y.reshape([batch, channels] + list(y.shape[2:]))


class FIRResample(nn.Module):
    """2x up- or downsampling, or a blur, with a separable FIR filter (StyleGAN2, appendix B).

    The filter is normalised to sum 1 along each axis and multiplied by ``gain`` along each axis (default: ``up``,
    which makes up for the zeros inserted by upsampling), so a constant image stays constant away from the borders.
    The default padding keeps the size an exact multiple: ``L * up`` or ``L / down`` (``L`` for a blur).

    Args:
        kernel: the 1D filter taps (StyleGAN2: ``[1, 3, 3, 1]``).
        up: upsampling factor.
        down: downsampling factor (not both ``up`` and ``down`` above 1).
        padding: zeros before and after each axis; default as described above.
        gain: the filter's gain per axis; default ``up``.

    Shapes:
        input ``(B, C, *spatial)``; output ``(B, C, *spatial')``.
    """

    def __init__(
        self,
        kernel: Sequence[float] = (1, 3, 3, 1),
        up: int = 1,
        down: int = 1,
        padding: Sequence[int] | None = None,
        gain: float | None = None,
    ) -> None:
        super().__init__()
        if up < 1 or down < 1 or (up > 1 and down > 1):
            raise ValueError(f"FIRResample resamples up or down by a factor >= 1, got up={up}, down={down}.")
        taps = torch.as_tensor([float(k) for k in kernel], dtype=torch.float32)
        if taps.ndim != 1 or taps.numel() == 0 or float(taps.sum()) == 0.0:
            raise ValueError(f"kernel must be a non-empty 1D filter with a non-zero sum, got {list(kernel)}.")
        size = taps.numel()
        if padding is None:
            if up > 1:
                padding = ((size + up - 1) // 2, (size - up) // 2)
            elif down > 1:
                padding = ((size - down + 1) // 2, (size - down) // 2)
            else:
                padding = (size // 2, (size - 1) // 2)
        if len(padding) != 2:
            raise ValueError(f"padding needs two values (before, after), got {list(padding)}.")
        self.up = int(up)
        self.down = int(down)
        self.padding: Tuple[int, int] = (int(padding[0]), int(padding[1]))
        self.register_buffer("kernel", taps / taps.sum() * float(up if gain is None else gain), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn(x, self.kernel, self.up, self.down, self.padding)


class ScaledLeakyReLU(nn.Module):
    """``gain * leaky_relu(x, negative_slope)``; StyleGAN2 uses slope 0.2 and gain ``sqrt(2)`` (He's gain).

    Shapes:
        any input; output the same.
    """

    def __init__(self, negative_slope: float = 0.2, gain: float = ACTIVATION_GAIN) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)
        self.gain = float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope) * self.gain


class ModulatedConv(nn.Module):
    """Modulated convolution with optional weight demodulation (Karras et al. 2020, sec. 2.2).

    A style ``s = A(w)`` (an equalised affine layer initialised to give ``s = 1``) scales the input feature maps of
    each sample: ``w'_ijk = s_i * w_ijk`` (eq. 1). With ``demodulate``, the output feature maps are rescaled to
    unit standard deviation for unit-variance i.i.d. input: ``w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps)``
    (eq. 2-3), which replaces AdaIN's instance normalisation. All samples run as one grouped convolution
    (batch folded into the channels, ``groups = B``). With ``up = 2`` the convolution is transposed with stride 2,
    followed by a FIR blur with gain 2 per axis (appendix B), giving exactly twice the input size.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input feature maps.
        out_channels: output feature maps.
        kernel_size: kernel size (odd; same on every axis).
        style_dim: length of the style vector ``w``.
        demodulate: apply weight demodulation (off in ``toRGB``).
        up: 1, or 2 to upsample.
        resample_filter: the FIR filter of the upsampling.
        eps: added under the square root of the demodulation.

    Shapes:
        ``forward(x, w)``: ``x`` ``(B, in_channels, *spatial)``, ``w`` ``(B, style_dim)``; output
        ``(B, out_channels, *spatial * up)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        up: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
        if up not in (1, 2):
            raise ValueError(f"up must be 1 or 2, got {up}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.up = up
        self.eps = eps
        self.affine = EqualizedLinear(style_dim, in_channels, gain=1.0, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels] + [kernel_size] * spatial_dims))
        self.scale = float(1.0 / math.sqrt(in_channels * kernel_size**spatial_dims))
        taps = len(resample_filter)
        # transposed conv: (L - 1) * up + k samples; the blur's padding brings them to L * up, centred
        pad0 = kernel_size // 2 + (taps + up - 1) // 2 - (kernel_size - 1)
        pad1 = kernel_size // 2 + (taps - up) // 2 - (kernel_size - up)
        self.blur = FIRResample(resample_filter, padding=(pad0, pad1), gain=float(up)) if up > 1 else nn.Identity()

    def modulated_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The per-sample weights ``(B, out_channels, in_channels, *kernel)`` for styles from ``w`` ``(B, style_dim)``."""
        styles = self.affine(w)
        shape = [styles.shape[0], 1, self.in_channels] + [1] * self.spatial_dims
        weight = self.weight.unsqueeze(0) * self.scale * styles.reshape(shape)
        if self.demodulate:
            dims = [2 + i for i in range(self.spatial_dims + 1)]
            norm = torch.rsqrt(weight.pow(2).sum(dim=dims, keepdim=True) + self.eps)
            weight = weight * norm
        return weight

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        weight = self.modulated_weight(w).to(x.dtype)
        kernel = [self.kernel_size] * self.spatial_dims
        x = x.reshape([1, batch * self.in_channels] + list(x.shape[2:]))
        if self.up == 1:
            weight = weight.reshape([batch * self.out_channels, self.in_channels] + kernel)
            stride = [1] * self.spatial_dims
            out = _conv_nd(x, weight, stride, self.kernel_size // 2, batch)
        else:
            weight = weight.transpose(1, 2).reshape([batch * self.in_channels, self.out_channels] + kernel)
            out = self.blur(_conv_transpose_nd(x, weight, self.up, batch))
        return out.reshape([batch, self.out_channels] + list(out.shape[2:]))


class NoiseInjection(nn.Module):
    """Per-pixel Gaussian noise scaled by a learned strength (one scalar per layer, initialised to 0).

    ``noise_mode``: ``"random"`` draws new noise ``(B, 1, *spatial)`` (shared by the channels) at every call;
    ``"const"`` uses a fixed noise image drawn at construction (a buffer, saved with the weights), so the output is
    deterministic; ``"none"`` adds nothing.

    Args:
        spatial_shape: the layer's spatial size (for the constant noise).

    Shapes:
        ``forward(x, noise_mode)``: ``x`` ``(B, C, *spatial_shape)``; output the same.
    """

    def __init__(self, spatial_shape: Sequence[int]) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn([int(s) for s in spatial_shape]))

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1] + list(x.shape[2:]), dtype=x.dtype, device=x.device)
        elif noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        else:
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got '{noise_mode}'.")
        return x + noise * self.strength


class ToRGB(nn.Module):
    """Feature maps to output channels: modulated 1x1 convolution without demodulation, plus a bias (sec. 4.1).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input feature maps.
        out_channels: output (image) channels.
        style_dim: length of the style vector.

    Shapes:
        ``forward(x, w)``: ``x`` ``(B, in_channels, *spatial)``, ``w`` ``(B, style_dim)``; output
        ``(B, out_channels, *spatial)``, linear.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(spatial_dims, in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.bias_shape = [1, out_channels] + [1] * spatial_dims

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.reshape(self.bias_shape).to(x.dtype)
