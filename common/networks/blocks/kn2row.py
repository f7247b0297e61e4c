"""Narrow convolutions (few output channels, a large kernel) as one 1x1 convolution and a sum of shifted taps, for CPUs.

A convolution ``y[o, p] = sum_{c, t} w[o, c, t] x[c, p + t]`` over the kernel taps ``t`` is computed in two parts
(the "kn2row" method of Vasudevan, Anderson & Gregg 2017, "Parallel Multi Channel Convolution using General Matrix
Multiplication", sec. 4): a 1x1 convolution with ``out_channels * taps`` output channels,
``u[o, t, q] = sum_c w[o, c, t] x[c, q]`` at every input position ``q``, then for each output position the sum of
its taps' shifted values, ``y[o, p] = sum_t u[o, t, p + t]``. The multiplications are those of the direct method,
but they run as one wide matrix product, where a convolution with one output channel (a CycleGAN generator's
final 7x7 layer, an attention network's map) keeps the CPU's vector units mostly idle. The shifted sum is memory
traffic in proportion to ``out_channels * taps``, so the method pays only for narrow outputs (:func:`kn2row_eligible`).

The backward pass follows: the shifted sum's transpose copies the output gradient into each tap's place (written
out explicitly, :class:`_TapSum`, so that autograd allocates no zero-filled gradient per slice), and the 1x1
convolution's backward gives the input's and the weight's gradients. Autograd keeps the input and the weight, as for
the direct convolution, not the ``out_channels * taps`` intermediate.

The result equals the direct convolution up to float rounding (the same products, summed in another order):
``tests/networks/test_kn2row.py`` checks it in float64 and against gradcheck, 2D and 3D. It is another way to
compute the same layer: parameters, ``state_dict`` and checkpoints are those of the plain convolution.
:mod:`common.networks.blocks.conv_algorithms` switches a network's eligible layers over.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["KN2ROW_MAX_COLUMNS", "kn2row_conv", "kn2row_eligible"]

KN2ROW_MAX_COLUMNS = 256
"""The most ``out_channels * taps`` (the 1x1 convolution's output channels) of an eligible layer: a 7x7 kernel
with up to 5 output channels (a generator's output to 4 MR sequences), 3x3x3 with up to 9, 4x4x4 with up to 4. The
intermediate is that many times the input's spatial size. Measured on a 2-core AVX2 EPYC (1 thread, fp32, forward
and backward, 64 input channels at 128x128 or 32^3): 4.7x the direct method's speed for a 7x7 kernel to 1 output
channel, 1.4x to 4, but 0.8x to 3 and to 8; 3.5x for 3x3x3 to 1, 0.5x to 16. So ``conv_algorithm: auto`` measures
every call signature before it uses the method."""


def _tap_slices(kernel: tuple[int, ...], out_sizes: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Per kernel tap (row-major, the weight's order), the slices of the padded input that it multiplies."""
    return [
        tuple(slice(o, o + n) for o, n in zip(offsets, out_sizes))
        for offsets in itertools.product(*(range(k) for k in kernel))
    ]


class _TapSum(torch.autograd.Function):
    """``(B, O, T, *padded) -> (B, O, *out)``: the sum over the ``T`` taps of each tap's shifted window."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, kernel: tuple[int, ...], out_sizes: tuple[int, ...]) -> torch.Tensor:
        slices = _tap_slices(kernel, out_sizes)
        ctx.kernel, ctx.u_shape = kernel, u.shape
        y = u[(slice(None), slice(None), 0) + slices[0]].clone(memory_format=torch.contiguous_format)
        for t in range(1, len(slices)):
            y += u[(slice(None), slice(None), t) + slices[t]]
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        slices = _tap_slices(ctx.kernel, tuple(grad.shape[2:]))
        grad_u = grad.new_zeros(ctx.u_shape)
        for t, window in enumerate(slices):
            grad_u[(slice(None), slice(None), t) + window] = grad
        return grad_u, None, None


def kn2row_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int | tuple[int, ...] = 0
) -> torch.Tensor:
    """``F.conv2d``/``F.conv3d`` with stride 1, dilation 1 and one group, as a 1x1 convolution and a shifted sum.

    Args:
        x: input ``(B, C, *spatial)``, 2 or 3 spatial axes.
        weight: ``(O, C, *kernel)``.
        bias: ``(O,)`` or ``None``.
        padding: zero padding per spatial axis (an int for all).

    Returns:
        ``(B, O, *(s + 2 * p - k + 1))``, equal to the direct convolution up to float rounding.
    """
    n = x.ndim - 2
    pads = (padding,) * n if isinstance(padding, int) else tuple(padding)
    if n not in (2, 3) or weight.ndim != n + 2 or len(pads) != n or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"kn2row_conv needs a 2D or 3D input, a weight of the same dimensions with matching channels and one "
            f"padding per axis; got input {tuple(x.shape)}, weight {tuple(weight.shape)}, padding {padding}."
        )
    kernel = tuple(int(k) for k in weight.shape[2:])
    out_sizes = tuple(s + 2 * p - k + 1 for s, p, k in zip(x.shape[2:], pads, kernel))
    if min(out_sizes) < 1:
        raise ValueError(f"kn2row_conv: input {tuple(x.shape)} with padding {padding} is smaller than the kernel.")
    if any(pads):
        x = F.pad(x, [p for p in reversed(pads) for _ in range(2)])
    out_channels, taps = weight.shape[0], math.prod(kernel)
    # (O, C, *kernel) -> (O * T, C, 1, ...): output channel o * T + t holds tap t of output o
    columns = weight.flatten(2).transpose(1, 2).reshape((out_channels * taps, weight.shape[1]) + (1,) * n)
    u = (F.conv2d if n == 2 else F.conv3d)(x, columns)
    y = _TapSum.apply(u.unflatten(1, (out_channels, taps)), kernel, out_sizes)
    if bias is not None:
        y = y + bias.view((1, -1) + (1,) * n)
    return y


def kn2row_eligible(module: nn.Module, max_columns: int = KN2ROW_MAX_COLUMNS) -> bool:
    """Whether ``module`` may be computed by :func:`kn2row_conv`: an ``nn.Conv2d``/``nn.Conv3d`` with more than one
    kernel tap, stride 1, dilation 1, one group, numeric padding (or ``"valid"``, or ``"same"`` with odd kernels;
    any ``padding_mode``: the non-zero modes pad before the convolution) and at most ``max_columns`` output channels
    times taps."""
    if not isinstance(module, (nn.Conv2d, nn.Conv3d)):  # transposed convolutions are other classes
        return False
    n, taps = len(module.kernel_size), math.prod(module.kernel_size)
    same_ok = module.padding != "same" or all(k % 2 for k in module.kernel_size)
    return (
        taps > 1
        and tuple(module.stride) == (1,) * n
        and tuple(module.dilation) == (1,) * n
        and module.groups == 1
        and same_ok
        and module.out_channels * taps <= max_columns
    )
