"""StyleGAN2 training step (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", sec. 2-3 and
appendix B), with the conditional form of paper 004 (C-SG, sec. 3.2) and optional adaptive discriminator augmentation
(ADA, Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data") or DiffAugment.

One iteration on a batch of real images ``x`` (and, for C-SG, their one-hot masks ``c``):

1. **Discriminator**: ``softplus(D(A(G(z)))) + softplus(-D(A(x)))`` (the non-saturating logistic loss) with ``A``
   the augmentation (identity without one) and ``G(z)`` made without gradients with style mixing; for C-SG both are
   judged with the batch's masks (``D(A(x), c)``, ``D(A(G(z, c)), c)``: the fake is judged with the condition it was
   generated from), and a geometric augmentation moves the mask with its image.
2. Every ``r1_interval``-th iteration, a second discriminator update on the R1 penalty alone (lazy regularisation,
   appendix B): ``gamma / 2 * E[||grad D(A(x))||^2] * r1_interval``, the gradient taken with respect to the
   augmented real images (ADA's reference differentiates through the augmentation with respect to the
   un-augmented images; for its flips, 90-degree rotations and integer translations the two norms are equal).
3. **Generator**: ``softplus(-D(A(G(z))))`` with the discriminator frozen. Style mixing (sec. 2 of StyleGAN): with
   probability ``style_mixing_prob`` the styles from a crossover index drawn uniformly in ``[1, num_ws)`` on come
   from a second latent.
4. Every ``pl_interval``-th iteration, a second generator update on the path-length penalty alone (sec. 3.2,
   appendix B) on ``batch // pl_batch_shrink`` new samples, weighted ``pl_weight * pl_interval``
   (:class:`~common.losses.PathLengthPenalty`, whose running mean is part of the checkpoint). These samples are
   generated without style mixing, so that their ``ws`` are one ``w`` broadcast, as the penalty's definition needs.
5. The EMA generator moves towards the generator: ``ema = beta * ema + (1 - beta) * g`` for every parameter with
   ``beta = 0.5 ** (batch / ema_nimg)``, ``ema_nimg = ema_kimg * 1000`` (with ``ema_rampup``:
   ``min(ema_nimg, images_seen_before_this_batch * ema_rampup)``, as StyleGAN2-ADA), and its buffers are copied.
6. With ADA, every ``ada_interval``-th iteration ``p`` is adjusted from the signs of ``D(A(x))`` accumulated since
   the last adjustment (:class:`~common.engines.AdaptiveAugment`, whose ``p`` and accumulator are checkpointed).

The interval counters are the trainer's ``engine.state.iteration`` (restored on resume), not a counter of the step.
The lazy regularisers and the penalties are computed in float32 (autocast off) for stability under mixed precision.
The optimisers come from the config; with lazy regularisation StyleGAN2 scales their learning rate by
``c = interval / (interval + 1)`` and raises their betas to the power ``c`` (appendix B): that is config, not done here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.losses import PathLengthPenalty, r1_penalty
from common.utils import get_world_size

from .adaptive_augment import AdaptiveAugment
from .diff_augment import DiffAugment
from .step import TrainingStep, unwrap

__all__ = ["AUGMENTATIONS", "StyleGAN2Step"]

AUGMENTATIONS = (None, "ada", "diffaugment")
"""Values of ``augment``: none, adaptive discriminator augmentation, DiffAugment's translation."""

NUM_SAMPLES = 4
"""Real and EMA samples kept for the sample grids."""


class StyleGAN2Step(TrainingStep):
    """Training step of StyleGAN2 (B-SG, M-SG) and of the conditional C-SG of paper 004.

    Args:
        generator: ``mapping(z) -> ws (B, num_ws, style_dim)``, ``synthesis(ws[, condition=c]) -> (B, C, *spatial)``,
            attribute ``num_ws`` (see :class:`~common.networks.StyleGAN2Generator`).
        discriminator: ``D(x[, c]) -> (B, 1)`` logits.
        generator_ema: a copy of the generator (same architecture); not optimised, updated by EMA.
        g_optimizer: optimiser of the generator.
        d_optimizer: optimiser of the discriminator.
        latent_dim: length of ``z``.
        device: training device.
        r1_gamma: R1 weight ``gamma`` (0: no R1).
        r1_interval: iterations between R1 updates (16 in StyleGAN2).
        pl_weight: path-length weight (2 in StyleGAN2; 0: none).
        pl_interval: iterations between path-length updates (4).
        pl_decay: update rate of the running mean of the path lengths (0.01).
        pl_batch_shrink: the path-length update runs on ``batch // pl_batch_shrink`` samples (2).
        style_mixing_prob: probability of style mixing per batch (0.9; 0: none).
        ema_kimg: half-life of the EMA generator's weights in thousands of images.
        ema_rampup: with a value, the half-life is at most ``images seen * ema_rampup`` (0.05 in StyleGAN2-ADA).
        augment: ``None``, ``"ada"`` (:class:`~common.engines.AdaptiveAugment`) or ``"diffaugment"``
            (:class:`~common.engines.DiffAugment`), applied to every image the discriminator sees.
        ada_target: ADA's target of ``r_t`` (0.6).
        ada_interval: iterations between adjustments of ``p`` (4).
        ada_kimg: thousands of images over which ``p`` can move from 0 to 1 (500).
        image_key: batch key of the real images ``(B, C, *spatial)`` in ``[-1, 1]``.
        condition_key: batch key of the C-SG masks ``(B, K, *spatial)``, one-hot in ``[0, 1]`` (``None``: no
            condition).
        color_channels: ADA's colour transformations (brightness, contrast) change only the first
            ``color_channels`` channels of the images (B-SG: the image, not the one-hot mask generated after it);
            ``None``: every channel. The C-SG condition is never colour-transformed.
        amp, amp_dtype: mixed precision (see :class:`~common.engines.TrainingStep`).
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        schedulers: optional learning-rate schedulers, keys ``"generator"``/``"discriminator"``.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        generator_ema: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        latent_dim: int,
        device: str | torch.device = "cpu",
        r1_gamma: float = 10.0,
        r1_interval: int = 16,
        pl_weight: float = 2.0,
        pl_interval: int = 4,
        pl_decay: float = 0.01,
        pl_batch_shrink: int = 2,
        style_mixing_prob: float = 0.9,
        ema_kimg: float = 10.0,
        ema_rampup: float | None = None,
        augment: str | None = None,
        ada_target: float = 0.6,
        ada_interval: int = 4,
        ada_kimg: float = 500.0,
        image_key: str = "image",
        condition_key: str | None = None,
        color_channels: int | None = None,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        schedulers: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            networks={"generator": generator, "discriminator": discriminator, "generator_ema": generator_ema},
            optimizers={"generator": g_optimizer, "discriminator": d_optimizer},
            device=device,
            schedulers=schedulers,
            amp=amp,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            compile=compile,
            conv_algorithm=conv_algorithm,
            image_key=image_key,
        )
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
        intervals = {"r1_interval": r1_interval, "pl_interval": pl_interval, "pl_batch_shrink": pl_batch_shrink}
        intervals["ada_interval"] = ada_interval
        for name, value in intervals.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if r1_gamma < 0 or pl_weight < 0:
            raise ValueError(f"r1_gamma and pl_weight must be >= 0, got {r1_gamma} and {pl_weight}.")
        if not 0.0 <= style_mixing_prob <= 1.0:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {style_mixing_prob}.")
        if ema_kimg <= 0:
            raise ValueError(f"ema_kimg must be > 0, got {ema_kimg}.")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}, got {augment!r}.")
        self.latent_dim = int(latent_dim)
        self.r1_gamma, self.r1_interval = float(r1_gamma), int(r1_interval)
        self.pl_weight, self.pl_interval, self.pl_batch_shrink = (
            float(pl_weight),
            int(pl_interval),
            int(pl_batch_shrink),
        )
        self.style_mixing_prob = float(style_mixing_prob)
        self.ema_kimg = float(ema_kimg)
        self.ema_rampup = None if ema_rampup is None else float(ema_rampup)
        self.augment = augment
        self.ada_interval = int(ada_interval)
        self.condition_key = condition_key
        self.color_channels = None if color_channels is None else int(color_channels)
        self.path_length = PathLengthPenalty(pl_decay).to(self.device)
        self.augment_pipe: AdaptiveAugment | DiffAugment | None = None
        if augment == "ada":
            self.augment_pipe = AdaptiveAugment(ada_target, ada_kimg).to(self.device)
        elif augment == "diffaugment":
            self.augment_pipe = DiffAugment()
        unwrap(generator_ema).requires_grad_(False)
        # the fixed latents of the sample grids, drawn without touching the global random state
        self.fixed_latents = torch.randn(NUM_SAMPLES, self.latent_dim, generator=torch.Generator().manual_seed(0))
        self.last_real: torch.Tensor | None = None
        self.last_condition: torch.Tensor | None = None

    def state_objects(self) -> dict[str, Any]:
        """The base objects plus the path-length running mean and, with ADA, ``p`` and its sign accumulator."""
        objects = super().state_objects()
        objects["path_length"] = self.path_length
        if isinstance(self.augment_pipe, AdaptiveAugment):
            objects["augment"] = self.augment_pipe
        return objects

    # ----------------------------------------------------------------- pieces
    def condition_kwargs(self, condition: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``{"condition": c}`` for C-SG, else ``{}`` (unconditional networks are called without it)."""
        return {} if condition is None else {"condition": condition}

    def generate(
        self, batch: int, condition: torch.Tensor | None, mixing: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images of the generator from new latents, with style mixing when ``mixing``.

        Args:
            batch: number of samples.
            condition: C-SG masks ``(batch, K, *spatial)`` or ``None``.
            mixing: apply style mixing with probability ``style_mixing_prob``.

        Returns:
            ``(images (batch, C, *spatial), ws (batch, num_ws, style_dim))``.
        """
        net = unwrap(self.networks["generator"])
        z = torch.randn(batch, self.latent_dim, device=self.device)
        ws = net.mapping(z)
        num_ws = ws.shape[1]
        if mixing and num_ws > 1 and float(torch.rand(())) < self.style_mixing_prob:
            cutoff = int(torch.randint(1, num_ws, ()))
            mixed = net.mapping(torch.randn(batch, self.latent_dim, device=self.device))
            ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], 1)
        return net.synthesis(ws, **self.condition_kwargs(condition)), ws

    def augmented(
        self, images: torch.Tensor, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The discriminator's input: ``images`` (and the C-SG masks, moved by the same geometric transformation).

        The masks are concatenated to the images as ``2c - 1`` (so that a constant fill of -1 shifts in "no class")
        and split off again after the augmentation; ADA's colour transformations change the image channels only.
        """
        if self.augment_pipe is None:
            return images, condition
        if condition is None:
            if isinstance(self.augment_pipe, AdaptiveAugment):
                return self.augment_pipe(images, color_channels=self.color_channels), None
            return self.augment_pipe(images), None
        channels = images.shape[1]
        joined = torch.cat([images, (condition * 2 - 1).to(images.dtype)], 1)
        if isinstance(self.augment_pipe, AdaptiveAugment):
            joined = self.augment_pipe(joined, color_channels=channels)
        else:
            joined = self.augment_pipe(joined)
        return joined[:, :channels], (joined[:, channels:] + 1) / 2

    def discriminate(self, net: nn.Module, images: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """Logits ``(B, 1)`` of ``net`` on (already augmented) images and masks."""
        logits = net(images, condition) if condition is not None else net(images)
        return logits.reshape(images.shape[0], -1)

    @torch.no_grad()
    def update_ema(self, images_seen: int, batch: int) -> float:
        """Move the EMA generator towards the generator and copy the generator's buffers.

        Args:
            images_seen: images (over all ranks) shown before this batch (for ``ema_rampup``).
            batch: images (over all ranks) in this batch.

        Returns:
            The ``beta`` used.
        """
        ema_nimg = self.ema_kimg * 1000.0
        if self.ema_rampup is not None:
            ema_nimg = min(ema_nimg, images_seen * self.ema_rampup)
        beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        g, ema = unwrap(self.networks["generator"]), unwrap(self.networks["generator_ema"])
        for p_ema, p in zip(ema.parameters(), g.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(ema.buffers(), g.buffers()):
            b_ema.copy_(b)
        return beta

    # ----------------------------------------------------------------- the updates
    def discriminator_step(
        self, engine: Any, real: torch.Tensor, condition: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The logistic discriminator update and, on its iterations, the lazy R1 update (losses not yet on the host)."""
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad(), self.autocast():
            fake = self.generate(real.shape[0], condition)[0].float()
        disc = self.networks["discriminator"]
        with self.autocast():
            real_x, real_c = self.augmented(real, condition)
            fake_x, fake_c = self.augmented(fake, condition)
            real_logits = self.discriminate(disc, real_x, real_c)
            fake_logits = self.discriminate(disc, fake_x, fake_c)
            loss = F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()
        if isinstance(self.augment_pipe, AdaptiveAugment):
            self.augment_pipe.accumulate(real_logits)
        self.optimise(engine, "discriminator", loss)
        out["loss_d"] = loss
        if self.r1_gamma > 0 and engine.state.iteration % self.r1_interval == 0:
            x = real_x.detach().float().requires_grad_(True)
            c = None if real_c is None else real_c.detach().float()
            penalty = r1_penalty(self.discriminate(disc, x, c), x)
            self.optimise(engine, "discriminator", penalty * (self.r1_gamma / 2) * self.r1_interval)
            out["r1_penalty"] = penalty
        return out

    def generator_step(self, engine: Any, batch: int, condition: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The non-saturating generator update and, on its iterations, the lazy path-length update (losses not yet
        on the host)."""
        out: dict[str, torch.Tensor] = {}
        frozen_disc = self.module("discriminator", frozen=True)

        def loss_fn() -> torch.Tensor:
            x, c = self.augmented(self.generate(batch, condition)[0], condition)
            return F.softplus(-self.discriminate(frozen_disc, x, c).float()).mean()

        out["loss_g"] = self.generator_update(engine, "generator", loss_fn, ("discriminator",))
        if self.pl_weight > 0 and engine.state.iteration % self.pl_interval == 0:
            n = max(1, batch // self.pl_batch_shrink)
            images, ws = self.generate(n, None if condition is None else condition[:n], mixing=False)
            penalty, _ = self.path_length(images, ws)
            self.optimise(engine, "generator", penalty * self.pl_weight * self.pl_interval)
            out["pl_penalty"] = penalty
            out["pl_mean"] = self.path_length.mean.detach().clone()
        return out

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        real = self.images(batchdata)
        condition = None if self.condition_key is None else self.images(batchdata, self.condition_key)
        if condition is not None and (condition.shape[0] != real.shape[0] or condition.shape[2:] != real.shape[2:]):
            raise ValueError(
                f"'{self.condition_key}' {tuple(condition.shape)} must have the batch size and spatial shape of "
                f"'{self.image_key}' {tuple(real.shape)}."
            )
        batch, world = real.shape[0], get_world_size()
        iteration = engine.state.iteration
        out: dict[str, torch.Tensor | float] = {**self.discriminator_step(engine, real, condition)}
        out.update(self.generator_step(engine, batch, condition))
        self.update_ema((iteration - 1) * batch * world, batch * world)
        if isinstance(self.augment_pipe, AdaptiveAugment):
            if iteration % self.ada_interval == 0:
                r_t = self.augment_pipe.update(batch * world * self.ada_interval)
                if r_t is not None:
                    out["real_sign"] = r_t
            out["augment_p"] = self.augment_pipe.p
        # kept on the device (no copy per iteration); samples() copies them
        self.last_real = real[:NUM_SAMPLES].detach().clone()
        self.last_condition = None if condition is None else condition[:NUM_SAMPLES].detach().clone()
        return self.report(out)

    # ----------------------------------------------------------------- sample grids
    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """Real images of the last batch and EMA samples, for :class:`~common.handlers.SampleGridHandler`.

        Returns:
            ``(N, C, *spatial)``: up to 4 real images, then (C-SG) their masks as label maps (``argmax`` over the
            mask channels, in the first channel, the others constant), then the EMA generator's images for the
            fixed latents (C-SG: one per mask of the last batch, generated from it). Rows with fewer channels than
            the widest are padded with constant channels (shown black).
        """
        if self.last_real is None:
            raise RuntimeError("no training iteration has run yet.")
        ema = unwrap(self.networks["generator_ema"])
        was_training = ema.training
        ema.eval()
        try:
            if self.last_condition is None:
                z = self.fixed_latents.to(self.device)
                fake = ema(z)
            else:
                condition = self.last_condition.to(self.device)
                fake = ema(self.fixed_latents[: condition.shape[0]].to(self.device), condition=condition)
        finally:
            ema.train(was_training)
        rows = [self.last_real.float().cpu()]
        if self.last_condition is not None:
            rows.append(self.last_condition.argmax(1, keepdim=True).float().cpu())
        rows.append(fake.detach().float().cpu())
        channels = max(r.shape[1] for r in rows)
        rows = [torch.cat([r, r.new_zeros((r.shape[0], channels - r.shape[1], *r.shape[2:]))], 1) for r in rows]
        return torch.cat(rows, 0)
