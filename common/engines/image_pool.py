"""History buffer of generated images for discriminator updates (Shrivastava et al. 2017, sec. 2.3).

CycleGAN (Zhu et al. 2017, sec. 4) and the methods built on it (UAGGAN, AGGAN, CDA-GAN) update their
discriminators with a buffer of the 50 last generated images rather than only the newest ones; SimGAN's refiner
training uses the same kind of buffer.
"""

from __future__ import annotations

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """A buffer of up to ``pool_size`` past samples.

    :meth:`query` returns a batch of the same size as its input: while the buffer fills, the new samples
    themselves; afterwards each sample is, with probability 1/2, the new one, or a stored one (returned and
    replaced by the new one). ``pool_size=0`` disables the buffer.

    Args:
        pool_size: capacity of the buffer (50 in CycleGAN).
        seed: seed of the buffer's own random generator (the global RNG is not used).
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
        """Exchange a batch ``(B, C, *spatial)`` with the buffer; the result is detached.

        Args:
            images: newly generated samples.

        Returns:
            A batch of the same shape, mixing new and stored samples.
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
        """The buffer's content and random state, so that a resumed run continues with the same history."""
        stacked = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {"pool_size": self.pool_size, "images": stacked, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.pool_size = int(state["pool_size"])
        images = state["images"]
        self.images = [images[i : i + 1].clone() for i in range(images.shape[0])] if images.numel() else []
        self.generator.set_state(state["rng_state"])
