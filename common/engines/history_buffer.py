"""SimGAN's history of refined images (Shrivastava et al. 2017, sec. 2.3, Algorithm 2).

The discriminator of SimGAN is updated on mini-batches of which one half comes from the current refiner and the
other half from a buffer of images refined by earlier refiners; after each discriminator update, half a batch of
randomly chosen buffer entries is replaced by newly refined images. This differs from CycleGAN's
:class:`~common.engines.ImagePool` (Zhu et al. 2017, sec. 4: each new image is returned itself or, with
probability 1/2, swapped for a stored one, so a batch has no fixed share of old images), hence this separate class.
"""

from __future__ import annotations

import torch

__all__ = ["HistoryBuffer"]


class HistoryBuffer:
    """A buffer of up to ``buffer_size`` past refined images (SimGAN's discriminator history).

    :meth:`mix` builds a discriminator batch from ``B`` new images: once the buffer holds at least ``B // 2``
    images, ``B // 2`` of them (drawn uniformly without replacement) replace the second half of the batch, so the
    batch always has ``B - B // 2`` new and ``B // 2`` stored images; before that the batch is the new images only.
    :meth:`push` then stores new images: appended (up to the capacity; the rest of that batch is dropped) while the
    buffer is not full, afterwards ``max(B // 2, 1)`` randomly chosen new images overwrite as many random buffer
    entries. :meth:`mix_and_push` does both in this order, so the returned history images were always refined at
    earlier iterations. The buffer is part of the training state (:meth:`state_dict`).

    Args:
        buffer_size: capacity (``0`` disables the buffer: :meth:`mix` returns the new images).
        seed: seed of the buffer's own random generator (the global RNG is not used).
    """

    def __init__(self, buffer_size: int = 100, seed: int = 0) -> None:
        if buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0, got {buffer_size}.")
        self.buffer_size = int(buffer_size)
        self.images: torch.Tensor | None = None  # (N, C, *spatial) on CPU
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return 0 if self.images is None else int(self.images.shape[0])

    def _perm(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator)

    @torch.no_grad()
    def mix(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of the size of ``images``: its first ``B - B // 2`` new images and ``B // 2`` history images.

        Args:
            images: newly refined images ``(B, C, *spatial)``.

        Returns:
            detached ``(B, C, *spatial)`` on the device of ``images``.
        """
        images = images.detach()
        half = images.shape[0] // 2
        if self.buffer_size == 0 or half == 0 or len(self) < half:
            return images
        assert self.images is not None
        history = self.images[self._perm(len(self))[:half]].to(device=images.device, dtype=images.dtype)
        return torch.cat([images[: images.shape[0] - half], history], 0)

    @torch.no_grad()
    def push(self, images: torch.Tensor) -> None:
        """Store new images: fill up to ``buffer_size``, then replace ``B // 2`` random entries (at least one)."""
        if self.buffer_size == 0:
            return
        new = images.detach().float().cpu()
        if self.images is None:
            self.images = new[: self.buffer_size].clone()
            return
        room = self.buffer_size - len(self)
        if room > 0:
            self.images = torch.cat([self.images, new[:room]], 0)
            return
        count = min(max(new.shape[0] // 2, 1), len(self))
        slots = self._perm(len(self))[:count]
        self.images[slots] = new[self._perm(new.shape[0])[:count]]

    def mix_and_push(self, images: torch.Tensor) -> torch.Tensor:
        """:meth:`mix`, then :meth:`push` the new images; returns the mixed batch."""
        mixed = self.mix(images)
        self.push(images)
        return mixed

    def state_dict(self) -> dict:
        """Content and random state, so that a resumed run continues with the same history."""
        images = self.images if self.images is not None else torch.empty(0)
        return {"buffer_size": self.buffer_size, "images": images, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.buffer_size = int(state["buffer_size"])
        images = state["images"]
        self.images = images.clone() if images.numel() else None
        self.generator.set_state(state["rng_state"])
