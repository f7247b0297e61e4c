"""Noise-to-image GAN training step: DCGAN and WGAN (Han thesis, sec. 3.2.2), and WGAN-GP/LSGAN/hinge variants.

One iteration performs one discriminator (critic) update on a fresh real batch; every ``n_critic``-th
iteration also performs one generator update (the shared sequence of
:meth:`~common.engines.TrainingStep.adversarial_iteration`). WGAN (Arjovsky et al. 2017, Algorithm 1): ``loss="wgan"``,
``n_critic=5``, ``clip_value=0.01``, RMSprop 5e-5 (sec. 3.2.2). WGAN-GP (Gulrajani et al. 2017):
``loss="wgan"``, ``gp_weight=10`` and no clipping. DCGAN: ``loss="bce"``, ``n_critic=1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from common.losses import AdversarialLoss

from .step import TrainingStep

__all__ = ["GANStep"]


class GANStep(TrainingStep):
    """Training step of an unconditional noise-to-image GAN.

    Args:
        generator: maps latents ``(B, *latent_shape)`` to images ``(B, C, *spatial)``.
        discriminator: maps images to raw outputs ``(B, 1)`` (or a patch map).
        g_optimizer: optimiser of the generator.
        d_optimizer: optimiser of the discriminator.
        latent_shape: shape of one latent sample, e.g. ``100`` or ``(100,)``.
        device: training device.
        loss: adversarial criterion, ``"bce"`` (DCGAN), ``"wgan"``, ``"lsgan"`` or ``"hinge"``.
        n_critic: discriminator updates per generator update (5 for WGAN).
        clip_value: WGAN weight clipping bound applied to the discriminator after each update (``None``: off).
        gp_weight: WGAN-GP gradient-penalty weight (0: off).
        drift_weight: weight of the drift term ``E[D(real)^2]`` (PGGAN uses 0.001; 0: off).
        real_label: target of real samples for ``bce``/``lsgan`` (e.g. 0.9 for one-sided label smoothing).
        amp: mixed precision; amp_dtype: ``"bfloat16"`` or ``"float16"``.
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        image_key: key of the real images in the batch.
        schedulers: optional learning-rate schedulers, keys ``"generator"``/``"discriminator"``, stepped per epoch.
        augment: differentiable augmentation applied to every batch the discriminator sees, real and generated, in
            both updates (e.g. :class:`~common.engines.DiffAugment`, Zhao et al. 2020); ``None``: off.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        latent_shape: int | Sequence[int],
        device: str | torch.device = "cpu",
        loss: str = "bce",
        n_critic: int = 1,
        clip_value: float | None = None,
        gp_weight: float = 0.0,
        drift_weight: float = 0.0,
        real_label: float = 1.0,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        image_key: str = "image",
        schedulers: dict[str, Any] | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
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
        self.latent_shape = (latent_shape,) if isinstance(latent_shape, int) else tuple(latent_shape)
        self.adversarial = AdversarialLoss(loss, real_label=real_label)
        self.clip_value = clip_value
        self.gp_weight = float(gp_weight)
        self.drift_weight = float(drift_weight)
        self.augment = augment

    def sample_latent(self, batch_size: int) -> torch.Tensor:
        """Standard normal latents ``(batch_size, *latent_shape)`` on the device."""
        return torch.randn((batch_size, *self.latent_shape), device=self.device)

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        real = self.images(batchdata)
        batch_size = real.shape[0]
        return self.adversarial_iteration(
            engine,
            real,
            generate=lambda net: net(self.sample_latent(batch_size)),
            discriminate=lambda net, x: net(x if self.augment is None else self.augment(x)),
            adversarial=self.adversarial,
            gp_weight=self.gp_weight,
            drift_weight=self.drift_weight,
            clip_value=self.clip_value,
        )
