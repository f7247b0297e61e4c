"""Bucketed averaging of gradients over ranks: one ``all_reduce`` per bucket of a few MB instead of one per parameter.

This is what :class:`~torch.nn.parallel.DistributedDataParallel`'s reducer does (its buckets are 25 MB); the
training steps use it without the DDP wrapper (see :class:`common.engines.TrainingStep`), because adversarial
steps freeze one network during the other's update, which DDP's reducer does not support.

The bucket layout is a function of the parameter order, ``requires_grad``, dtype and device only, so every rank
builds the same layout whatever gradients it happens to have. A parameter with no gradient on this rank takes
part as zeros; each bucket carries one extra element per parameter (1 where the rank had a gradient) so that a
parameter that got no gradient on any rank keeps ``grad=None`` (the optimiser skips it, as it would without
distribution), while one that got a gradient on some ranks gets the average over all ranks with zeros for the
others (every rank then applies the same update). Reading those counts back to the host happens only on a rank
that lacks some gradient, so the usual case costs no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = ["DEFAULT_BUCKET_MB", "all_reduce_gradients", "gradient_buckets"]

DEFAULT_BUCKET_MB = 4.0
"""Bucket size: DDP's 25 MB is tuned for GPU interconnects; on CPU (gloo) buckets of 1-4 MB measured as fast as 25 MB
(``scripts/benchmark_grad_sync.py``) and start communicating with less memory copied at once."""


def gradient_buckets(params: Sequence[torch.Tensor], bucket_mb: float = DEFAULT_BUCKET_MB) -> list[list[int]]:
    """Split the parameters that require gradients into buckets of about ``bucket_mb`` megabytes.

    Parameters are taken in the given order and grouped by (dtype, device); a bucket is closed once it holds at
    least ``bucket_mb`` MB (a parameter larger than that is a bucket of its own).

    Args:
        params: the parameters, in the same order on every rank.
        bucket_mb: target bucket size in MB (``2**20`` bytes); must be positive.

    Returns:
        Lists of indices into ``params``, one list per bucket; parameters with ``requires_grad=False`` are in none.
    """
    if bucket_mb <= 0:
        raise ValueError(f"bucket_mb must be positive, got {bucket_mb}.")
    cap = bucket_mb * 2**20
    open_buckets: dict[tuple[torch.dtype, torch.device], tuple[list[int], list[int]]] = {}
    buckets: list[list[int]] = []
    for i, p in enumerate(params):
        if not p.requires_grad:
            continue
        indices, size = open_buckets.setdefault((p.dtype, p.device), ([], [0]))
        indices.append(i)
        size[0] += p.numel() * p.element_size()
        if size[0] >= cap:
            buckets.append(list(indices))
            indices.clear()
            size[0] = 0
    buckets.extend(list(indices) for indices, _ in open_buckets.values() if indices)
    return sorted(buckets, key=lambda b: b[0])


@torch.no_grad()
def all_reduce_gradients(
    params: Sequence[torch.Tensor], bucket_mb: float = DEFAULT_BUCKET_MB, group: dist.ProcessGroup | None = None
) -> None:
    """Average the gradients of ``params`` over the ranks of ``group``, in place, one ``all_reduce`` per bucket.

    Each bucket is flattened into one tensor ``(sum of numel + number of parameters,)`` (gradients, then the
    has-gradient flags), summed over ranks, divided by the world size and copied back into ``p.grad``.

    Args:
        params: the parameters, in the same order on every rank (e.g. those of one optimiser's networks).
        bucket_mb: bucket size in MB, see :func:`gradient_buckets`.
        group: the process group (default: the world).
    """
    world = dist.get_world_size(group)
    for bucket in gradient_buckets(params, bucket_mb):
        members = [params[i] for i in bucket]
        complete = all(p.grad is not None for p in members)
        # the flags are made on the device (no host-to-device copy): all ones in the usual case
        ones, zeros = members[0].new_ones(len(members)), members[0].new_zeros(1)
        flags = ones if complete else torch.cat([ones[:1] if p.grad is not None else zeros for p in members])
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in members]
        flat = torch.cat([*grads, flags])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        n_grad = flat.numel() - len(members)
        flat[:n_grad].div_(world)
        counts = None if complete else flat[n_grad:].tolist()
        offset = 0
        for j, p in enumerate(members):
            view = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if p.grad is not None:
                p.grad.copy_(view)
            elif counts is not None and counts[j] > 0:
                p.grad = view.clone()
