"""GA-UNet training step: Algorithm 1 of paper 002 (sec. II-B eq. 4-5, sec. II-D), WGAN-GP on same-class pairs.

One iteration on a batch of pairs (``image``: ``x_i``, ``pair``: ``x_j``, another real image of the class of
``x_i``; see :class:`~common.data.SameClassPairDataset`):

1. ``x_g = G(z, x_i)`` with ``z ~ N(0, I)`` (eq. 1), without gradients;
2. one critic update with ``L = D(x_i, x_g) - D(x_i, x_j)`` (eq. 4, the batch means) plus ``gp_weight`` (lambda = 10)
   times the gradient penalty of eq. 5;
3. every ``n_critic``-th iteration, one generator update with ``-D(x_i, G(z', x_i))`` on fresh latents ``z'``
   (Algorithm 1, lines 11-12), the critic frozen.

Algorithm 1, lines 2-9 ("for t = 1, ...": critic updates, each on freshly sampled real data) are the shared
``n_critic`` of :class:`~common.engines.TrainingStep`: each critic update takes the next batch of the loader, and
the generator is updated after every ``n_critic`` of them. Sec. II-D ("alternately update one gradient descent step
on D, then one step on G") gives ``n_critic = 1``, the default.

Line 6, ``x_hat = eps x_i + (1 - eps) x_g``, is read for the pair critic: the critic judges the image slot of a pair
whose condition is ``x_i``, and its real pairs carry ``x_j`` in that slot, so the penalty's interpolates run between
the real pair member ``x_j`` and ``x_g`` in the image slot with the condition ``x_i`` held fixed
(``gradient_penalty(D(., x_i), x_j, x_g)``), the gradient being taken with respect to the image slot. Interpolating
towards ``x_i`` itself would penalise the critic on the line to the pair ``(x_i, x_i)``, which it never sees as real.

The baselines of Table II are this step with the image condition switched off (``image_condition=False``: both
networks get zeros in place of ``x_i``, so ``G`` maps noise to images and ``D`` judges single images, real ``x_j``
against ``G(z)``): the GAN without labels, the class-conditional GAN (cGAN, eq. 2) with them. They share GA-UNet's
networks, loss and optimiser, so Table II compares the conditioning only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from common.losses import AdversarialLoss

from .step import TrainingStep

__all__ = ["GAUNetStep"]


class GAUNetStep(TrainingStep):
    """Training step of GA-UNet (paper 002, Algorithm 1): WGAN-GP with a pair critic and a conditional generator.

    The optimisers are built by the config (Algorithm 1's Adam ``alpha = 1e-4, beta1 = 0, beta2 = 0.9`` are config
    values, not set here).

    Args:
        generator: ``G(x, z[, labels=...]) -> (B, C, *spatial)`` in ``[-1, 1]``; ``x (B, C_in, *spatial)``,
            ``z (B, latent_dim)``.
        critic: ``D(image, condition[, labels=...]) -> (B,)`` or ``(B, 1)`` scores of the pair (condition, image);
            no batch normalisation (the penalty needs per-sample gradients).
        g_optimizer: optimiser of the generator.
        d_optimizer: optimiser of the critic.
        latent_dim: length of the Gaussian latent ``z`` (eq. 1).
        device: training device.
        gp_weight: lambda of eq. 5 (10; 0: no penalty).
        n_critic: critic updates (each on a new batch) per generator update (1, sec. II-D).
        use_labels: pass the batch's classes (``class_key``, ``(B,)`` integers) to both networks as ``labels``
            (sec. II-B, last paragraph: "the class information is provided").
        image_condition: give both networks ``x_i`` (GA-UNet); ``False`` gives them zeros of its shape (the GAN and
            cGAN baselines of Table II).
        amp, amp_dtype: mixed precision (see :class:`~common.engines.TrainingStep`).
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        image_key: batch key of ``x_i``.
        pair_key: batch key of ``x_j``.
        class_key: batch key of the classes.
        schedulers: optional learning-rate schedulers, keys ``"generator"``/``"discriminator"``.
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        latent_dim: int,
        device: str | torch.device = "cpu",
        gp_weight: float = 10.0,
        n_critic: int = 1,
        use_labels: bool = False,
        image_condition: bool = True,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        image_key: str = "image",
        pair_key: str = "pair",
        class_key: str = "class",
        schedulers: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            networks={"generator": generator, "discriminator": critic},
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
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}.")
        self.latent_dim = int(latent_dim)
        self.gp_weight = float(gp_weight)
        self.use_labels = bool(use_labels)
        self.image_condition = bool(image_condition)
        self.pair_key, self.class_key = pair_key, class_key
        self.wgan = AdversarialLoss("wgan")
        self.last_samples: torch.Tensor | None = None

    def labels(self, batchdata: Any) -> dict[str, torch.Tensor]:
        """``{"labels": (B,) long tensor}`` of the batch's classes with ``use_labels``, else ``{}``."""
        if not self.use_labels:
            return {}
        return {"labels": torch.as_tensor(batchdata[self.class_key]).to(self.device, torch.long).reshape(-1)}

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        condition = self.images(batchdata)
        pair = self.images(batchdata, self.pair_key)
        if pair.shape != condition.shape:
            raise ValueError(
                f"'{self.image_key}' (x_i) and '{self.pair_key}' (x_j) must have the same shape, got "
                f"{tuple(condition.shape)} and {tuple(pair.shape)}."
            )
        if not self.image_condition:
            condition = torch.zeros_like(condition)
        labels = self.labels(batchdata)
        batch = condition.shape[0]
        generated: list[torch.Tensor] = []

        def generate(net: nn.Module) -> torch.Tensor:
            z = torch.randn(batch, self.latent_dim, device=self.device)
            out = net(condition, z, **labels)
            generated.append(out.detach())
            return out

        def discriminate(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
            return net(image, condition, **labels).reshape(image.shape[0], -1)

        out = self.adversarial_iteration(engine, pair, generate, discriminate, self.wgan, gp_weight=self.gp_weight)
        n = min(4, batch)
        # on the device: copied in samples()
        self.last_samples = torch.cat([condition[:n], pair[:n], generated[-1][:n].float()]).detach()
        return out

    def samples(self) -> torch.Tensor:
        """``x_i``, ``x_j`` and the latest ``x_g`` of the last batch (up to 4 each, in that order), for sample grids."""
        if self.last_samples is None:
            raise RuntimeError("no training iteration has run yet.")
        return self.last_samples.cpu()
