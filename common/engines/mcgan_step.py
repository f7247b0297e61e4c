"""3D MCGAN training step (Han thesis, sec. 6.2.1, eq. 1 and eq. 2).

One iteration on a batch of VOIs (``image``: the noise-boxed VOI with 6 tiled conditions, ``(B, 7, *voi)``;
``target``: the real VOI ``(B, 1, *voi)``; ``condition``: one-hot ``(B, 6)``):

1. the generator fills the noise box: the synthetic VOI is the real surroundings with the generator's output in the
   central nodule box (the thesis: "3D MCGANs generate only ``32^3`` nodules");
2. the context discriminator ``D1`` (LSGAN) is updated on the pairs (noise-boxed VOI, real VOI) and (noise-boxed
   VOI, synthetic VOI), with the halved least-squares loss of pix2pix; every ``label_flip_every``-th iteration the
   real/synthetic targets are swapped ("flip real/synthetic labels once in three times for robustness");
3. the nodule discriminator ``D2`` (WGAN-GP) is updated on the real and synthetic ``32^3`` nodules with their
   conditions, plus ``gp_weight`` (10) times the gradient penalty (the shared
   :meth:`~common.engines.TrainingStep.critic_update`; ``gp_weight=0`` skips the penalty);
4. every ``n_critic``-th iteration the generator is updated with
   ``L_LSGAN(G, D1) + L_WGAN-GP(G, D2) [+ lambda_l1 * L_l1(G)]`` (eq. 1; eq. 2 with ``lambda_l1 = 100``), the l1
   term being the mean absolute difference between the synthetic and the real nodule box.

Choices where the thesis is silent: one ``D1``/``D2`` update per generator update (``n_critic=1``, as pix2pix);
label flipping on the LSGAN context discriminator only (the WGAN critic has no labels to flip); the l1 term on the
nodule box (outside it the synthetic VOI equals the real one).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from common.losses import AdversarialLoss

from .step import TrainingStep

__all__ = ["MCGANStep"]


class MCGANStep(TrainingStep):
    """Training step of 3D MCGAN with a context (LSGAN) and a nodule (WGAN-GP) discriminator.

    Args:
        generator: maps ``(B, 1 + K, *voi)`` to ``(B, 1, *voi)`` in ``[-1, 1]``.
        context_discriminator: ``D1(noise_boxed_voi, voi) -> (B, 1, *patches)``.
        nodule_discriminator: ``D2(nodule, condition) -> (B, 1, *patches)``.
        g_optimizer, c_optimizer, n_optimizer: optimisers of the three networks.
        nodule_size: size of the central nodule box (32).
        device: training device.
        lambda_l1: weight of the l1 reconstruction term (0: eq. 1; 100: eq. 2).
        lambda_context, lambda_nodule: weights of the two adversarial terms of the generator (1 in eq. 1).
        gp_weight: WGAN-GP penalty weight (10, Gulrajani et al. 2017).
        label_flip_every: swap real/synthetic targets of ``D1`` every this many iterations (3; 0: never).
        n_critic: discriminator updates per generator update.
        amp, amp_dtype: mixed precision.
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        image_key, target_key, condition_key: batch keys.
        schedulers: optional schedulers keyed like the optimisers.
    """

    def __init__(
        self,
        generator: nn.Module,
        context_discriminator: nn.Module,
        nodule_discriminator: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        c_optimizer: torch.optim.Optimizer,
        n_optimizer: torch.optim.Optimizer,
        nodule_size: int = 32,
        device: str | torch.device = "cpu",
        lambda_l1: float = 0.0,
        lambda_context: float = 1.0,
        lambda_nodule: float = 1.0,
        gp_weight: float = 10.0,
        label_flip_every: int = 3,
        n_critic: int = 1,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        image_key: str = "image",
        target_key: str = "target",
        condition_key: str = "condition",
        schedulers: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            networks={
                "generator": generator,
                "context_discriminator": context_discriminator,
                "nodule_discriminator": nodule_discriminator,
            },
            optimizers={
                "generator": g_optimizer,
                "context_discriminator": c_optimizer,
                "nodule_discriminator": n_optimizer,
            },
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
        if label_flip_every < 0:
            raise ValueError(f"label_flip_every must be >= 0, got {label_flip_every}.")
        self.nodule_size = int(nodule_size)
        self.lambda_l1, self.lambda_context, self.lambda_nodule = (
            float(lambda_l1),
            float(lambda_context),
            float(lambda_nodule),
        )
        self.gp_weight = float(gp_weight)
        self.label_flip_every = int(label_flip_every)
        self.target_key, self.condition_key = target_key, condition_key
        self.lsgan = AdversarialLoss("lsgan")
        self.wgan = AdversarialLoss("wgan")
        self.last_samples: torch.Tensor | None = None

    # ----------------------------------------------------------------- geometry
    def box(self, voi: torch.Tensor) -> tuple[slice, ...]:
        """Slices ``(:, :, centre box)`` of the nodule box of a VOI batch."""
        lo = [(s - self.nodule_size) // 2 for s in voi.shape[2:]]
        return (slice(None), slice(None)) + tuple(slice(a, a + self.nodule_size) for a in lo)

    def composite(self, generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The real VOI with its nodule box replaced by the generator's box (differentiable in ``generated``)."""
        mask = torch.zeros_like(real)
        mask[self.box(real)] = 1.0
        return mask * generated + (1.0 - mask) * real

    def flipped(self, engine: Any) -> bool:
        """Whether the context discriminator's targets are swapped at this iteration."""
        return self.label_flip_every > 0 and engine.state.iteration % self.label_flip_every == 0

    # ----------------------------------------------------------------- the step
    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        x = self.images(batchdata)
        real = self.images(batchdata, self.target_key)
        cond = self.images(batchdata, self.condition_key)
        noisy = x[:, : real.shape[1]]
        box = self.box(real)
        real_nodule = real[box]
        d1, d2 = self.networks["context_discriminator"], self.networks["nodule_discriminator"]
        out: dict[str, torch.Tensor] = {}

        # discriminator updates on one generated batch
        with torch.no_grad(), self.autocast():
            fake = self.composite(self.module("generator", frozen=True)(x).float(), real)
        flip = self.flipped(engine)
        with self.autocast():
            c_loss = 0.5 * (self.lsgan(d1(noisy, real), not flip) + self.lsgan(d1(noisy, fake), flip))
        self.optimise(engine, "context_discriminator", c_loss)
        out["loss_context_d"] = c_loss

        nodule = self.critic_update(
            engine,
            "nodule_discriminator",
            lambda v: d2(v, cond),
            real_nodule,
            fake[box],
            self.wgan,
            gp_weight=self.gp_weight,
        )
        out["loss_nodule_d"] = nodule.total
        out["wasserstein_estimate"] = -nodule.adversarial
        if nodule.penalty is not None:
            out["gradient_penalty"] = nodule.penalty

        # generator update (eq. 1, or eq. 2 with lambda_l1 > 0), both discriminators frozen
        if self.generator_turn(engine):
            terms: dict[str, torch.Tensor] = {}

            def generator_loss() -> torch.Tensor:
                terms["fake"] = fake = self.composite(self.networks["generator"](x).float(), real)
                terms["g_context"] = self.lsgan(self.module("context_discriminator", True)(noisy, fake), True, False)
                terms["g_nodule"] = self.wgan(self.module("nodule_discriminator", True)(fake[box], cond), True, False)
                loss = self.lambda_context * terms["g_context"] + self.lambda_nodule * terms["g_nodule"]
                if self.lambda_l1 > 0:
                    terms["l1"] = (fake[box] - real_nodule).abs().mean()
                    loss = loss + self.lambda_l1 * terms["l1"]
                return loss

            g_loss = self.generator_update(
                engine, "generator", generator_loss, ("context_discriminator", "nodule_discriminator")
            )
            if "l1" in terms:
                out["loss_l1"] = terms["l1"]
            out["loss_g"] = g_loss
            out["loss_g_context"] = terms["g_context"]
            out["loss_g_nodule"] = terms["g_nodule"]
            fake = terms["fake"]  # the sample grid shows the generator's latest output
        n = min(4, real.shape[0])
        # on the device: no copy per iteration
        self.last_samples = torch.cat([noisy[:n], fake[:n], real[:n]]).detach().float()
        return self.report(out)

    def samples(self) -> torch.Tensor:
        """Noise-boxed inputs, synthetic and real VOIs of the last batch (up to 4 each), for sample grids."""
        if self.last_samples is None:
            raise RuntimeError("no training iteration has run yet.")
        return self.last_samples.cpu()
