"""pix2pix training step (Isola et al. 2017, sec. 3.1 eq. 1-4 and sec. 3.3): a paired conditional GAN with an L1 term.

Han's thesis (sec. 5.2.2, Table 4 rows (viii)-(x)) uses "a conventional conditional GAN with a U-Net-like generator"
to translate the bounding-box conditioning image into a brain MR slice with tumours in the boxes; pix2pix is that
conventional conditional GAN. One iteration on a batch of pairs (``condition`` ``x`` ``(B, Cx, *spatial)``, target
image ``y`` ``(B, Cy, *spatial)``):

1. the generator makes ``G(x)`` once (dropout is its only noise, sec. 3.1);
2. the discriminator sees the channel-wise concatenations ``(x, y)`` and ``(x, G(x))`` (the conditional GAN of
   eq. 1) and is updated on ``0.5 * [L(D(x, y), real) + L(D(x, G(x)), fake)]`` ("we divide the objective by 2 while
   optimizing D, which slows down the rate at which D learns relative to G", sec. 3.3);
3. every ``n_critic``-th iteration (1 in pix2pix) the generator is updated, the discriminator frozen, on
   ``L(D(x, G(x)), real) + lambda_l1 * |y - G(x)|_1`` (eq. 4 with the non-saturating generator loss of sec. 3.3,
   ``lambda = 100`` in sec. 4), reusing step 1's ``G(x)``.

The adversarial criterion is :class:`common.losses.AdversarialLoss` (``"bce"``: pix2pix's cross-entropy GAN;
``"lsgan"`` is the CycleGAN choice).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.losses import AdversarialLoss

from .step import TrainingStep

__all__ = ["Pix2PixStep"]


class Pix2PixStep(TrainingStep):
    """Training step of pix2pix: conditional discriminator on (condition, image) pairs, adversarial + L1 generator.

    Args:
        generator: maps the condition ``(B, Cx, *spatial)`` to an image ``(B, Cy, *spatial)`` in ``[-1, 1]``.
        discriminator: maps ``(B, Cx + Cy, *spatial)`` to patch logits ``(B, 1, *patches)`` (the 70x70 PatchGAN,
            :class:`common.networks.PatchGANDiscriminator` with ``in_channels = Cx + Cy``).
        g_optimizer: optimiser of the generator (Adam 2e-4, betas (0.5, 0.999) in pix2pix).
        d_optimizer: optimiser of the discriminator (the same).
        device: training device.
        loss: adversarial criterion of :class:`~common.losses.AdversarialLoss` (``"bce"``: pix2pix).
        lambda_l1: weight of the L1 term (100, pix2pix sec. 4; 0: the cGAN-only ablation of its Table 1).
        n_critic: discriminator updates per generator update (1).
        amp, amp_dtype: mixed precision (see :class:`~common.engines.TrainingStep`).
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        image_key: key of the target images ``y`` in the batch.
        condition_key: key of the conditioning images ``x`` in the batch.
        schedulers: optional learning-rate schedulers, keys ``"generator"``/``"discriminator"``.

    Returns of ``__call__``:
        ``{"loss_d", "loss_d_real", "loss_d_fake"}`` every iteration and ``{"loss_g", "loss_g_adv", "loss_l1"}`` on
        generator turns.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        device: str | torch.device = "cpu",
        loss: str = "bce",
        lambda_l1: float = 100.0,
        n_critic: int = 1,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        image_key: str = "image",
        condition_key: str = "condition",
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
        if lambda_l1 < 0:
            raise ValueError(f"lambda_l1 must be >= 0, got {lambda_l1}.")
        self.adversarial = AdversarialLoss(loss)
        self.lambda_l1 = float(lambda_l1)
        self.condition_key = condition_key
        self.last_samples: torch.Tensor | None = None

    @staticmethod
    def pair(condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The discriminator's input: condition and image concatenated on the channels, ``(B, Cx + Cy, *spatial)``."""
        return torch.cat([condition, image.to(condition.dtype)], dim=1)

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        real = self.images(batchdata)
        cond = self.images(batchdata, self.condition_key)
        if real.shape[0] != cond.shape[0] or real.shape[2:] != cond.shape[2:]:
            raise ValueError(
                f"condition {tuple(cond.shape)} and image {tuple(real.shape)} must share batch and spatial sizes."
            )
        discriminator = self.networks["discriminator"]
        out: dict[str, torch.Tensor] = {}
        turn = self.generator_turn(engine)
        with torch.set_grad_enabled(turn), self.autocast():  # the graph of G(x) is kept for the generator update
            fake = self.networks["generator"](cond).float()

        # discriminator: 0.5 * (real pairs judged real + generated pairs judged fake), on the detached G(x)
        with self.autocast():
            d_real = self.adversarial(discriminator(self.pair(cond, real)), True)
            d_fake = self.adversarial(discriminator(self.pair(cond, fake.detach())), False)
            d_loss = 0.5 * (d_real + d_fake)
        self.optimise(engine, "discriminator", d_loss, terms={"loss_d_real": d_real, "loss_d_fake": d_fake})
        out.update(loss_d=d_loss, loss_d_real=d_real, loss_d_fake=d_fake)

        # generator: fool the frozen discriminator and stay close to the target in L1 (eq. 4)
        if turn:
            terms: dict[str, torch.Tensor] = {}

            def generator_loss() -> torch.Tensor:
                frozen = self.module("discriminator", frozen=True)
                terms["adv"] = self.adversarial(frozen(self.pair(cond, fake)), True, for_discriminator=False)
                terms["l1"] = F.l1_loss(fake, real)
                return terms["adv"] + self.lambda_l1 * terms["l1"]

            g_loss = self.generator_update(engine, "generator", generator_loss, ("discriminator",))
            out.update(loss_g=g_loss, loss_g_adv=terms["adv"], loss_l1=terms["l1"])
        n = min(4, real.shape[0])
        shown = [fake[:n], real[:n]]
        if cond.shape[1] == real.shape[1]:
            shown.insert(0, cond[:n] * 2.0 - 1.0)
        # on the device: copied in samples()
        self.last_samples = torch.cat(shown).detach().float()
        return self.report(out)

    def samples(self) -> torch.Tensor:
        """Conditions (mapped from ``[0, 1]`` to ``[-1, 1]``), generated and real images of the last batch (up to 4
        each, in that order; the conditions only when they have the image's channel count), for sample grids."""
        if self.last_samples is None:
            raise RuntimeError("no training iteration has run yet.")
        return self.last_samples.cpu()
