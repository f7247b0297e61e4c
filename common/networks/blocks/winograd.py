"""3x3 (2D) and 3x3x3 (3D) convolutions by Winograd's minimal filtering algorithm F(2, 3), for CPUs.

A stride-1 convolution with a 3-tap kernel computes 2 outputs from a 4-sample tile with 4 multiplications instead of
6 (Winograd 1980; Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks", sec. 4):
``Y = A^T [(G g G^T) * (B^T d B)] A`` per 4x4 input tile ``d`` and 3x3 filter ``g`` in 2D, and the same nested along
each axis in 3D. Across channels the element-wise products become ``4^n`` matrix products ``(K, C) @ (C, tiles)``,
so a 3x3 convolution takes 16/36 of the direct method's multiplications (3x3x3: 64/216) and runs on the CPU's
matrix-multiply kernels. The backward pass is the transposed algorithm (the same matrix products on the gradients),
written out explicitly rather than recorded op by op, so it allocates no zero-filled slice gradients. Eagerly the
transforms write into preallocated outputs (``out=``), which measured 5-9 % faster for a 256-channel layer than
stacking their terms (2-core AVX2 EPYC, 1 thread); under :func:`torch.compile`, which cannot trace such writes, they
stack, and Inductor fuses the stacks. Like the direct convolution it keeps only the input and the weight for the
backward pass and recomputes their transforms (the input's is 4x its size in 2D, 8x in 3D) rather than storing them.

The result equals the direct convolution up to float rounding: the transforms use only the coefficients 0, +-1 and
+-1/2. Against a float64 reference at 256 channels the fp32 error measured 6e-6 (AVX2 EPYC) and 6.7e-6 (AVX-512
Xeon); torch's direct convolution measured 3e-5 and 2.7e-6 there, an im2col convolution 5.1e-6 on the Xeon
(``tests/networks/test_winograd.py`` keeps it within twice the im2col convolution's). It is a faster way to compute
the same network, not another network: parameters, ``state_dict`` and checkpoints are those of the plain
convolution.

Which convolutions it applies to: :func:`winograd_eligible` (kernel 3 along every axis, stride 1, dilation 1, one
group). :mod:`common.networks.blocks.conv_algorithms` switches a network's eligible layers over, and computes them this
way only for an fp32 input on the CPU with the CPU's autocast off; anywhere else (CUDA, whose cuDNN chooses its own
algorithms; bfloat16 autocast on a CPU with AMX) they compute the usual convolution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["WINOGRAD_MIN_CHANNELS", "winograd_conv", "winograd_eligible"]

WINOGRAD_MIN_CHANNELS = 128
"""The fewest input and output channels of a layer that :mod:`~common.networks.blocks.conv_algorithms` switches to
Winograd. Narrower layers keep the direct method: the transforms cost memory traffic in proportion to the channels,
the matrix products save multiplications in proportion to their square. On a 2-core AVX2 EPYC (1 thread, fp32)
Winograd's forward+backward was slower at 64 channels and below, at every size tried."""

# G (4x3): the filter transform of F(2, 3).
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def _input_transform(t: torch.Tensor, dim: int, tiles: int, split: bool) -> torch.Tensor:
    """``B^T d`` along one axis for every tile: ``(4, *t.shape)`` with that axis -> ``tiles``.

    ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]``; tile ``j`` is samples ``2j .. 2j + 3``.
    The axis is ``dim`` of length ``2 * tiles + 2``, or with ``split`` the pair ``(dim, dim + 1)`` of shape
    ``(2, tiles + 1)`` (parity, half-index: the innermost axis, de-interleaved so that every slice is contiguous).
    """
    if split:
        s = [t.select(dim, a % 2).narrow(dim, a // 2, tiles) for a in range(4)]
    else:
        s = [t.narrow(dim, a, 2 * tiles - 1)[(slice(None),) * dim + (slice(None, None, 2),)] for a in range(4)]
    if torch.compiler.is_compiling():  # traced by torch.compile, which fuses the stack (and cannot trace ``out=``)
        return torch.stack((s[0] - s[2], s[1] + s[2], s[2] - s[1], s[1] - s[3]))
    out = t.new_empty((4,) + s[0].shape)
    torch.sub(s[0], s[2], out=out[0])
    torch.add(s[1], s[2], out=out[1])
    torch.sub(s[2], s[1], out=out[2])
    torch.sub(s[1], s[3], out=out[3])
    return out


def _input_transform_t(g: torch.Tensor, dim: int, tiles: int, split: bool) -> torch.Tensor:
    """The transpose of :func:`_input_transform`: ``(4, *shape)`` -> ``shape`` with ``dim`` of length
    ``2 * tiles + 2`` (with ``split``: ``(2, tiles + 1)``), where the overlapping tiles add up.

    Tile ``j``'s sample ``a`` sits at ``2j + a``: ``a = 0, 2`` at the even positions ``j, j + 1``, ``a = 1, 3`` at
    the odd ones; their gradients are the columns of ``B^T``: ``g0``, ``g1 - g2 + g3``, ``g1 + g2 - g0``, ``-g3``.
    """
    g0, g1, g2, g3 = g.unbind(0)
    shape = list(g0.shape)
    # (parity, half-index) with split; else (half-index, parity), which flattens into the axis without a copy
    parity = dim if split else dim + 1
    shape[dim : dim + 1] = [2, tiles + 1] if split else [tiles + 1, 2]
    if torch.compiler.is_compiling():  # as in _input_transform: the same sums without in-place writes to views
        zero = torch.zeros_like(g0.narrow(dim, 0, 1))
        even = torch.cat((g0, zero), dim) + torch.cat((zero, g1 + g2 - g0), dim)
        odd = torch.cat((g1 - g2 + g3, zero), dim) - torch.cat((zero, g3), dim)
        out = torch.stack((even, odd), parity)
        return out if split else out.flatten(dim, dim + 1)
    out = g0.new_empty(shape)
    even, odd = out.select(parity, 0), out.select(parity, 1)
    even.narrow(dim, tiles, 1).zero_()
    even.narrow(dim, 0, tiles).copy_(g0)
    even.narrow(dim, 1, tiles).add_(g1 + g2 - g0)
    torch.sub(g1, g2, out=odd.narrow(dim, 0, tiles)).add_(g3)
    odd.narrow(dim, tiles, 1).zero_()
    odd.narrow(dim, 1, tiles).sub_(g3)
    return out if split else out.flatten(dim, dim + 1)


def _output_transform(m: torch.Tensor, dim: int, split: bool) -> torch.Tensor:
    """``A^T m`` along the leading axis (4 components) into ``dim`` of the rest: ``tiles`` -> ``2 * tiles``, or with
    ``split`` -> ``(2, tiles)`` (parity, half-index). ``A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]``."""
    m0, m1, m2, m3 = m.unbind(0)
    shape = list(m0.shape)
    parity = dim if split else dim + 1  # as in _input_transform_t
    shape.insert(parity, 2)
    if torch.compiler.is_compiling():  # as in _input_transform
        out = torch.stack((m0 + m1 + m2, m1 - m2 - m3), parity)
        return out if split else out.flatten(dim, dim + 1)
    out = m.new_empty(shape)
    torch.add(m1, m2, out=out.select(parity, 0)).add_(m0)
    torch.sub(m1, m2, out=out.select(parity, 1)).sub_(m3)
    return out if split else out.flatten(dim, dim + 1)


def _output_transform_t(dy: torch.Tensor, dim: int, split: bool) -> torch.Tensor:
    """The transpose of :func:`_output_transform`: ``dim`` of length ``2 * tiles`` (with ``split``: the pair
    ``(2, tiles)``) -> ``(4, ...)`` with ``tiles``."""
    pairs = dy if split else dy.unflatten(dim, (-1, 2)).transpose(dim, dim + 1)
    d0, d1 = pairs.select(dim, 0), pairs.select(dim, 1)
    if torch.compiler.is_compiling():  # as in _input_transform
        return torch.stack((d0, d0 + d1, d0 - d1, -d1))
    out = dy.new_empty((4,) + d0.shape)
    out[0].copy_(d0)
    torch.add(d0, d1, out=out[1])
    torch.sub(d0, d1, out=out[2])
    torch.neg(d1, out=out[3])
    return out


def _filter_transform(weight: torch.Tensor) -> torch.Tensor:
    """``G g G^T`` (nested per axis): ``(K, C, 3, ..., 3)`` -> ``(4^n, K, C)``.

    The component axes come out in the order :func:`_input_transform` stacks them (the last spatial axis's first).
    """
    n = weight.ndim - 2
    g = weight.new_tensor(_G)
    u = weight
    for i in range(n):  # after i axes: (c_{i-1}, ..., c_0, K, C, k_i, ...)
        u = torch.tensordot(g, u, dims=([1], [i + 2]))
    return u.reshape(4**n, weight.shape[0], weight.shape[1])


def _filter_transform_t(du: torch.Tensor, weight_shape: torch.Size) -> torch.Tensor:
    """The transpose of :func:`_filter_transform`: ``(4^n, K, C)`` -> ``(K, C, 3, ..., 3)``."""
    n = len(weight_shape) - 2
    gt = du.new_tensor(_G).t()
    d = du.reshape((4,) * n + tuple(weight_shape[:2]))
    for i in reversed(range(n)):  # (c_i, ..., c_0, K, C, k_{i+1}, ...) -> (c_{i-1}, ..., c_0, K, C, k_i, ...)
        d = torch.tensordot(gt, d, dims=([1], [0])).movedim(0, i + 2)
    return d.contiguous()


class _WinogradCore(torch.autograd.Function):
    """``y = A^T [(G w G^T) * (B^T x B)] A`` on an input padded to whole tiles.

    ``x``: ``(B, C, 2 t_0 + 2, ...)``; ``weight``: ``(K, C, 3, ...)``; output ``(B, K, 2 t_0, ...)``.
    After ``i`` spatial axes, the component axes ``(c_{i-1}, ..., c_0)`` lead, so spatial axis ``i`` sits at
    ``2 + 2i`` in every transform.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, tiles: tuple[int, ...]) -> torch.Tensor:
        n, batch = len(tiles), x.shape[0]
        u = _filter_transform(weight)
        m = torch.matmul(u.unsqueeze(1), _transformed_input(x, tiles))  # (4^n, B, K, T)
        # the input and the weight rather than their larger transforms are kept: the backward recomputes those
        ctx.save_for_backward(x, weight)
        ctx.tiles = tiles
        y = m.reshape((4,) * n + (batch, weight.shape[0]) + tuple(tiles))
        for i in reversed(range(n)):
            y = _output_transform(y, 2 + 2 * i, i == n - 1)
        return y.transpose(-1, -2).flatten(-2)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight = ctx.saved_tensors
        tiles = ctx.tiles
        n, batch = len(tiles), dy.shape[0]
        dm = dy.unflatten(-1, (-1, 2)).transpose(-1, -2).contiguous()
        for i in range(n):
            dm = _output_transform_t(dm, 2 + 2 * i, i == n - 1)
        dm = dm.reshape(4**n, batch, weight.shape[0], -1)
        dw = dx = None
        if ctx.needs_input_grad[1]:
            du = torch.matmul(dm, _transformed_input(x, tiles).transpose(-1, -2)).sum(1)
            dw = _filter_transform_t(du, weight.shape)
        if ctx.needs_input_grad[0]:
            dv = torch.matmul(_filter_transform(weight).transpose(-1, -2).unsqueeze(1), dm)
            dv = dv.reshape((4,) * n + (batch, x.shape[1]) + tuple(tiles))
            for i in reversed(range(n)):
                dv = _input_transform_t(dv, 2 + 2 * i, tiles[i], i == n - 1)
            dx = dv.transpose(-1, -2).flatten(-2)
        return dx, dw, None


def _transformed_input(x: torch.Tensor, tiles: tuple[int, ...]) -> torch.Tensor:
    """``B^T d B`` of every tile: ``(B, C, 2 t_0 + 2, ...)`` -> ``(4^n, B, C, prod(t))``."""
    n = len(tiles)
    # the innermost axis de-interleaved once, (2t + 2) -> (2, t + 1), so that its slices are contiguous
    v = x.unflatten(-1, (-1, 2)).transpose(-1, -2).contiguous()
    for i, t in enumerate(tiles):
        v = _input_transform(v, 2 + 2 * i, t, i == n - 1)
    return v.reshape(4**n, x.shape[0], x.shape[1], -1)


def winograd_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int | tuple[int, ...] = 0
) -> torch.Tensor:
    """``F.conv2d``/``F.conv3d`` with a 3x3(x3) kernel, stride 1, dilation 1 and one group, by Winograd F(2, 3).

    Args:
        x: input ``(B, C, *spatial)``, 2 or 3 spatial axes.
        weight: ``(K, C, 3, 3)`` or ``(K, C, 3, 3, 3)``.
        bias: ``(K,)`` or ``None``.
        padding: zero padding per spatial axis (an int for all).

    Returns:
        ``(B, K, *(s + 2 * p - 2))``, equal to the direct convolution up to float rounding.
    """
    n = x.ndim - 2
    pads = (padding,) * n if isinstance(padding, int) else tuple(padding)
    if weight.shape[2:] != (3,) * n or len(pads) != n or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"winograd_conv needs a 3-tap kernel on each of the {n} spatial axes and matching channels; got input "
            f"{tuple(x.shape)}, weight {tuple(weight.shape)}, padding {padding}."
        )
    out_sizes = [s + 2 * p - 2 for s, p in zip(x.shape[2:], pads)]
    if min(out_sizes) < 1:
        raise ValueError(f"winograd_conv: input {tuple(x.shape)} with padding {padding} is smaller than the kernel.")
    tiles = tuple((o + 1) // 2 for o in out_sizes)
    spec: list[int] = []
    for p, o, t in reversed(list(zip(pads, out_sizes, tiles))):  # F.pad lists the last axis first
        spec += [p, p + 2 * t - o]
    if any(spec):
        x = F.pad(x, spec)
    y = _WinogradCore.apply(x, weight, tiles)
    if any(2 * t != o for t, o in zip(tiles, out_sizes)):
        y = y[(slice(None), slice(None)) + tuple(slice(0, o) for o in out_sizes)]
    if bias is not None:
        y = y + bias.view((1, -1) + (1,) * n)
    return y


def winograd_eligible(module: nn.Module, min_channels: int = 0) -> bool:
    """Whether ``module`` may be computed by :func:`winograd_conv`: an ``nn.Conv2d``/``nn.Conv3d`` with kernel 3
    along every axis, stride 1, dilation 1, one group (any padding and ``padding_mode``: the non-zero modes pad
    before the convolution) and at least ``min_channels`` input and output channels."""
    if not isinstance(module, (nn.Conv2d, nn.Conv3d)):  # transposed convolutions are other classes
        return False
    n = len(module.kernel_size)
    return (
        tuple(module.kernel_size) == (3,) * n
        and tuple(module.stride) == (1,) * n
        and tuple(module.dilation) == (1,) * n
        and module.groups == 1
        and min(module.in_channels, module.out_channels) >= min_channels
    )
