"""Training step of MSG-GAN (Karnewar & Wang 2020): multi-scale images between generator and discriminator.

MSG-GAN is a baseline of the CDA-GAN paper (paper 000, sec. 4.4 (iii), Tables 2-3, Fig. 6). The generator
(:class:`~common.networks.MSGGANGenerator`) returns one image per resolution; the discriminator
(:class:`~common.networks.MSGGANDiscriminator`) takes one image per resolution, so that its gradients reach every
generator block directly. Real images are average-pooled (2x per step) from the full resolution down to every
smaller one, so the discriminator sees real and generated images at the same scales.

One iteration: a discriminator update on a fresh real batch and fresh generated images (without gradients), then
on every ``n_critic``-th iteration a generator update with the discriminator frozen, both under the shared
:class:`~common.engines.TrainingStep` helpers (autocast, gradient scaling, divergence check, gradient all-reduce).
The loss is the relativistic average hinge (``loss="rahinge"``, the loss of MSG-GAN's main results;
:func:`common.losses.relativistic_average_hinge`), whose updates need the scores of real and generated images
together; the non-relativistic criteria of :class:`common.losses.AdversarialLoss` are accepted too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from common.losses import ADVERSARIAL_CRITERIA, AdversarialLoss, relativistic_average_hinge
from monai.networks.layers.factories import Pool

from .step import TrainingStep, unwrap

__all__ = ["MSG_GAN_LOSSES", "MSGGANStep"]

#: losses of :class:`MSGGANStep`: the relativistic average hinge and the criteria of ``AdversarialLoss``.
MSG_GAN_LOSSES = ("rahinge",) + ADVERSARIAL_CRITERIA


def image_pyramid(image: torch.Tensor, num_scales: int) -> list[torch.Tensor]:
    """``image`` and its 2x, 4x, ... average-pooled versions, coarse to fine.

    Args:
        image: ``(B, C, *spatial)`` at the finest resolution (each side divisible by ``2^(num_scales - 1)``).
        num_scales: number of images returned.

    Returns:
        ``num_scales`` tensors ``(B, C, *spatial / 2^k)`` for ``k = num_scales - 1, ..., 0``.
    """
    pool = Pool[Pool.AVG, image.ndim - 2](kernel_size=2)
    images = [image]
    for _ in range(num_scales - 1):
        images.append(pool(images[-1]))
    return images[::-1]


class MSGGANStep(TrainingStep):
    """Training step of MSG-GAN.

    Args:
        generator: an :class:`~common.networks.MSGGANGenerator` (its ``multi_scale(z)`` gives the images).
        discriminator: an :class:`~common.networks.MSGGANDiscriminator` (takes the list of images).
        g_optimizer: optimiser of the generator.
        d_optimizer: optimiser of the discriminator.
        latent_size: length of the latent vector.
        device: training device.
        loss: ``"rahinge"`` (default) or one of ``"bce"``, ``"lsgan"``, ``"wgan"``, ``"hinge"``.
        n_critic: discriminator updates per generator update.
        amp: mixed precision; amp_dtype: ``"bfloat16"`` or ``"float16"``.
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        image_key: key of the real images in the batch.
        schedulers: optional learning-rate schedulers, keys ``"generator"``/``"discriminator"``.

    Shapes:
        batch ``image``: ``(B, C, *[image_size] * spatial_dims)`` in ``[-1, 1]``.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        latent_size: int,
        device: str | torch.device = "cpu",
        loss: str = "rahinge",
        n_critic: int = 1,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        image_key: str = "image",
        schedulers: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            networks={"generator": generator, "discriminator": discriminator},
            optimizers={"generator": g_optimizer, "discriminator": d_optimizer},
            device=device,
            schedulers=schedulers,
            amp=amp,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            compile=compile,
            conv_algorithm=conv_algorithm,
            n_critic=n_critic,
            image_key=image_key,
        )
        loss = loss.lower()
        if loss not in MSG_GAN_LOSSES:
            raise ValueError(f"loss must be one of {MSG_GAN_LOSSES}, got {loss!r}.")
        self.loss = loss
        self.adversarial = None if loss == "rahinge" else AdversarialLoss(loss)
        self.latent_size = int(latent_size)
        self.num_scales = len(unwrap(generator).resolutions)

    def sample_latent(self, batch_size: int) -> torch.Tensor:
        """Standard normal latents ``(batch_size, latent_size)`` on the device."""
        return torch.randn(batch_size, self.latent_size, device=self.device)

    def generate(self, generator: nn.Module, batch_size: int) -> list[torch.Tensor]:
        """The generator's images of every scale (coarse to fine) for fresh latents."""
        return unwrap(generator).multi_scale(self.sample_latent(batch_size))

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss on the scores of real and generated images."""
        if self.adversarial is None:
            return relativistic_average_hinge(real_scores, fake_scores, for_discriminator=True)
        return self.adversarial(real_scores, True) + self.adversarial(fake_scores, False)

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        real = image_pyramid(self.images(batchdata), self.num_scales)
        n = real[0].shape[0]
        disc = self.networks["discriminator"]
        with torch.no_grad(), self.autocast():
            fake = [x.float() for x in self.generate(self.module("generator", frozen=True), n)]
        with self.autocast():
            d_loss = self.discriminator_loss(disc(real), disc(fake))
        self.optimise(engine, "discriminator", d_loss)
        out = {"loss_d": d_loss}

        if self.generator_turn(engine):
            frozen = self.module("discriminator", frozen=True)

            def loss_fn() -> torch.Tensor:
                fake_scores = frozen(self.generate(self.networks["generator"], n))
                if self.adversarial is not None:
                    return self.adversarial(fake_scores, True, for_discriminator=False)
                return relativistic_average_hinge(frozen(real), fake_scores, for_discriminator=False)

            out["loss_g"] = self.generator_update(engine, "generator", loss_fn, ("discriminator",))
        return self.report(out)

    @torch.no_grad()
    def sample(self, num: int) -> torch.Tensor:
        """``num`` generated images at the finest resolution (generator in eval mode, its mode restored)."""
        gen = unwrap(self.networks["generator"])
        was_training = gen.training
        gen.eval()
        out = gen(self.sample_latent(num)).float()
        gen.train(was_training)
        return out
