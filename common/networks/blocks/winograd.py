"""3x3 (2D) and 3x3x3 (3D) convolutions by Winograd's minimal filtering algorithm F(2, 3), for CPUs.

A stride-1 convolution with a 3-tap kernel computes 2 outputs from a 4-sample tile with 4 multiplications instead of
6 (Winograd 1980; Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks", sec. 4):
``Y = A^T [(G g G^T) * (B^T d B)] A`` per 4x4 input tile ``d`` and 3x3 filter ``g`` in 2D, and the same nested along
each axis in 3D. Across channels the element-wise products become ``4^n`` matrix products ``(K, C) @ (C, tiles)``,
so a 3x3 convolution takes 16/36 of the direct method's multiplications (3x3x3: 64/216) and runs on the CPU's
matrix-multiply kernels. The backward pass is the transposed algorithm (the same matrix products on the gradients),
written out explicitly rather than recorded op by op, so it allocates no zero-filled slice gradients. Like the direct
convolution it keeps only the input and the weight for the backward pass and recomputes their transforms (the
input's is 4x its size in 2D, 8x in 3D) rather than storing them.

The result equals the direct convolution up to float rounding: the transforms use only the coefficients 0, +-1 and
+-1/2. Against a float64 reference at 256 channels the fp32 error measured 6e-6, the direct method's 3e-5
(``tests/networks/test_winograd.py`` keeps it within twice the direct method's). It is a faster way to compute
the same network, not another network: parameters, ``state_dict`` and checkpoints are those of the plain
convolution.

Which convolutions it applies to: :func:`winograd_eligible` (kernel 3 along every axis, stride 1, dilation 1, one
group, numeric or ``"same"``/``"valid"`` padding) and, at each call, an fp32 input on the CPU with the CPU's
autocast off. Anywhere else (CUDA, whose cuDNN chooses its own algorithms; bfloat16 autocast on a CPU with AMX) the
module computes the usual convolution. :func:`use_winograd` switches the eligible ``nn.Conv2d``/``nn.Conv3d``
modules of a network over in place; :class:`~common.engines.acceleration.NetworkAcceleration` does so for a training
step with ``conv_algorithm: winograd`` (or ``auto``: per call signature, where :func:`measured_speedup` measures it
faster).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "WINOGRAD_AUTO_MARGIN",
    "measured_speedup",
    "use_winograd",
    "winograd_conv",
    "winograd_eligible",
    "winograd_measurements",
]

WINOGRAD_AUTO_MARGIN = 1.1
"""``conv_algorithm: auto`` uses Winograd for a call signature only where :func:`measured_speedup` measures it at least
this much faster."""

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
    out = m.new_empty(shape)
    torch.add(m1, m2, out=out.select(parity, 0)).add_(m0)
    torch.sub(m1, m2, out=out.select(parity, 1)).sub_(m3)
    return out if split else out.flatten(dim, dim + 1)


def _output_transform_t(dy: torch.Tensor, dim: int, split: bool) -> torch.Tensor:
    """The transpose of :func:`_output_transform`: ``dim`` of length ``2 * tiles`` (with ``split``: the pair
    ``(2, tiles)``) -> ``(4, ...)`` with ``tiles``."""
    pairs = dy if split else dy.unflatten(dim, (-1, 2)).transpose(dim, dim + 1)
    d0, d1 = pairs.select(dim, 0), pairs.select(dim, 1)
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


def _numeric_padding(conv: nn.modules.conv._ConvNd) -> tuple[int, ...] | None:
    """The zero padding per axis of a 3-tap convolution, or ``None`` where it is not expressible as such."""
    if isinstance(conv.padding, str):
        return {"same": (1,) * len(conv.kernel_size), "valid": (0,) * len(conv.kernel_size)}.get(conv.padding)
    return tuple(int(p) for p in conv.padding)


def winograd_eligible(module: nn.Module, min_channels: int = 0) -> bool:
    """Whether :func:`use_winograd` may switch ``module`` over: an ``nn.Conv2d``/``nn.Conv3d`` with kernel 3 along
    every axis, stride 1, dilation 1, one group, numeric or ``"same"``/``"valid"`` padding (any ``padding_mode``:
    the non-zero modes pad before the convolution) and at least ``min_channels`` input and output channels."""
    if not isinstance(module, (nn.Conv2d, nn.Conv3d)):  # transposed convolutions are other classes
        return False
    n = len(module.kernel_size)
    return (
        tuple(module.kernel_size) == (3,) * n
        and tuple(module.stride) == (1,) * n
        and tuple(module.dilation) == (1,) * n
        and module.groups == 1
        and _numeric_padding(module) is not None
        and min(module.in_channels, module.out_channels) >= min_channels
    )


def _winograd_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """At a call: an fp32 CPU input and weight, the CPU's autocast off (else the direct convolution runs)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


class _WinogradForward:
    """``_ConvNd._conv_forward`` of a switched-over convolution, set as an attribute of the instance.

    With ``measure``, each new call signature (see :func:`measured_speedup`) is timed once per process, and Winograd
    runs only where it measured at least :data:`WINOGRAD_AUTO_MARGIN` faster. An object rather than a bound method,
    so that a pickled module (``torch.save(model)``) loads again and a ``copy.deepcopy`` refers to the copy.
    """

    def __init__(self, conv: nn.modules.conv._ConvNd, measure: bool = False) -> None:
        self.conv = conv
        self.measure = measure

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        conv = self.conv
        padding = _numeric_padding(conv)
        if not _winograd_applies(x, weight) or (self.measure and not self._measured_faster(x, weight, padding)):
            return type(conv)._conv_forward(conv, x, weight, bias)
        if conv.padding_mode != "zeros":
            x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
            padding = (0,) * len(conv.kernel_size)
        return winograd_conv(x, weight, bias, padding)

    @staticmethod
    def _measured_faster(x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, ...]) -> bool:
        """The call's signature, timed with zero padding (any padding mode costs the convolution the same)."""
        trained = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        one = (1,) + tuple(x.shape[1:])  # one sample: the products run per sample, the time scales with the batch
        return measured_speedup(one, tuple(weight.shape), padding, trained) >= WINOGRAD_AUTO_MARGIN


def use_winograd(network: nn.Module, enable: bool = True, min_channels: int = 128, measure: bool = False) -> int:
    """Switch the eligible convolutions of ``network`` to (or, ``enable=False``, back from) Winograd, in place.

    The modules, their parameters (and parametrizations such as spectral norm) and ``state_dict`` stay as they are:
    the instance's ``_conv_forward`` is replaced. A ``copy.deepcopy`` of the network (an EMA copy) and a pickled
    whole module keep the switch; ``enable=False`` undoes it. A convolution whose ``_conv_forward`` something else
    has replaced already (e.g. :mod:`common.engines.cpu_bf16_guard`) is left as it is.

    Args:
        network: any module.
        enable: switch over (``True``) or restore the direct convolution (``False``).
        min_channels: the fewest input and output channels of a switched convolution. Narrower layers keep the
            direct method: the transforms cost memory traffic in proportion to the channels, the matrix products
            save multiplications in proportion to their square. On a 2-core AVX2 EPYC (1 thread, fp32) Winograd's
            forward+backward was slower at 64 channels and below, at every size tried.
        measure: use Winograd only for the call signatures where :func:`measured_speedup` finds it faster (the
            ``conv_algorithm: auto`` of a training step); ``False``: always, where it applies.

    Returns:
        the number of convolutions switched (or restored).
    """
    count = 0
    for module in network.modules():
        own = vars(module).get("_conv_forward")
        switched = isinstance(own, _WinogradForward)
        if enable and own is None and winograd_eligible(module, min_channels):
            module._conv_forward = _WinogradForward(module, measure)
            count += 1
        elif not enable and switched:
            del module._conv_forward
            count += 1
    return count


def _best_time(fn: Any, rounds: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


_MEASURED: dict[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], bool], float] = {}


def measured_speedup(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    padding: tuple[int, ...],
    trained: bool,
    rounds: int = 2,
) -> float:
    """Direct time / Winograd time of one convolution call signature on this process's CPU threads, cached.

    Times the forward (with ``trained``: forward and backward, the gradients of input and weight) of both methods on
    random fp32 tensors of the call's shapes, the best of ``rounds`` passes each after one untimed pass. The global
    random state and any network are untouched. A switched convolution measures the signature of one sample of its
    batch at its first call: for a CycleGAN's residual blocks at 256x256 (one signature for all 18), about 1 s on a
    2-core AVX2 EPYC, 1 thread.

    Args:
        input_shape: ``(B, C, *spatial)`` of the input, before padding.
        weight_shape: ``(K, C, 3, ...)``.
        padding: padding per spatial axis (timed as zero padding).
        trained: time the backward too.
        rounds: timed passes per method.

    Returns:
        above 1 where Winograd is faster.
    """
    key = (tuple(input_shape), tuple(weight_shape), tuple(padding), bool(trained))
    if key not in _MEASURED:
        _MEASURED[key] = _measure(*key, rounds=rounds)
    return _MEASURED[key]


def _measure(
    input_shape: tuple[int, ...], weight_shape: tuple[int, ...], padding: tuple[int, ...], trained: bool, rounds: int
) -> float:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator).requires_grad_(trained)
    weight = (torch.randn(weight_shape, generator=generator) * 0.02).requires_grad_(trained)
    conv = F.conv2d if len(input_shape) == 4 else F.conv3d

    def run(fn: Any) -> Any:
        def once() -> None:
            with torch.enable_grad() if trained else torch.no_grad():
                y = fn()
                if trained:
                    torch.autograd.grad(y, (x, weight), torch.ones_like(y))

        return once

    direct = _best_time(run(lambda: conv(x, weight, None, 1, padding)), rounds)
    return direct / _best_time(run(lambda: winograd_conv(x, weight, None, padding)), rounds)


def winograd_measurements() -> list[dict[str, Any]]:
    """What :func:`measured_speedup` measured in this process: ``input``, ``weight`` shapes, ``trained``,
    ``speedup`` and ``winograd`` (whether it was at least :data:`WINOGRAD_AUTO_MARGIN`)."""
    return [
        {
            "input": list(key[0]),
            "weight": list(key[1]),
            "trained": key[3],
            "speedup": round(value, 3),
            "winograd": value >= WINOGRAD_AUTO_MARGIN,
        }
        for key, value in _MEASURED.items()
    ]
