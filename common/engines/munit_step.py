"""MUNIT training step (Huang et al. 2018, sec. 3.2), as used for refinement in Han's thesis, sec. 4.2.3.

Domain A: synthetic images (e.g. PGGAN outputs of one class); domain B: real images of the same class. With the
auto-encoders ``(E^c_a, E^s_a, G_a)`` and ``(E^c_b, E^s_b, G_b)`` of :class:`~common.networks.MUNIT` and style
codes ``s_a, s_b ~ N(0, I)`` drawn per iteration, one iteration is (as MUNIT's reference schedule) a discriminator
update followed by a generator update:

- image reconstruction (eq. 2): ``||G_a(E^c_a(x_a), E^s_a(x_a)) - x_a||_1`` and the same for B;
- latent reconstruction (eq. 3): ``||E^c_b(G_b(c_a, s_b)) - c_a||_1`` and ``||E^s_b(G_b(c_a, s_b)) - s_b||_1``, and
  the same for B -> A;
- adversarial loss (eq. 4), least squares (LSGAN) on the multi-scale discriminators ``D_a``, ``D_b``;
- optional explicit cycle reconstruction ``||G_a(E^c_b(x_ab), E^s_a(x_a)) - x_a||_1`` (``lambda_cycle``; 0 in the
  paper's main setting);
- total (eq. 5): ``L_GAN^a + L_GAN^b + lambda_x (L_x^a + L_x^b) + lambda_c (L_c^a + L_c^b) + lambda_s (L_s^a +
  L_s^b) [+ lambda_cycle (...)]`` with ``lambda_x = 10``, ``lambda_c = lambda_s = 1`` (MUNIT sec. 5.1).

Optimisation (MUNIT sec. 5.1 and Han sec. 4.2.3): Adam(0.5, 0.999), learning rate 1e-4, weight decay 1e-4, batch 1,
the learning rate halved every 20,000 steps (thesis; 100,000 in MUNIT), 100,000 steps, horizontal flips.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.losses import AdversarialLoss

from .step import TrainingStep, unwrap

__all__ = ["MUNITStep"]


class MUNITStep(TrainingStep):
    """Training step of MUNIT between domain A (synthetic) and domain B (real).

    Args:
        generator: a :class:`~common.networks.MUNIT` (both auto-encoders).
        dis_a: discriminator of domain A (list or tensor of logits).
        dis_b: discriminator of domain B.
        g_optimizer: optimiser of the generator (both auto-encoders).
        d_optimizer: optimiser of both discriminators.
        device: training device.
        lambda_x: weight of the image reconstruction loss (10).
        lambda_c: weight of the content reconstruction loss (1).
        lambda_s: weight of the style reconstruction loss (1).
        lambda_cycle: weight of the explicit cycle reconstruction (0: off).
        loss: adversarial criterion (``"lsgan"``).
        domain_a_key / domain_b_key: batch keys of the domain A (synthetic) and domain B (real) images.
        schedulers: learning-rate schedulers, keys ``"generator"``/``"discriminators"``.
        scheduler_interval: ``"iteration"`` (the thesis' step-based halving) or ``"epoch"``; the trainer steps the
            schedulers (:meth:`~common.engines.TrainingStep.lr_schedule_handlers`).
        amp, amp_dtype: mixed precision, see :class:`~common.engines.TrainingStep`.
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
    """

    def __init__(
        self,
        generator: nn.Module,
        dis_a: nn.Module,
        dis_b: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        device: str | torch.device = "cpu",
        lambda_x: float = 10.0,
        lambda_c: float = 1.0,
        lambda_s: float = 1.0,
        lambda_cycle: float = 0.0,
        loss: str = "lsgan",
        domain_a_key: str = "synthetic",
        domain_b_key: str = "real",
        schedulers: dict[str, Any] | None = None,
        scheduler_interval: str = "iteration",
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
    ) -> None:
        super().__init__(
            networks={"generator": generator, "dis_a": dis_a, "dis_b": dis_b},
            optimizers={"generator": g_optimizer, "discriminators": d_optimizer},
            device=device,
            schedulers=schedulers,
            amp=amp,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            compile=compile,
            conv_algorithm=conv_algorithm,
            image_key=domain_a_key,
            optimizer_networks={"generator": ["generator"], "discriminators": ["dis_a", "dis_b"]},
            scheduler_interval=scheduler_interval,
        )
        self.lambda_x, self.lambda_c, self.lambda_s = float(lambda_x), float(lambda_c), float(lambda_s)
        self.lambda_cycle = float(lambda_cycle)
        self.adversarial = AdversarialLoss(loss)
        self.domain_a_key, self.domain_b_key = domain_a_key, domain_b_key
        self.style_dim = int(unwrap(generator).style_dim)

    def sample_style(self, batch_size: int) -> torch.Tensor:
        """Style codes ``(batch_size, style_dim)`` from ``N(0, I)``."""
        return torch.randn(batch_size, self.style_dim, device=self.device)

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        x_a = self.images(batchdata, self.domain_a_key)
        x_b = self.images(batchdata, self.domain_b_key)
        s_a, s_b = self.sample_style(x_a.shape[0]), self.sample_style(x_b.shape[0])
        out: dict[str, torch.Tensor] = {}

        # discriminator update: real images vs cross-domain translations with random styles
        gen = self.module("generator", frozen=True)
        with torch.no_grad(), self.autocast():
            c_a, c_b = gen.gen_a.enc_content(x_a), gen.gen_b.enc_content(x_b)
            x_ba = gen.gen_a.decode(c_b, s_a).float()
            x_ab = gen.gen_b.decode(c_a, s_b).float()
        dis_a, dis_b = self.networks["dis_a"], self.networks["dis_b"]
        with self.autocast():
            d_a = self.adversarial(dis_a(x_ba), False) + self.adversarial(dis_a(x_a), True)
            d_b = self.adversarial(dis_b(x_ab), False) + self.adversarial(dis_b(x_b), True)
            d_loss = d_a + d_b
        self.optimise(engine, "discriminators", d_loss, terms={"loss_d_a": d_a, "loss_d_b": d_b})
        out["loss_d_a"], out["loss_d_b"] = d_a, d_b

        # generator update, discriminators frozen
        gen = self.networks["generator"]
        module = unwrap(gen)
        with self.frozen("dis_a", "dis_b"), self.autocast():
            c_a, s_a_prime = module.gen_a.encode(x_a)
            c_b, s_b_prime = module.gen_b.encode(x_b)
            x_a_recon = module.gen_a.decode(c_a, s_a_prime)
            x_b_recon = module.gen_b.decode(c_b, s_b_prime)
            x_ba = module.gen_a.decode(c_b, s_a)
            x_ab = module.gen_b.decode(c_a, s_b)
            c_b_recon, s_a_recon = module.gen_a.encode(x_ba)
            c_a_recon, s_b_recon = module.gen_b.encode(x_ab)
            recon_x = F.l1_loss(x_a_recon.float(), x_a) + F.l1_loss(x_b_recon.float(), x_b)
            recon_c = F.l1_loss(c_a_recon.float(), c_a.float()) + F.l1_loss(c_b_recon.float(), c_b.float())
            recon_s = F.l1_loss(s_a_recon.float(), s_a) + F.l1_loss(s_b_recon.float(), s_b)
            adv = self.adversarial(
                self.module("dis_a", frozen=True)(x_ba), True, for_discriminator=False
            ) + self.adversarial(self.module("dis_b", frozen=True)(x_ab), True, for_discriminator=False)
            g_loss = adv + self.lambda_x * recon_x + self.lambda_c * recon_c + self.lambda_s * recon_s
            if self.lambda_cycle > 0:
                x_aba = module.gen_a.decode(c_a_recon, s_a_prime)
                x_bab = module.gen_b.decode(c_b_recon, s_b_prime)
                cycle = F.l1_loss(x_aba.float(), x_a) + F.l1_loss(x_bab.float(), x_b)
                g_loss = g_loss + self.lambda_cycle * cycle
                out["loss_cycle"] = cycle
        self.optimise(engine, "generator", g_loss)
        out.update(loss_g=g_loss, loss_g_adv=adv, loss_recon_x=recon_x, loss_recon_c=recon_c, loss_recon_s=recon_s)
        return self.report(out)
