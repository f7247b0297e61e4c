"""Measures of a P <-> N translation model (CDA-GAN sec. 3.1-3.2); the evaluation pipeline that reports them with
FID/KID is :class:`common.evaluation.TranslationEvaluation`.

- realism: FID and KID of translated images against real images of the target domain, on a named extractor;
- attention: Dice and IoU of the P -> N attention map (thresholded) against the tumour mask (sec. 3.1.2 says
  "the attention map of P -> N translation is exactly the whole lesion region");
- locality: mean absolute change ``|p - G_N(p)|`` inside and outside the tumour mask, and their ratio: how much of
  the translation happens where the tumour is.
"""

from __future__ import annotations

import torch
from monai.metrics import DiceMetric, MeanIoU

__all__ = ["attention_dice_iou", "change_inside_outside"]


def attention_dice_iou(attention: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> tuple[float, float]:
    """Mean Dice and IoU of ``attention > threshold`` against ``mask > 0`` (MONAI ``DiceMetric``/``MeanIoU``).

    Args:
        attention: maps ``(B, 1, *spatial)`` in [0, 1].
        mask: tumour masks ``(B, 1, *spatial)`` (any value > 0 is tumour).
        threshold: binarisation threshold of the maps.

    Returns:
        ``(dice, iou)`` averaged over the batch; an empty prediction of an empty mask counts as 1.
    """
    pred, target = (attention > threshold).float(), (mask > 0).float()
    dice = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)(pred, target)
    iou = MeanIoU(include_background=True, reduction="mean", ignore_empty=False)(pred, target)
    return float(dice.mean()), float(iou.mean())


def change_inside_outside(image: torch.Tensor, translated: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Mean absolute change ``|image - translated|`` over the voxels inside and outside ``mask > 0``.

    Args:
        image, translated: ``(B, C, *spatial)``.
        mask: ``(B, 1, *spatial)``.

    Returns:
        ``(inside, outside)``; ``nan`` for a region with no voxels.
    """
    change = (image - translated).abs().mean(1, keepdim=True)
    inside = mask > 0
    mean_in = change[inside].mean() if inside.any() else torch.tensor(float("nan"))
    mean_out = change[~inside].mean() if (~inside).any() else torch.tensor(float("nan"))
    return float(mean_in), float(mean_out)
