"""Latent inputs of noise-to-image generators, as a dataset of dicts (the input of an inference evaluator)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["latent_samples"]


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
