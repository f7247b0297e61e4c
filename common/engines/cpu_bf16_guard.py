"""A guard against a oneDNN fault of bf16 3D convolutions on CPUs without AMX.

On a CPU with AVX-512-BF16 and no AMX (an AMD EPYC of family 26, torch 2.13.0+cpu, 2026-12-05), the bf16 weight
gradient of a stride-1 3D convolution whose output is 2 voxels wide comes out NaN, in some calls and not others (the
kernel reads memory it has not written: poisoning freed memory with NaN makes it fail every time). Measured with
every combination of 16 or 256 input and 1 or 8 output channels, kernels 3 and 4, strides 1 and 2 and cubic inputs of
2-12 voxels: only the stride-1 convolutions with a 2x2x2 output failed; 2D convolutions, stride 2 and every other
output size did not. A 3D PatchGAN discriminator on 32^3 inputs (three stride-2 layers, then two stride-1 ones:
4 -> 3 -> 2 voxels) has such a last layer.

:func:`guard_tiny_3d_convolutions` makes every stride-1 :class:`torch.nn.Conv3d` of a network run in float32, with
autocast off, whenever its output would be at most :data:`TINY_OUTPUT` voxels along an axis: a few voxels' worth of
work, so the cost is nil; every other call is untouched. :class:`~common.engines.TrainingStep` installs it when its
precision policy trains in bf16 on a CPU without AMX.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

import torch
import torch.nn as nn

__all__ = ["TINY_OUTPUT", "guard_tiny_3d_convolutions", "is_guarded"]

TINY_OUTPUT = 2
"""Outputs at most this many voxels wide along some axis run in float32 (the fault was seen at 2)."""


def _output_sizes(conv: nn.Conv3d, spatial: tuple[int, ...]) -> list[int]:
    """The output size of ``conv`` along each spatial axis for an input of ``spatial`` voxels."""
    if isinstance(conv.padding, str):
        return (
            list(spatial)
            if conv.padding == "same"
            else [n - d * (k - 1) for n, d, k in zip(spatial, conv.dilation, conv.kernel_size)]
        )
    return [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, p, d, k, s in zip(spatial, conv.padding, conv.dilation, conv.kernel_size, conv.stride)
    ]


def _guarded_conv_forward(
    self: nn.Conv3d, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``Conv3d._conv_forward``, in float32 with autocast off when the output is tiny under CPU autocast."""
    if (
        input.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and min(_output_sizes(self, input.shape[-3:])) <= TINY_OUTPUT
    ):
        with torch.autocast("cpu", enabled=False):
            return type(self)._conv_forward(self, input.float(), weight.float(), None if bias is None else bias.float())
    return type(self)._conv_forward(self, input, weight, bias)


def is_guarded(conv: nn.Module) -> bool:
    """Whether :func:`guard_tiny_3d_convolutions` has guarded ``conv``."""
    forward = conv.__dict__.get("_conv_forward")
    return isinstance(forward, types.MethodType) and forward.__func__ is _guarded_conv_forward


def guard_tiny_3d_convolutions(networks: Iterable[nn.Module]) -> int:
    """Guard every stride-1 ``Conv3d`` of ``networks`` (see the module docstring); idempotent.

    Args:
        networks: the modules to search (their submodules included).

    Returns:
        The number of convolutions guarded by this call.
    """
    count = 0
    for network in networks:
        for module in network.modules():
            if isinstance(module, nn.Conv3d) and all(s == 1 for s in module.stride) and not is_guarded(module):
                module._conv_forward = types.MethodType(_guarded_conv_forward, module)
                count += 1
    return count
