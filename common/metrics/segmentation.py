"""Segmentation metrics of CDA-GAN (Xu et al. 2023, sec. 4.2, eq. 15-20): Dice, sensitivity, HD95 and mIoU.

Built on MONAI's :func:`~monai.metrics.compute_dice`, :func:`~monai.metrics.compute_confusion_matrix_metric`,
:func:`~monai.metrics.compute_hausdorff_distance` (``percentile=95``) and :func:`~monai.metrics.compute_iou`, applied to
one-hot masks ``(B, C, *spatial)`` (channel 0 = background). For each image and each foreground class ``c``:

- Sens (eq. 15) ``= TP / (TP + FN)``;
- Dice (eq. 16) ``= 2 TP / (2 TP + FP + FN)``;
- IoU ``= TP / (TP + FP + FN)``; mIoU (eq. 17) is its mean over the foreground classes and the images (the paper
  averages over "n categories"; its Table 3 mIoU values (0.58 at Dice 0.68) are far below what a background class
  would add, so the background is left out by default);
- HD95 (eq. 18-20) ``= max(P95 d(P -> G), P95 d(G -> P))``: the larger of the two directed 95th percentiles of the
  distances from each boundary voxel of one mask to the nearest boundary voxel of the other (eq. 19-20 print sums
  where the text means the distance sets), in voxel units (``spacing`` to get mm).

**Empty masks** (the paper does not say; BraTS test sets are 64 % tumour-free slices):

- ground truth empty for class ``c``: the image is left out of the per-image means of ``c`` (MONAI's
  ``ignore_empty``; Dice, Sens, IoU and HD95 are undefined there). Such images still count in ``dice_global`` and in
  ``empty_false_positive_rate`` (the fraction of them with any predicted foreground voxel);
- ground truth not empty, prediction empty: Dice = Sens = IoU = 0 and HD95 = the image diagonal (the largest possible
  distance; MONAI returns NaN there), so a missed tumour is penalised rather than dropped.

Per-image values are averaged over images (then over classes); ``dice_global`` is eq. 16 on the TP/FP/FN summed over
every image of the set.

**DSC of Vu et al. (paper 004, eq. 6)**, :func:`dsc_per_image`: ``DSC = -L_DSC`` of eq. 5 with ``eps = 0``, one ratio
over every element of the one-hot masks of one image (all classes, background included). It is computed on the
binarised (arg-max one-hot) prediction, not the softmax: the paper "evaluated the segmentation tasks using the DSC",
the score of the predicted masks. One value per test image, as paper 004's Friedman and Nemenyi tests (sec. 3.4) rank
per-image scores; :class:`SegmentationMetrics` reports its mean over all images as ``dsc_eq6``. With the background
included and binary one-hot masks, ``sum m = sum m_hat = N`` voxels and ``sum m m_hat`` counts the correctly
labelled voxels, so eq. 6 equals the pixel accuracy of the image; ``include_background=False`` gives the foreground
reading (1 for an empty mask predicted empty, the limit eq. 5's eps gives).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from common.losses.soft_dice import soft_dice_score
from monai.metrics import (
    CumulativeIterationMetric,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)

__all__ = ["SEGMENTATION_KEYS", "SegmentationMetrics", "dsc_per_image", "segmentation_metrics"]

SEGMENTATION_KEYS = ("dice", "sensitivity", "hd95", "miou")
"""The four headline metrics of CDA-GAN Table 3, always present in :meth:`SegmentationMetrics.aggregate`."""


def dsc_per_image(y_pred: torch.Tensor, y: torch.Tensor, include_background: bool = True) -> torch.Tensor:
    """Vu et al. eq. 6, ``DSC = (2 sum m m_hat) / (sum m + sum m_hat)``, of each image (eq. 5's score, ``eps = 0``).

    Args:
        y_pred: binary one-hot prediction ``(B, K, *spatial)`` (e.g. MONAI's ``AsDiscrete(argmax=True, to_onehot=K)``
            of the logits).
        y: ground truth, one-hot ``(B, K, *spatial)`` or class indices ``(B, 1, *spatial)``.
        include_background: whether channel 0 is summed (eq. 6: yes; then the DSC is the pixel accuracy).

    Returns:
        ``(B,)`` scores in ``[0, 1]``; 1 where mask and prediction are both empty (``include_background=False``).
    """
    return soft_dice_score(y_pred.float(), y, epsilon=0.0, include_background=include_background, per_image=True)


def _nanmean(values: torch.Tensor) -> float:
    values = values[~torch.isnan(values)]
    return float(values.mean()) if values.numel() else float("nan")


class SegmentationMetrics(CumulativeIterationMetric):
    """Accumulates Dice, sensitivity, HD95 and IoU over batches of one-hot masks (CDA-GAN eq. 15-20).

    A MONAI cumulative metric: each call computes the per-image values of the batch with MONAI's
    :func:`~monai.metrics.compute_dice`, :func:`~monai.metrics.compute_confusion_matrix_metric`,
    :func:`~monai.metrics.compute_hausdorff_distance` and :func:`~monai.metrics.compute_iou` and adds them to the
    buffers (gathered across ranks in a distributed run by :meth:`get_buffer`); :meth:`aggregate` reduces them, and
    MONAI's :class:`~monai.handlers.IgniteMetricHandler` can drive it (see
    :class:`common.handlers.SegmentationMetricsHandler`).

    Args:
        class_names: names of the foreground classes, one per channel after the background (default ``class1``...);
            with more than one, per-class keys ``<metric>_<name>`` are reported beside the class means.
        include_background: whether channel 0 counts as a class (default ``False``: the tumour-vs-background task).
        percentile: percentile of the Hausdorff distance (95 for HD95).
        spacing: voxel spacing for HD95 (``None``: voxel units).

    Call the object with ``(y_pred, y)``, both binary one-hot ``(B, C, *spatial)`` (e.g. after MONAI's
    ``AsDiscrete(argmax=True, to_onehot=C)`` and ``AsDiscrete(to_onehot=C)``), then :meth:`aggregate`.
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        include_background: bool = False,
        percentile: float = 95.0,
        spacing: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.class_names = list(class_names) if class_names else None
        self.include_background = include_background
        self.percentile = percentile
        self.spacing = spacing

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> Any:
        """Add a batch.

        Args:
            y_pred: binary one-hot prediction ``(B, C, *spatial)`` (or a list of ``(C, *spatial)``).
            y: binary one-hot ground truth, same shape.

        Returns:
            the batch's per-image values, ``[dice, sensitivity, hd95, iou, empty_fp]`` each ``(B, C')``, the
            ``(B, C', 3)`` TP/FP/FN counts (``C'`` scored classes) and eq. 6's DSC ``(B, 1)`` (all ``C`` channels).
        """
        if not isinstance(y_pred, (torch.Tensor, list, tuple)):
            y_pred = torch.as_tensor(y_pred)
        if not isinstance(y, (torch.Tensor, list, tuple)):
            y = torch.as_tensor(y)
        return super().__call__(y_pred, y, **kwargs)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> list[torch.Tensor]:
        """Per-image values of one batch ``(B, C, *spatial)``, see :meth:`__call__`."""
        if y is None:
            raise ValueError("SegmentationMetrics needs the ground truth.")
        y_pred = y_pred.float()
        y = y.float()
        if y_pred.shape != y.shape:
            raise ValueError(f"prediction {tuple(y_pred.shape)} and ground truth {tuple(y.shape)} differ in shape.")
        background = self.include_background
        dice = compute_dice(y_pred, y, include_background=background, ignore_empty=True)
        confusion = get_confusion_matrix(y_pred, y, include_background=background)
        sensitivity = compute_confusion_matrix_metric("sensitivity", confusion)
        iou = compute_iou(y_pred, y, include_background=background, ignore_empty=True)
        start = 0 if background else 1
        p, g = y_pred[:, start:].bool(), y[:, start:].bool()
        dims = tuple(range(2, y.ndim))
        gt_any, pred_any = g.any(dim=dims), p.any(dim=dims)  # (B, C')
        with warnings.catch_warnings():  # empty masks are handled below; MONAI warns about each one
            warnings.filterwarnings("ignore", message=".* is all 0")
            hd = compute_hausdorff_distance(
                y_pred, y, include_background=background, percentile=self.percentile, spacing=self.spacing
            )
        hd = torch.as_tensor(hd).float().cpu().reshape(gt_any.shape)
        spacing = (
            torch.ones(len(dims)) if self.spacing is None else torch.as_tensor(self.spacing).float().expand(len(dims))
        )
        diagonal = float(torch.linalg.vector_norm(torch.tensor(y.shape[2:]).float() * spacing))
        hd = torch.where((gt_any & ~pred_any).cpu(), torch.full_like(hd, diagonal), hd)
        hd = torch.where((~gt_any).cpu(), torch.full_like(hd, float("nan")), hd)
        counts = torch.stack([(p & g).sum(dim=dims), (p & ~g).sum(dim=dims), (~p & g).sum(dim=dims)], dim=-1)
        empty_fp = torch.where(gt_any, float("nan"), pred_any.float())
        return [
            dice.float().cpu(),
            sensitivity.float().cpu(),
            hd,
            iou.float().cpu(),
            empty_fp.cpu(),
            counts.double().cpu(),
            dsc_per_image(y_pred, y).unsqueeze(1).cpu(),
        ]

    def _names(self, num: int) -> list[str]:
        if self.class_names is not None:
            names = self.class_names if not self.include_background else ["background", *self.class_names]
            if len(names) != num:
                raise ValueError(f"{num} classes scored but class_names gives {len(names)} names: {names}.")
            return names
        return [f"class{i + (0 if self.include_background else 1)}" for i in range(num)]

    def per_image_dsc(self) -> torch.Tensor:
        """Vu et al. eq. 6 (all channels, :func:`dsc_per_image`) of every image added since the last :meth:`reset`,
        in the order they were added: ``(N,)`` (the blocks of paper 004's per-image Friedman/Nemenyi tests).

        Raises:
            RuntimeError: when no batch was added.
        """
        buffers = self.get_buffer()
        if buffers is None:
            raise RuntimeError("no batch was added: the evaluation set is empty.")
        return buffers[-1].reshape(-1)

    def per_image_metrics(self) -> dict[str, torch.Tensor]:
        """Dice, sensitivity, HD95 and IoU of every image added since the last :meth:`reset`, in the order they were
        added, under the names :meth:`aggregate` reports them: ``dice``, ``sensitivity``, ``hd95``, ``miou`` with one
        scored class (the binary task), ``<metric>_<class>`` for each class with several.

        NaN where the image's ground truth is empty for the class (the images :meth:`aggregate`'s means leave out),
        so the mean over the finite values of each entry is the :meth:`aggregate` value of the same name. With
        several classes no per-image class mean is given: :meth:`aggregate`'s class means average over the images
        first, which is not a mean of per-image values where classes are absent from different images.

        Returns:
            ``{name: (N,) float}``.

        Raises:
            RuntimeError: when no batch was added.
        """
        buffers = self.get_buffer()
        if buffers is None:
            raise RuntimeError("no batch was added: the evaluation set is empty.")
        per_image = dict(zip(SEGMENTATION_KEYS, buffers[:4]))  # each (N, C') with NaN where undefined
        names = self._names(per_image["dice"].shape[1])
        if len(names) == 1:
            return {key: values[:, 0].float() for key, values in per_image.items()}
        return {
            f"{key}_{name}": values[:, c].float() for key, values in per_image.items() for c, name in enumerate(names)
        }

    def aggregate(self) -> dict[str, Any]:  # type: ignore[override]
        """The metrics of every batch added since the last :meth:`reset`.

        Returns:
            ``dice``, ``sensitivity``, ``hd95``, ``miou`` (means over images with a non-empty ground truth, then over
            classes), ``dice_global`` (eq. 16 on the summed counts), ``empty_false_positive_rate``,
            ``num_images``, ``num_scored`` (images with foreground in the ground truth), ``dsc_eq6`` (Vu et al. eq. 6
            on all channels, mean over all images, :func:`dsc_per_image`), and ``<metric>_<class>``
            for every class when there are several. NaN where no image could be scored.

        Raises:
            RuntimeError: when no batch was added.
        """
        buffers = self.get_buffer()
        if buffers is None:
            raise RuntimeError("no batch was added: the evaluation set is empty.")
        dice, sensitivity, hd, iou, empty_fp, counts, dsc = buffers
        per_image = {"dice": dice, "sensitivity": sensitivity, "hd95": hd, "miou": iou}
        tp, fp, fn = counts.sum(0).unbind(-1)
        global_dice = torch.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), torch.nan)
        per_class = {k: [_nanmean(v[:, c]) for c in range(v.shape[1])] for k, v in per_image.items()}
        per_class["dice_global"] = [float(d) for d in global_dice]
        per_class["empty_false_positive_rate"] = [_nanmean(empty_fp[:, c]) for c in range(empty_fp.shape[1])]
        results: dict[str, Any] = {k: _nanmean(torch.tensor(v)) for k, v in per_class.items()}
        results["dsc_eq6"] = float(dsc.mean())
        results["num_images"] = int(empty_fp.shape[0])
        # empty_fp is NaN where the ground truth has foreground
        results["num_scored"] = int(torch.isnan(empty_fp).any(dim=1).sum())
        names = self._names(len(per_class["dice"]))
        if len(names) > 1:
            for key, values in per_class.items():
                for name, value in zip(names, values):
                    results[f"{key}_{name}"] = value
        return results


def segmentation_metrics(y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
    """Eq. 15-20 of one batch of binary one-hot masks ``(B, C, *spatial)``.

    ``kwargs`` go to :class:`SegmentationMetrics`; returns :meth:`SegmentationMetrics.aggregate`.
    """
    metrics = SegmentationMetrics(**kwargs)
    metrics(y_pred, y)
    return metrics.aggregate()
