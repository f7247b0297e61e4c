"""Per-pixel accuracy (PA) of generated images, paper 002 sec. III-A ("discriminability", refs. [12], [37], [39]).

The references score generated images with a network trained on real data and compare its predictions with the
labels the images were generated for: pix2pix's FCN-score [12] (Isola et al.: an FCN-8s segmenter trained on real
Cityscapes photos labels the synthesised photos; per-pixel accuracy against the label maps they were synthesised
from), the Inception score [37] (Salimans et al.: an ImageNet classifier's predictions on generated images) and
S2-GAN [39] (Wang & Gupta: a scene classifier and a surface-normal network trained on real images, run on the
generated ones and scored against their conditions). PA is therefore

    ``PA = (1 / N) sum_n (1 / |P_n|) sum_{p in P_n} [argmax_k f(x_g^n)_{k, p} = y^n_p]``

for generated images ``x_g^n``, an evaluator ``f`` trained on real images, target labels ``y^n`` (a label map, or
the image's class ``c^n`` at every pixel) and the counted pixels ``P_n`` (all but ``ignore_index``). For paper 002's
class-labelled data, ``x_g`` is generated from ``x_i`` of class ``c`` and must belong to ``c`` (sec. II-B); its
label map is the constant map ``c``, and an image classifier's prediction is the same at every pixel, so PA is the
fraction of generated images that a classifier trained on the real training images assigns to their class. Images
of equal size make the mean of per-image accuracies equal to the pooled per-pixel accuracy of the FCN-score.

The 95 % confidence interval (Table II's "±") is the Student-t interval of the mean of the per-image accuracies
(:func:`common.metrics.statistics.mean_confidence_interval`).
"""

from __future__ import annotations

import torch
from common.metrics.statistics import mean_confidence_interval
from monai.metrics import CumulativeIterationMetric

__all__ = ["PixelAccuracyMetric", "pixel_accuracy"]


def _as_indices(y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and target class indices of the same shape ``(B, *spatial)`` (or ``(B,)``)."""
    pred = y_pred.argmax(1) if y_pred.is_floating_point() else y_pred
    if pred.ndim == 0:
        raise ValueError("y_pred must have a batch dimension.")
    target = y
    if target.ndim == pred.ndim + 1 and target.shape[1] == 1:  # MONAI's channel-first label map (B, 1, *spatial)
        target = target[:, 0]
    if target.ndim == 1 and pred.ndim > 1:  # one class per image, the label of every pixel
        target = target.reshape(-1, *([1] * (pred.ndim - 1))).expand_as(pred)
    if target.shape != pred.shape:
        raise ValueError(
            f"predictions of shape {tuple(pred.shape)} (from y_pred {tuple(y_pred.shape)}) do not match the labels "
            f"{tuple(y.shape)}: give labels (B,), (B, *spatial) or (B, 1, *spatial)."
        )
    if target.is_floating_point() and not torch.equal(target, target.round()):
        raise ValueError("the labels must be class indices (integers).")
    return pred.long(), target.long()


def pixel_accuracy(y_pred: torch.Tensor, y: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Per-image fraction of pixels whose predicted class is the target class.

    Args:
        y_pred: the evaluator's class scores ``(B, K, *spatial)`` (a segmenter, as the FCN-score) or ``(B, K)`` (a
            classifier), reduced by arg-max over ``K``; or predicted class indices ``(B, *spatial)``/``(B,)`` of an
            integer dtype.
        y: target class indices: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``, or one class per image
            ``(B,)`` (every pixel of image ``b`` has class ``y[b]``).
        ignore_index: a target value whose pixels are not counted (``None``: all pixels count).

    Returns:
        ``(B,)`` float accuracies in ``[0, 1]``; NaN for an image without counted pixels.

    Raises:
        ValueError: when the shapes do not match or the labels are not integers.
    """
    pred, target = _as_indices(y_pred, y)
    counted = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    correct = ((pred == target) & counted).reshape(len(pred), -1).sum(1)
    return correct.double() / counted.reshape(len(pred), -1).sum(1).double()


class PixelAccuracyMetric(CumulativeIterationMetric):
    """PA accumulated over batches (a MONAI cumulative metric): per-image accuracies, their mean and 95 % interval.

    Call it on each batch with the evaluator's scores on the generated images and their target labels (see
    :func:`pixel_accuracy`); :meth:`aggregate` gives the mean PA, :meth:`confidence_interval` the mean and the
    half-width of its interval. Images without counted pixels are left out of both.

    Args:
        ignore_index: a target value whose pixels are not counted.
    """

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore
        if y is None:
            raise ValueError("PixelAccuracyMetric needs the target labels y.")
        return pixel_accuracy(y_pred, y, self.ignore_index)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The mean PA over the images seen since the last ``reset()`` (NaN before any)."""
        return torch.tensor(self.confidence_interval()[0], dtype=torch.float64)

    def confidence_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """``(mean PA, half-width)`` of the Student-t interval over the images seen (:func:`mean_confidence_interval`)."""
        buffer = self.get_buffer()
        values = buffer if isinstance(buffer, torch.Tensor) else torch.zeros(0)
        return mean_confidence_interval(values, confidence)
