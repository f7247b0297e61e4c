"""One training step for the attention-guided CycleGAN family: CycleGAN, UAGGAN, AGGAN, SSA-CycleGAN, CDA-GAN.

CDA-GAN (Xu et al. 2023), Algorithm 1 with the objective of sec. 3.1.4, between the positive domain P (with
lesions) and the negative domain N:

- translation with attention compositing, eq. 4-5: ``G^A_N(p) = A_N(p) * G_N(p) + (1 - A_N(p)) * p`` and
  likewise ``G^A_P(n)``; ``attention="none"`` gives plain CycleGAN (``G_N(p)``), ``"separate"`` a separate
  attention network (UAGGAN, CDA-GAN), ``"shared"`` a mask from the generator itself (AGGAN);
- attention-guided discriminators, eq. 7-8: a discriminator sees an image concatenated with that image's own
  attention map, detached, so it carries no gradient (sec. 3.1.2: "the generated attention map do not guide the
  training procedure of discriminators"). A generated image carries the map made while generating it, i.e. the
  map of its source: ``D_N`` sees ``(G^A_N(p), A_N(p))`` and ``D_P`` sees ``(G^A_P(n), A_P(n))``; a real image
  carries the map that the attention network translating it out of its domain computes on it: ``D_N`` sees
  ``(n, A_P(n))`` and ``D_P`` sees ``(p, A_N(p))``. This is the prose of eq. 7 ("the generated positive images and
  its corresponding attention mask in generation produce (M^p, p^o) with real positive images and its attention
  mask (M^n, p)") and AGGAN's attention-guided discriminator; eq. 7-8 name the maps by the domain they translate
  to (``M^n``: the map of a translation to N, ``A_N(p)``), where sec. 3.1.2 names them by their input
  (``M^p = A_N(p)``). So within one discriminator the real and the generated image carry maps of different
  attention networks (``A_P`` and ``A_N`` for ``D_N``), as eq. 7-8 write;
- least-squares adversarial loss (the CycleGAN code base's default: the paper writes eq. 7-8 with logs);
- cycle consistency, eq. 10, weighted by ``lambda_cycle``;
- identity loss ``||G^A_N(n) - n||_1 + ||G^A_P(p) - p||_1`` weighted by ``lambda_identity * lambda_cycle``
  (CycleGAN sec. 5.2; the test-time rule of CDA-GAN sec. 3.2, every image through ``G_N``, relies on ``G_N``
  leaving negatives unchanged);
- the semi-supervised attention loss, eq. 6/9: ``lambda_attention * ||M - A_N(p)||_1`` against the tumour mask,
  on the P -> N direction only (none on N -> P); L1 as eq. 6, eq. 9 and Algorithm 1 write it (the prose of
  sec. 3.1.2 says L2);
- discriminators updated on a history pool of generated images (50 in CycleGAN), with the loss halved.

Switches that make the family's baselines the methods they name (all off by default):

- UAGGAN's second stage (Alami Mejjati et al. 2018, sec. 3, "attention-guided discriminator" and its training
  details), ``attention_switch_epoch``: for the first ``attention_switch_epoch`` epochs (30 in UAGGAN) everything
  is as above, the discriminators see whole images; after them the discriminators see only the attended regions,
  with the attention thresholded at ``attention_tau`` (0.1): a real image ``t`` goes in as ``t`` where its own map
  exceeds tau and 0 elsewhere (``t * [A_T(t) > tau]``, the map of the network translating it out of its domain, as
  in the pairing above), a generated image as the raw generator output where the map that produced it exceeds tau
  (``F(s) * [A_S(s) > tau]``); and the attention networks are no longer trained (no gradient, no update). The image
  pools are emptied at the first iteration of the second stage, so that no whole image of the first stage reaches
  a discriminator after the switch;
- AGGAN's losses (Tang et al. 2019, sec. III-C): ``lambda_pixel * (||G^A_N(p) - p||_1 + ||G^A_P(n) - n||_1)`` and
  ``lambda_tv * (TV(A_N(p)) + TV(A_P(n)))`` (:func:`~common.losses.pixel_loss`,
  :func:`~common.losses.attention_tv_loss`).

Networks (names in ``networks``): ``gen_n`` (P -> N), ``gen_p`` (N -> P), ``disc_n``, ``disc_p`` and, with
``attention="separate"``, ``attn_n`` and ``attn_p``. One optimiser updates all generator-side networks, one both
discriminators, as in CycleGAN.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.losses import AdversarialLoss, attention_tv_loss, pixel_loss
from common.networks.cyclegan import attention_translate

from .image_pool import ImagePool
from .step import TrainingStep

__all__ = ["ATTENTION_MODES", "CycleGANStep"]

ATTENTION_MODES = ("none", "separate", "shared")


class CycleGANStep(TrainingStep):
    """Training step of the attention-guided CycleGAN family (CDA-GAN Algorithm 1).

    Args:
        gen_n: generator P -> N (returns an image, or ``(image, mask)`` with ``attention="shared"``).
        gen_p: generator N -> P.
        disc_n: discriminator of domain N (input: image, plus the attention map if ``attention_guided``).
        disc_p: discriminator of domain P.
        g_optimizer: optimiser of the generators and attention networks.
        d_optimizer: optimiser of both discriminators.
        device: training device.
        attn_n: attention network of the P -> N translation (``attention="separate"``).
        attn_p: attention network of the N -> P translation.
        attention: ``"none"`` (CycleGAN), ``"separate"`` (UAGGAN, CDA-GAN) or ``"shared"`` (AGGAN).
        attention_guided: feed each image's own (detached) attention map to the discriminators (eq. 7-8).
        lambda_cycle: weight of the cycle loss (10 in CycleGAN).
        lambda_identity: identity weight relative to ``lambda_cycle`` (0.5 in CycleGAN; 0 disables it).
        lambda_attention: weight of the attention L1 against the tumour mask (0 disables supervision: "w/o SS").
        pool_size: size of the image pools (0 disables them).
        lambda_pixel: weight of AGGAN's pixel loss between each input and its translation (0 disables it).
        lambda_tv: weight of AGGAN's attention loss, the total variation of the two attention maps (0 disables it).
        attention_switch_epoch: UAGGAN: after this many epochs the discriminators see only attended regions and the
            attention networks are frozen (``attention="separate"`` only); ``None`` (default): never.
        attention_tau: UAGGAN's threshold of the attention maps in the second stage (0.1).
        loss: adversarial criterion (``"lsgan"``; ``"bce"``, ``"hinge"``, ``"wgan"`` also accepted).
        positive_key / negative_key / mask_key: batch keys of the positive images, negative images and the
            positives' tumour masks (any value > 0 is tumour).
        schedulers: learning-rate schedulers, stepped per epoch, keys ``"generators"``/``"discriminators"``.
        amp, amp_dtype: mixed precision, see :class:`~common.engines.TrainingStep`.
        memory_format, compile: memory layout and ``torch.compile`` of the networks, see
            :class:`~common.engines.TrainingStep`.
        seed: seed of the image pools.
    """

    def __init__(
        self,
        gen_n: nn.Module,
        gen_p: nn.Module,
        disc_n: nn.Module,
        disc_p: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        device: str | torch.device = "cpu",
        attn_n: nn.Module | None = None,
        attn_p: nn.Module | None = None,
        attention: str = "separate",
        attention_guided: bool = True,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        lambda_attention: float = 1.0,
        pool_size: int = 50,
        lambda_pixel: float = 0.0,
        lambda_tv: float = 0.0,
        attention_switch_epoch: int | None = None,
        attention_tau: float = 0.1,
        loss: str = "lsgan",
        positive_key: str = "positive",
        negative_key: str = "negative",
        mask_key: str = "mask",
        schedulers: dict[str, Any] | None = None,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        seed: int = 0,
    ) -> None:
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got '{attention}'.")
        if attention == "separate" and (attn_n is None or attn_p is None):
            raise ValueError("attention='separate' needs the attention networks attn_n and attn_p.")
        if attention != "separate" and (attn_n is not None or attn_p is not None):
            raise ValueError(f"attention='{attention}' takes no separate attention networks.")
        if attention == "none" and attention_guided:
            raise ValueError("attention_guided discriminators need attention maps: use attention != 'none'.")
        if attention == "none" and lambda_attention > 0:
            raise ValueError("lambda_attention > 0 needs attention maps: use attention != 'none' or set it to 0.")
        if attention == "none" and lambda_tv > 0:
            raise ValueError("lambda_tv > 0 needs attention maps: use attention != 'none' or set it to 0.")
        if attention_switch_epoch is not None:
            if attention != "separate":
                raise ValueError(
                    "attention_switch_epoch freezes separate attention networks: use attention='separate'."
                )
            if attention_switch_epoch < 0:
                raise ValueError(f"attention_switch_epoch must be >= 0 or None, got {attention_switch_epoch}.")
        if not 0.0 <= attention_tau < 1.0:
            raise ValueError(f"attention_tau must be in [0, 1), got {attention_tau}.")
        networks = {"gen_n": gen_n, "gen_p": gen_p, "disc_n": disc_n, "disc_p": disc_p}
        if attention == "separate":
            networks.update({"attn_n": attn_n, "attn_p": attn_p})  # type: ignore[dict-item]
        generators = [k for k in networks if not k.startswith("disc")]
        super().__init__(
            networks=networks,
            optimizers={"generators": g_optimizer, "discriminators": d_optimizer},
            device=device,
            schedulers=schedulers,
            amp=amp,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            compile=compile,
            image_key=positive_key,
            optimizer_networks={"generators": generators, "discriminators": ["disc_n", "disc_p"]},
        )
        self.attention = attention
        self.attention_guided = bool(attention_guided)
        self.lambda_cycle = float(lambda_cycle)
        self.lambda_identity = float(lambda_identity)
        self.lambda_attention = float(lambda_attention)
        self.lambda_pixel = float(lambda_pixel)
        self.lambda_tv = float(lambda_tv)
        self.attention_switch_epoch = None if attention_switch_epoch is None else int(attention_switch_epoch)
        self.attention_tau = float(attention_tau)
        self.adversarial = AdversarialLoss(loss)
        self.pool_n = ImagePool(pool_size, seed=seed)
        self.pool_p = ImagePool(pool_size, seed=seed + 1)
        self.positive_key, self.negative_key, self.mask_key = positive_key, negative_key, mask_key

    def state_objects(self) -> dict[str, Any]:
        objects = super().state_objects()
        objects.update({"pool_n": self.pool_n, "pool_p": self.pool_p})
        return objects

    # ------------------------------------------------------------------ translation (eq. 4-5)
    def translate(self, x: torch.Tensor, to: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Translate ``x`` to domain ``to`` (``"n"`` or ``"p"``).

        Returns:
            The translated image ``(B, C, *spatial)`` and the attention map ``(B, 1, *spatial)`` (``None`` for
            plain CycleGAN).
        """
        return attention_translate(x, self.networks[f"gen_{to}"], self.networks.get(f"attn_{to}"))

    def _translate_parts(self, x: torch.Tensor, to: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`translate`, also returning the raw generator output ``G(x)`` ``(B, C, *spatial)`` (before
        compositing), which UAGGAN's second stage shows the discriminators."""
        generator, raw = self.networks[f"gen_{to}"], []

        def generate(inputs: torch.Tensor) -> Any:
            out = generator(inputs)
            raw.append(out[0] if isinstance(out, tuple) else out)
            return out

        image, mask = attention_translate(x, generate, self.networks.get(f"attn_{to}"))  # type: ignore[arg-type]
        return image, mask, raw[0]

    # ------------------------------------------------------------------ UAGGAN's two stages
    def attended_stage(self, engine: Any) -> bool:
        """Whether this iteration is in UAGGAN's second stage (epoch ``> attention_switch_epoch``, 1-based)."""
        return self.attention_switch_epoch is not None and engine.state.epoch > self.attention_switch_epoch

    def attended(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """UAGGAN's discriminator input in the second stage: ``image`` where ``mask > attention_tau``, else 0.

        Args:
            image: images ``(B, C, *spatial)``.
            mask: their attention maps ``(B, 1, *spatial)`` (detached here: the binary mask carries no gradient).

        Returns:
            ``image * [mask > tau]``, shape ``(B, C, *spatial)``.
        """
        return image * (mask.detach() > self.attention_tau).to(image.dtype)

    def _disc_input(self, image: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The image, with the detached attention map appended as a last channel when discriminators are guided."""
        if not self.attention_guided or mask is None:
            return image
        return torch.cat([image, mask.detach().to(image.dtype)], 1)

    def _discriminate(self, disc: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run a discriminator on :meth:`_disc_input` output (the map goes in as ``attention_map``, eq. 7-8)."""
        if not self.attention_guided:
            return disc(x)
        return disc(x[:, :-1], attention_map=x[:, -1:])

    # ------------------------------------------------------------------ one iteration
    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        real_p = self.images(batchdata, self.positive_key)
        real_n = self.images(batchdata, self.negative_key)
        out: dict[str, torch.Tensor] = {}
        second_stage = self.attended_stage(engine)
        if second_stage and engine.state.iteration == self.attention_switch_epoch * engine.state.epoch_length + 1:
            self.pool_n.images.clear()  # UAGGAN's second stage starts: no whole first-stage fake is replayed
            self.pool_p.images.clear()
        frozen = ("disc_n", "disc_p", "attn_n", "attn_p") if second_stage else ("disc_n", "disc_p")

        # generator update (Algorithm 1, lines 3-13), discriminators (and in UAGGAN's second stage the attention
        # networks) frozen
        with self.frozen(*frozen), self.autocast():
            fake_n, map_p, raw_n = self._translate_parts(real_p, "n")  # P -> N, map_p = A_N(p), the positive's map
            fake_p, map_n, raw_p = self._translate_parts(real_n, "p")  # N -> P, map_n = A_P(n), the negative's map
            rec_p, _ = self.translate(fake_n, "p")
            rec_n, _ = self.translate(fake_p, "n")
            # what the discriminators see of the fakes: the composites, or in UAGGAN's second stage the attended
            # raw outputs
            seen_n = self.attended(raw_n, map_p) if second_stage else fake_n  # type: ignore[arg-type]
            seen_p = self.attended(raw_p, map_n) if second_stage else fake_p  # type: ignore[arg-type]
            disc_n = self.module("disc_n", frozen=True)
            disc_p = self.module("disc_p", frozen=True)
            adv = self.adversarial(
                self._discriminate(disc_n, self._disc_input(seen_n, map_p)), True, for_discriminator=False
            ) + self.adversarial(
                self._discriminate(disc_p, self._disc_input(seen_p, map_n)), True, for_discriminator=False
            )
            cycle = F.l1_loss(rec_p.float(), real_p) + F.l1_loss(rec_n.float(), real_n)
            g_loss = adv + self.lambda_cycle * cycle
            out["loss_g_adv"], out["loss_cycle"] = adv, cycle
            if self.lambda_identity > 0:
                idt = F.l1_loss(self.translate(real_n, "n")[0].float(), real_n)
                idt = idt + F.l1_loss(self.translate(real_p, "p")[0].float(), real_p)
                g_loss = g_loss + self.lambda_identity * self.lambda_cycle * idt
                out["loss_identity"] = idt
            if self.lambda_attention > 0:
                if self.mask_key not in batchdata:
                    raise KeyError(f"lambda_attention > 0 needs the positives' tumour masks under '{self.mask_key}'.")
                tumour = (self.images(batchdata, self.mask_key) > 0).float()
                if tumour.shape[1] != 1:
                    tumour = tumour.amax(1, keepdim=True)
                att = F.l1_loss(map_p.float(), tumour)  # type: ignore[union-attr]
                g_loss = g_loss + self.lambda_attention * att
                out["loss_attention"] = att
            if self.lambda_pixel > 0:  # AGGAN's pixel loss
                pix = pixel_loss(real_p, fake_n) + pixel_loss(real_n, fake_p)
                g_loss = g_loss + self.lambda_pixel * pix
                out["loss_pixel"] = pix
            if self.lambda_tv > 0:  # AGGAN's attention loss
                tv = attention_tv_loss(map_p) + attention_tv_loss(map_n)  # type: ignore[arg-type]
                g_loss = g_loss + self.lambda_tv * tv
                out["loss_tv"] = tv
        self.optimise(engine, "generators", g_loss, terms=out)
        out["loss_g"] = g_loss

        # discriminator update (lines 14-18) on pooled fakes, generators untouched; every image with its own map
        # (eq. 7-8): a fake with its source's map (pooled together), a real image with the map computed on it
        # (in UAGGAN's second stage, attended regions only)
        if second_stage:
            real_n, real_p = self.attended(real_n, map_n), self.attended(real_p, map_p)  # type: ignore[arg-type]
        pooled_n = self.pool_n.query(self._disc_input(seen_n.detach().float(), map_p))
        pooled_p = self.pool_p.query(self._disc_input(seen_p.detach().float(), map_n))
        with self.autocast():
            d_n = self._disc_loss("disc_n", self._disc_input(real_n, map_n), pooled_n)
            d_p = self._disc_loss("disc_p", self._disc_input(real_p, map_p), pooled_p)
        out["loss_d_n"], out["loss_d_p"] = d_n, d_p
        self.optimise(engine, "discriminators", d_n + d_p, terms={"loss_d_n": d_n, "loss_d_p": d_p})
        return self.report(out)

    def _disc_loss(self, name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        disc = self.networks[name]
        return 0.5 * (
            self.adversarial(self._discriminate(disc, real), True)
            + self.adversarial(self._discriminate(disc, fake), False)
        )
