"""Adversarial losses on raw discriminator/critic outputs (logits or scores).

MONAI's :class:`monai.losses.PatchAdversarialLoss` applies an activation to the discriminator output
(sigmoid + ``BCELoss``, tanh for hinge, LeakyReLU for least squares) and has no Wasserstein criterion.
The methods of this project need the textbook forms on raw outputs, numerically stable under
``torch.autocast`` (``BCELoss`` is refused by autocast), so they are defined here:

- ``"bce"``: the original (non-saturating) GAN loss, Goodfellow et al. 2014, with ``BCEWithLogits``;
  used by DCGAN (Han thesis, sec. 3.2.2).
- ``"lsgan"``: least squares GAN, Mao et al. 2017 (targets ``real_label``/``fake_label``, default 1/0);
  used by the CycleGAN family (CDA-GAN, sec. 3.1) and the MCGAN context discriminator (Han, sec. 6.2.1).
- ``"wgan"``: Wasserstein critic loss, Arjovsky et al. 2017 (critic: ``E[D(fake)] - E[D(real)]``,
  generator: ``-E[D(fake)]``); used by WGAN (Han, sec. 3.2.2) and, with the gradient penalty, WGAN-GP.
- ``"hinge"``: hinge loss, Lim & Ye 2017 / Miyato et al. 2018.

:func:`relativistic_average_hinge` is the relativistic average hinge loss (Jolicoeur-Martineau 2019), which needs the
scores of real and generated samples together in both updates; used by MSG-GAN (Karnewar & Wang 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["AdversarialLoss", "ADVERSARIAL_CRITERIA", "relativistic_average_hinge"]

ADVERSARIAL_CRITERIA = ("bce", "lsgan", "wgan", "hinge")


class AdversarialLoss(_Loss):
    """Adversarial loss for a discriminator or a generator, on raw discriminator outputs.

    A multi-scale discriminator may return a list of outputs: the loss is then the mean over them.

    Args:
        criterion: one of ``"bce"``, ``"lsgan"``, ``"wgan"``, ``"hinge"`` (``"least_squares"`` is accepted
            as an alias of ``"lsgan"``).
        real_label: target value of real samples for ``"bce"`` and ``"lsgan"`` (e.g. 0.9 for one-sided label
            smoothing).
        fake_label: target value of fake samples for ``"bce"`` and ``"lsgan"``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-element values, list for lists).

    Example::

        loss = AdversarialLoss("lsgan")
        d_loss = 0.5 * (loss(d(real), target_is_real=True) + loss(d(fake.detach()), target_is_real=False))
        g_loss = loss(d(fake), target_is_real=True, for_discriminator=False)
    """

    def __init__(
        self, criterion: str = "bce", real_label: float = 1.0, fake_label: float = 0.0, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction=reduction)
        criterion = criterion.lower()
        criterion = "lsgan" if criterion in ("least_squares", "least_square", "lsgan") else criterion
        if criterion not in ADVERSARIAL_CRITERIA:
            raise ValueError(f"criterion must be one of {ADVERSARIAL_CRITERIA}, got '{criterion}'.")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got '{reduction}'.")
        self.criterion = criterion
        self.real_label = float(real_label)
        self.fake_label = float(fake_label)

    def _single(self, output: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        output = output.float()  # losses in fp32 even under autocast
        if self.criterion == "bce":
            target = torch.full_like(output, self.real_label if target_is_real else self.fake_label)
            loss = F.binary_cross_entropy_with_logits(output, target, reduction="none")
        elif self.criterion == "lsgan":
            target = torch.full_like(output, self.real_label if target_is_real else self.fake_label)
            loss = (output - target) ** 2
        elif self.criterion == "wgan":
            loss = -output if target_is_real else output
        else:  # hinge
            if for_discriminator:
                loss = F.relu(1.0 - output) if target_is_real else F.relu(1.0 + output)
            else:
                loss = -output
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def forward(
        self, output: torch.Tensor | Sequence[torch.Tensor], target_is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor | list[torch.Tensor]:
        """
        Args:
            output: discriminator output(s) of any shape, e.g. ``(B, 1)`` or a patch map ``(B, 1, H, W[, D])``,
                before any activation.
            target_is_real: whether ``output`` was computed on real samples (discriminator step), or,
                for the generator step, whether the generator wants them judged real (always ``True``).
            for_discriminator: ``True`` for the discriminator/critic loss, ``False`` for the generator loss.

        Returns:
            The loss (scalar unless ``reduction="none"``).
        """
        if not for_discriminator and not target_is_real:
            raise ValueError("the generator loss is computed with target_is_real=True.")
        if isinstance(output, (list, tuple)):
            losses = [self._single(o, target_is_real, for_discriminator) for o in output]
            if self.reduction == "none":
                return losses
            return torch.stack(losses).mean()
        return self._single(output, target_is_real, for_discriminator)


def relativistic_average_hinge(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, for_discriminator: bool = True
) -> torch.Tensor:
    """Relativistic average hinge loss (RaHinge; Jolicoeur-Martineau 2019, "The relativistic discriminator").

    With ``r = D(x_r) - E[D(x_f)]`` and ``f = D(x_f) - E[D(x_r)]`` (the means over the batch):

    - discriminator: ``E[max(0, 1 - r)] + E[max(0, 1 + f)]``;
    - generator: ``E[max(0, 1 + r)] + E[max(0, 1 - f)]`` (the roles of real and fake swapped; the real scores
      carry no gradient to the generator but set the reference it is judged against).

    Args:
        real_scores: raw discriminator outputs on real samples, e.g. ``(B, 1)``.
        fake_scores: raw discriminator outputs on generated samples (any batch size).
        for_discriminator: the discriminator's loss (``True``) or the generator's.

    Returns:
        The scalar loss, computed in float32.
    """
    real, fake = real_scores.float(), fake_scores.float()
    rel_real = real - fake.mean()
    rel_fake = fake - real.mean()
    if for_discriminator:
        return F.relu(1.0 - rel_real).mean() + F.relu(1.0 + rel_fake).mean()
    return F.relu(1.0 + rel_real).mean() + F.relu(1.0 - rel_fake).mean()
