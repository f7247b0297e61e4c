"""Latent inputs of generators, as a dataset of dicts (the input of an inference evaluator).

- :func:`latent_samples`: latents alone, for noise-to-image generators;
- :func:`conditional_latent_samples`: each real datalist entry repeated with its own latents, for generators that
  take an image (and its class) as condition, e.g. GA-UNet's ``G(z, x_i)`` (paper 002, sec. II-B).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["conditional_latent_samples", "latent_samples"]


def latent_samples(
    num_samples: int, latent_shape: int | Sequence[int], seed: int = 0, key: str = "image"
) -> list[dict[str, torch.Tensor | int]]:
    """``num_samples`` standard normal latents drawn from a seeded generator (global RNG untouched).

    Args:
        num_samples: number of latents.
        latent_shape: shape of one latent, e.g. ``100``.
        seed: seed of the draw; the same seed gives the same latents.
        key: dictionary key of the latent (``"image"``: the model-zoo name of a network's input).

    Returns:
        A list of ``{key: tensor (*latent_shape), "index": i}``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    shape = (latent_shape,) if isinstance(latent_shape, int) else tuple(latent_shape)
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn((num_samples, *shape), generator=gen)
    return [{key: z[i], "index": i} for i in range(num_samples)]


def conditional_latent_samples(
    entries: Sequence[Mapping[str, Any]],
    samples_per_image: int,
    latent_shape: int | Sequence[int],
    seed: int = 0,
    key: str = "z",
) -> list[dict[str, Any]]:
    """``samples_per_image`` copies of every entry, each with its own standard normal latent (global RNG untouched).

    The latents are drawn in entry order from one seeded generator, so the same entries, count and seed give the same
    samples.

    Args:
        entries: datalist entries (``{"image": ..., "class": ..., ...}``); copied, not modified.
        samples_per_image: latents per entry (K).
        latent_shape: shape of one latent, e.g. ``128``.
        seed: seed of the draw.
        key: dictionary key of the latent.

    Returns:
        ``len(entries) * samples_per_image`` dicts: the entry's items plus ``key`` (a tensor ``(*latent_shape)``),
        ``"source_index"`` (the entry's position) and ``"sample_index"`` (``0 .. K - 1``).
    """
    if samples_per_image < 1:
        raise ValueError(f"samples_per_image must be >= 1, got {samples_per_image}.")
    if not entries:
        raise ValueError("no entries to condition on.")
    shape = (latent_shape,) if isinstance(latent_shape, int) else tuple(latent_shape)
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for i, entry in enumerate(entries):
        z = torch.randn((int(samples_per_image), *shape), generator=gen)
        out.extend({**entry, key: z[k], "source_index": i, "sample_index": k} for k in range(int(samples_per_image)))
    return out
