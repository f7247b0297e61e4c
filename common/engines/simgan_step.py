"""SimGAN training step (Shrivastava et al. 2017), as used for refinement in Han's thesis, sec. 4.2.3.

Refiner ``R`` maps a synthetic image ``x`` to a refined image ``R(x)`` of the same size; a local discriminator
``D`` gives one real/refined logit per patch. Losses (paper eq. 3-4, with the local adversarial loss of sec. 2.2):

- refiner: ``L_R = mean_patches BCE(D(R(x)), real) + lambda_reg * ||R(x) - x||_1`` (self-regularisation to the
  synthetic input; the identity map ``psi`` of the paper; mean over pixels);
- discriminator: ``L_D = mean_patches BCE(D(y), real) + mean_patches BCE(D(r), refined)`` on real images ``y`` and a
  batch ``r`` of refined images of which half comes from the history buffer of earlier refined images
  (:class:`~common.engines.HistoryBuffer`, sec. 2.3).

Schedule by iteration (the engine's ``state.iteration``, so a resumed run continues in the right phase):

1. ``pretrain_refiner_steps`` iterations of refiner updates with the self-regularisation loss only (SimGAN sec. 3.1:
   1,000 steps);
2. ``pretrain_discriminator_steps`` iterations of discriminator updates only (sec. 3.1: 200 steps);
3. then every iteration updates the refiner, and every ``k_g``-th iteration also updates the discriminator
   (``k_g`` refiner updates per discriminator update; the paper updates ``R`` twice per ``D`` update).

Han (sec. 4.2.3): 20,000 steps, batch 10, SGD with learning rate 1e-4, halved at 15,000 steps, horizontal flips.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.losses import AdversarialLoss

from .history_buffer import HistoryBuffer
from .step import TrainingStep

__all__ = ["SimGANStep"]


class SimGANStep(TrainingStep):
    """Training step of SimGAN.

    Args:
        refiner: ``(B, C, *spatial)`` -> refined ``(B, C, *spatial)``.
        discriminator: ``(B, C, *spatial)`` -> patch logits ``(B, 1, *patches)``.
        r_optimizer: optimiser of the refiner.
        d_optimizer: optimiser of the discriminator.
        device: training device.
        lambda_reg: weight of the self-regularisation L1 (the paper's ``lambda``).
        k_g: refiner updates per discriminator update in the adversarial phase.
        pretrain_refiner_steps: first iterations with the self-regularisation loss only.
        pretrain_discriminator_steps: following iterations with discriminator updates only.
        buffer_size: capacity of the history buffer (0: no history).
        loss: adversarial criterion on the patch logits (``"bce"``: the paper's cross-entropy).
        synthetic_key / real_key: batch keys of the synthetic and the real images.
        schedulers: learning-rate schedulers, keys ``"refiner"``/``"discriminator"``.
        scheduler_interval: step the schedulers every ``"iteration"`` (the thesis' step-based schedule) or
            ``"epoch"``; the trainer steps them (:meth:`~common.engines.TrainingStep.lr_schedule_handlers`).
        amp, amp_dtype: mixed precision, see :class:`~common.engines.TrainingStep`.
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        seed: seed of the history buffer.
    """

    def __init__(
        self,
        refiner: nn.Module,
        discriminator: nn.Module,
        r_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        device: str | torch.device = "cpu",
        lambda_reg: float = 1.0,
        k_g: int = 2,
        pretrain_refiner_steps: int = 1000,
        pretrain_discriminator_steps: int = 200,
        buffer_size: int = 100,
        loss: str = "bce",
        synthetic_key: str = "synthetic",
        real_key: str = "real",
        schedulers: dict[str, Any] | None = None,
        scheduler_interval: str = "iteration",
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        seed: int = 0,
    ) -> None:
        if k_g < 1:
            raise ValueError(f"k_g must be >= 1, got {k_g}.")
        if pretrain_refiner_steps < 0 or pretrain_discriminator_steps < 0:
            raise ValueError("pre-training step counts must be >= 0.")
        super().__init__(
            networks={"refiner": refiner, "discriminator": discriminator},
            optimizers={"refiner": r_optimizer, "discriminator": d_optimizer},
            device=device,
            schedulers=schedulers,
            amp=amp,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            compile=compile,
            conv_algorithm=conv_algorithm,
            image_key=synthetic_key,
            scheduler_interval=scheduler_interval,
        )
        self.lambda_reg = float(lambda_reg)
        self.k_g = int(k_g)
        self.pretrain_refiner_steps = int(pretrain_refiner_steps)
        self.pretrain_discriminator_steps = int(pretrain_discriminator_steps)
        self.adversarial = AdversarialLoss(loss)
        self.buffer = HistoryBuffer(buffer_size, seed=seed)
        self.synthetic_key, self.real_key = synthetic_key, real_key

    def state_objects(self) -> dict[str, Any]:
        objects = super().state_objects()
        objects["history_buffer"] = self.buffer
        return objects

    def phase(self, iteration: int) -> str:
        """``"pretrain_refiner"``, ``"pretrain_discriminator"`` or ``"adversarial"`` for a 1-based iteration."""
        if iteration <= self.pretrain_refiner_steps:
            return "pretrain_refiner"
        if iteration <= self.pretrain_refiner_steps + self.pretrain_discriminator_steps:
            return "pretrain_discriminator"
        return "adversarial"

    def self_regularisation(self, refined: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        """``||R(x) - x||_1`` averaged over pixels."""
        return F.l1_loss(refined.float(), synthetic)

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        synthetic = self.images(batchdata, self.synthetic_key)
        iteration = int(engine.state.iteration)
        phase = self.phase(iteration)
        out: dict[str, torch.Tensor] = {}
        refined: torch.Tensor | None = None

        if phase != "pretrain_discriminator":
            with self.frozen("discriminator"), self.autocast():
                refined = self.networks["refiner"](synthetic)
                reg = self.self_regularisation(refined, synthetic)
                r_loss = self.lambda_reg * reg
                if phase == "adversarial":
                    logits = self.module("discriminator", frozen=True)(refined)
                    adv = self.adversarial(logits.float(), True, for_discriminator=False)
                    r_loss = r_loss + adv
                    out["loss_r_adv"] = adv
            self.optimise(engine, "refiner", r_loss, terms={"loss_self_reg": reg, **out})
            out["loss_self_reg"], out["loss_r"] = reg, r_loss

        update_d = phase == "pretrain_discriminator" or (
            phase == "adversarial"
            and (iteration - self.pretrain_refiner_steps - self.pretrain_discriminator_steps) % self.k_g == 0
        )
        if update_d:
            real = self.images(batchdata, self.real_key)
            if refined is None:
                with torch.no_grad(), self.autocast():
                    refined = self.module("refiner", frozen=True)(synthetic)
            mixed = self.buffer.mix_and_push(refined.detach().float())
            disc = self.networks["discriminator"]
            with self.autocast():
                d_real = self.adversarial(disc(real).float(), True)
                d_fake = self.adversarial(disc(mixed).float(), False)
                d_loss = d_real + d_fake
            self.optimise(engine, "discriminator", d_loss, terms={"loss_d_real": d_real, "loss_d_refined": d_fake})
            out["loss_d"], out["loss_d_real"], out["loss_d_refined"] = d_loss, d_real, d_fake
        return self.report(out)
