"""The attention and pixel losses of AGGAN (Tang et al. 2019, "Attention-Guided Generative Adversarial Networks for
Unsupervised Image-to-Image Translation", IJCNN, sec. III-C, the optimisation objective).

- :func:`attention_tv_loss`: AGGAN's attention loss, the total variation of an attention mask ``A``,
  ``L_tv(A) = sum_{w,h} |A(w+1, h) - A(w, h)| + |A(w, h+1) - A(w, h)|``: a sum (not a mean) over the pixels, which is
  why its weight ``lambda_tv`` is tiny (1e-6 in AGGAN). It keeps the masks smooth, so that they do not saturate on
  isolated pixels. In 3D the differences along the third axis are added; the sum is taken per image and averaged
  over the batch (AGGAN trains at batch size 1, where the two agree).
- :func:`pixel_loss`: AGGAN's pixel loss, ``L_pixel = ||G(x) - x||_1``, the mean absolute difference between an input
  image and its translation, which keeps the translation close to its input outside the changed region.

MONAI has neither (its ``DiffusionLoss`` is the squared gradient of a displacement field, with a mean), so they are
written here. Both compute in float32 whatever the autocast dtype of their inputs.
"""

from __future__ import annotations

import torch

__all__ = ["attention_tv_loss", "pixel_loss"]


def attention_tv_loss(mask: torch.Tensor) -> torch.Tensor:
    """AGGAN's attention loss: the anisotropic total variation of attention masks, summed per image.

    Args:
        mask: attention masks ``(B, C, *spatial)`` (``C = 1`` for the family's masks), 1 to 3 spatial dimensions.

    Returns:
        a scalar: ``mean_b sum_{c, d, i} |mask[b, c, i + e_d] - mask[b, c, i]|`` over every spatial axis ``d`` and
        every position ``i`` where the forward difference along ``d`` exists.
    """
    if mask.ndim < 3:
        raise ValueError(f"mask must have shape (B, C, *spatial), got {tuple(mask.shape)}.")
    mask = mask.float()
    total = mask.new_zeros(mask.shape[0])
    for axis in range(2, mask.ndim):
        total = total + torch.diff(mask, dim=axis).abs().flatten(1).sum(1)
    return total.mean()


def pixel_loss(source: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
    """AGGAN's pixel loss ``||G(x) - x||_1``: the mean absolute difference between inputs and their translations.

    Args:
        source: the input images ``x``, ``(B, C, *spatial)``.
        translated: their translations ``G(x)``, same shape.

    Returns:
        a scalar, the mean of ``|G(x) - x|`` over every element.
    """
    if source.shape != translated.shape:
        raise ValueError(f"source {tuple(source.shape)} and translated {tuple(translated.shape)} shapes differ.")
    return (translated.float() - source.float()).abs().mean()
