"""Instance normalisation computed by torch's group-norm kernel on a CPU, switched per module in place.

Instance normalisation without running statistics normalises each channel of each sample over its positions, which is
group normalisation with one group per channel: ``instance_norm(x, weight=w, bias=b, eps=e) == group_norm(x, C, w, b,
e)`` for ``x`` of shape ``(N, C, *spatial)``, up to float rounding. On a CPU the two take different kernels:
``F.instance_norm`` reshapes the input to one batch-norm channel per (sample, channel) and runs the batch-norm kernel,
``F.group_norm`` has a fused kernel of its own. Measured on a 2-core Intel Xeon VM (CPU family 6, model 106, AVX-512, no
bf16 instructions; torch 2.13.0+cpu), fp32, contiguous inputs, fastest of 5 calls: forward 1.3-6.6x, forward and
backward 1.2-2.5x as fast with the group-norm kernel over 14 shapes from ``(2, 8, 5, 5)`` to ``(1, 64, 256, 256)`` and
``(4, 64, 32, 32, 32)`` on 1 thread (the commands in ``scripts/experiments/speed_table.md``, [D9]); whole training steps
at 256x256 1.02x (CycleGAN) and 1.11x (CDA-GAN, whose attention networks add 22 narrower norms; [D6], [D7]).
On channels-last inputs the group-norm kernel was slower for 5 of the 14 shapes (0.50-0.85x, the small ones with many
channels), so a switched module uses it only for a contiguous float32 input on the CPU; anything else (CUDA, bfloat16
under autocast, channels-last, float64) takes the module's own ``F.instance_norm``, and so does an input of one position
per channel, which it rejects. Modules with running statistics (``track_running_stats=True``) are never switched: their
training updates the statistics, which group norm does not.

Parameters, buffers, ``state_dict`` and checkpoints stay those of the ``nn.InstanceNorm*d`` module: only the
instance's ``_apply_instance_norm`` is replaced (the module's own input checks and unbatched-input handling run as
before). A ``copy.deepcopy`` (an EMA copy) and a pickled whole module keep the switch; ``enable=False`` undoes it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["GroupNormKernel", "use_group_norm_kernel"]


class GroupNormKernel:
    """``_InstanceNorm._apply_instance_norm`` of a switched module, set as an attribute of the instance.

    An object rather than a bound method, so that a pickled module loads again and a ``copy.deepcopy`` refers to
    the copy.

    Args:
        norm: an instance norm module without running statistics.
    """

    def __init__(self, norm: _InstanceNorm) -> None:
        self.norm = norm

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        if x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous() and math.prod(x.shape[2:]) > 1:
            return F.group_norm(x, x.shape[1], norm.weight, norm.bias, norm.eps)
        return type(norm)._apply_instance_norm(norm, x)


def use_group_norm_kernel(network: nn.Module, enable: bool = True) -> int:
    """Compute the instance norms of ``network`` without running statistics by the group-norm kernel (see the
    module docstring), or (``enable=False``) restore their own, in place.

    Args:
        network: any module.
        enable: switch over (``True``) or back (``False``).

    Returns:
        the number of instance norm modules switched (or restored).
    """
    count = 0
    for module in network.modules():
        if not isinstance(module, _InstanceNorm):
            continue
        own = vars(module).get("_apply_instance_norm")
        if enable and own is None and not module.track_running_stats:
            module._apply_instance_norm = GroupNormKernel(module)
            count += 1
        elif not enable and isinstance(own, GroupNormKernel):
            del module._apply_instance_norm
            count += 1
    return count
