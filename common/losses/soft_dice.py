"""Soft Sørensen-Dice loss of Vu et al. (paper 004, sec. 4.3, eq. 5), summed over every element of the one-hot mask.

Eq. 5 is

    ``L_DSC(M, M_hat) = -(2 sum_i m_i m_hat_i + eps) / (sum_i m_i + sum_i m_hat_i + eps)``

where ``m_i`` runs over **every** element of the one-hot ground truth ``M`` (all classes, all voxels, all images of
the mini-batch), ``m_hat_i`` is the matching element of the network's softmax output and ``eps = 1e-5``. The printed
equation puts the minus sign inside the numerator (``-2 sum + eps``); the text says eps is added to the numerator "to
give true zero predicted masks a score of 1", which only ``-(2 sum + eps) / (...)`` does, so that is implemented.

This is not MONAI's :class:`~monai.losses.DiceLoss`: with ``batch=True`` MONAI sums over the batch and the voxels
**per class** and then averages the per-class ratios (and adds 1), so every class weighs the same whatever its size.
Eq. 5 forms one ratio over all classes together, so large classes (the background) dominate.
``tests/losses/test_soft_dice.py`` shows a case where the two differ.

With the background channel included (the default, as eq. 5's one-hot mask has it) and a softmax prediction, both
``sum m`` and ``sum m_hat`` equal the number of voxels ``B * N``, so the loss is
``-(2 sum m m_hat + eps) / (2 B N + eps)``: minus the mean probability given to the true class. With
``include_background=False`` (the foreground channels only, the other reading of "one-hot mask" for a binary task)
the denominator can be 0 and eps decides the empty case: an empty mask and an empty prediction score 1.

Eq. 6, the evaluation score ``DSC = -L_DSC`` with ``eps = 0``, is :func:`common.metrics.segmentation.dsc_per_image`, built on
:func:`soft_dice_score`.
"""

from __future__ import annotations

import torch
from monai.networks.utils import one_hot
from torch.nn.modules.loss import _Loss

__all__ = ["SoftDiceLoss", "soft_dice_score"]


def _as_one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The one-hot form ``(B, K, *S)`` of a label map ``(B, 1, *S)`` or of an already one-hot target."""
    if target.shape[1] == num_classes and num_classes > 1:
        return target.float()
    if target.shape[1] != 1:
        raise ValueError(
            f"the target must be a label map (B, 1, *S) or one-hot (B, {num_classes}, *S); got {tuple(target.shape)}."
        )
    return one_hot(target.long(), num_classes=num_classes, dim=1).float()


def soft_dice_score(
    prediction: torch.Tensor,
    target: torch.Tensor,
    epsilon: float = 1e-5,
    include_background: bool = True,
    per_image: bool = False,
) -> torch.Tensor:
    """``(2 sum m m_hat + eps) / (sum m + sum m_hat + eps)``, the score of Vu et al. eq. 5 (``-L_DSC``).

    The sums run over all classes and voxels, and over the whole batch unless ``per_image``. Where the denominator
    is 0 (only possible with ``epsilon = 0`` and ``include_background=False``: empty mask and empty prediction) the
    score is 1, the value eq. 5 gives that case for every ``eps > 0``.

    Args:
        prediction: class probabilities or a binary one-hot prediction ``(B, K, *S)``.
        target: the ground truth, a label map ``(B, 1, *S)`` of class indices or one-hot ``(B, K, *S)``.
        epsilon: added to the numerator and the denominator (eq. 5: ``1e-5``; eq. 6: 0).
        include_background: whether channel 0 is summed (eq. 5: yes, the whole one-hot mask).
        per_image: one score per image ``(B,)`` instead of one for the batch.

    Returns:
        The score: a scalar, or ``(B,)`` with ``per_image``.

    Raises:
        ValueError: when the shapes do not match.
    """
    if prediction.ndim < 3:
        raise ValueError(f"the prediction must be (B, K, *S); got {tuple(prediction.shape)}.")
    target = _as_one_hot(target, prediction.shape[1])
    if target.shape != prediction.shape:
        raise ValueError(
            f"the prediction {tuple(prediction.shape)} and the target {tuple(target.shape)} differ in shape."
        )
    if not include_background:
        prediction, target = prediction[:, 1:], target[:, 1:]
    dims = tuple(range(1, prediction.ndim)) if per_image else tuple(range(prediction.ndim))
    intersection = (target * prediction).sum(dim=dims)
    denominator = target.sum(dim=dims) + prediction.sum(dim=dims) + epsilon
    defined = denominator > 0
    safe = torch.where(defined, denominator, torch.ones_like(denominator))
    return torch.where(defined, (2.0 * intersection + epsilon) / safe, torch.ones_like(denominator))


class SoftDiceLoss(_Loss):
    """Vu et al. eq. 5: ``L = -(2 sum m m_hat + eps) / (sum m + sum m_hat + eps)`` on the softmax of the logits.

    One ratio over every element of the one-hot mask of the whole mini-batch (all classes and voxels together),
    not MONAI's :class:`~monai.losses.DiceLoss` mean of per-class ratios; see the module docstring. The loss lies in
    ``[-1, 0]``: -1 for a perfect prediction.

    Args:
        epsilon: added to numerator and denominator (eq. 5: ``1e-5``).
        include_background: whether the background channel 0 is summed (eq. 5: yes).
    """

    def __init__(self, epsilon: float = 1e-5, include_background: bool = True) -> None:
        super().__init__()
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0; got {epsilon}.")
        self.epsilon = epsilon
        self.include_background = include_background

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of a mini-batch.

        Args:
            input: logits ``(B, K, *S)`` (``K >= 2`` classes, background first).
            target: class indices ``(B, 1, *S)`` (integer or float) or a one-hot mask ``(B, K, *S)``.

        Returns:
            The scalar loss.
        """
        if input.shape[1] < 2:
            raise ValueError(f"the logits need K >= 2 channels for the softmax; got {tuple(input.shape)}.")
        probabilities = torch.softmax(input, dim=1, dtype=torch.promote_types(input.dtype, torch.float32))
        return -soft_dice_score(probabilities, target, self.epsilon, self.include_background)
