"""CycleGAN's image pool of generated images for discriminator updates (Zhu et al. 2017, sec. 4).

CycleGAN and the methods built on it (UAGGAN, AGGAN, CDA-GAN) update their discriminators with a history of
generated images rather than only the newest ones, to reduce oscillation; the idea is Shrivastava et al.'s (2017,
sec. 2.3), whose own scheme for SimGAN differs and is :class:`~common.engines.HistoryBuffer`:

- :class:`ImagePool` (CycleGAN): up to 50 stored images; each new image is returned as it is or, with
  probability 1/2, swapped for a uniformly drawn stored image, which it replaces in the pool. The returned batch
  has the size of the new one and no fixed share of old images.
- :class:`~common.engines.HistoryBuffer` (SimGAN): half of every discriminator batch is drawn from the buffer, and
  half a batch of random buffer entries is then overwritten by new images.
"""

from __future__ import annotations

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """A pool of up to ``pool_size`` past generated samples (CycleGAN's discriminator history).

    :meth:`query` exchanges a batch with the pool sample by sample and returns a batch of the same size: while the
    pool holds fewer than ``pool_size`` samples, each new sample is stored and returned itself; once it is full,
    each new sample is, with probability 1/2, returned itself (the pool unchanged), or else stored in place of a
    uniformly drawn stored sample, which is returned instead. ``pool_size=0`` disables the pool (the new samples
    are returned). The pool is part of the training state (:meth:`state_dict`).

    Args:
        pool_size: capacity of the pool (50 in CycleGAN).
        seed: seed of the pool's own random generator (the global RNG is not used).
    """

    def __init__(self, pool_size: int = 50, seed: int = 0) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}.")
        self.pool_size = int(pool_size)
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Exchange a batch ``(B, C, *spatial)`` with the pool; the result is detached.

        Args:
            images: newly generated samples.

        Returns:
            A batch of the same shape ``(B, C, *spatial)``: each sample either the new one or one stored earlier.
        """
        images = images.detach()
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[index].to(image.device).clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        """The pool's content and random state, so that a resumed run continues with the same history."""
        stacked = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {"pool_size": self.pool_size, "images": stacked, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.pool_size = int(state["pool_size"])
        images = state["images"]
        self.images = [images[i : i + 1].clone() for i in range(images.shape[0])] if images.numel() else []
        self.generator.set_state(state["rng_state"])
