"""Segmentation metrics of CDA-GAN (Xu et al. 2023, sec. 4.2, eq. 15-20): Dice, sensitivity, HD95 and mIoU.

Built on MONAI's :class:`~monai.metrics.DiceMetric`, :class:`~monai.metrics.ConfusionMatrixMetric`,
:class:`~monai.metrics.HausdorffDistanceMetric` (``percentile=95``) and :class:`~monai.metrics.MeanIoU`, applied to
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
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.metrics import ConfusionMatrixMetric, DiceMetric, HausdorffDistanceMetric, MeanIoU

from common.handlers.utils import atomic_write_json, is_rank0
from common.metrics.evaluation import format_table

__all__ = ["SEGMENTATION_KEYS", "SegmentationMetrics", "SegmentationMetricsHandler", "segmentation_metrics"]

logger = logging.getLogger("common.metrics")

SEGMENTATION_KEYS = ("dice", "sensitivity", "hd95", "miou")
"""The four headline metrics of CDA-GAN Table 3, always present in :meth:`SegmentationMetrics.aggregate`."""


def _nanmean(values: torch.Tensor) -> float:
    values = values[~torch.isnan(values)]
    return float(values.mean()) if values.numel() else float("nan")


class SegmentationMetrics:
    """Accumulates Dice, sensitivity, HD95 and IoU over batches of one-hot masks (CDA-GAN eq. 15-20).

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
        self.class_names = list(class_names) if class_names else None
        self.include_background = include_background
        self.spacing = spacing
        self.dice = DiceMetric(include_background=include_background, reduction="none", ignore_empty=True)
        self.sensitivity = ConfusionMatrixMetric(
            include_background=include_background, metric_name="sensitivity", compute_sample=True, reduction="none"
        )
        self.hd = HausdorffDistanceMetric(
            include_background=include_background, percentile=percentile, reduction="none"
        )
        self.iou = MeanIoU(include_background=include_background, reduction="none", ignore_empty=True)
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated batch."""
        for metric in (self.dice, self.sensitivity, self.hd, self.iou):
            metric.reset()
        self._hd: list[torch.Tensor] = []
        self._tp_fp_fn: torch.Tensor | None = None
        self._empty_fp: list[torch.Tensor] = []

    def __call__(self, y_pred: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch.

        Args:
            y_pred: binary one-hot prediction ``(B, C, *spatial)``.
            y: binary one-hot ground truth, same shape.
        """
        y_pred = torch.as_tensor(y_pred).float()
        y = torch.as_tensor(y).float()
        if y_pred.shape != y.shape:
            raise ValueError(f"prediction {tuple(y_pred.shape)} and ground truth {tuple(y.shape)} differ in shape.")
        self.dice(y_pred, y)
        self.sensitivity(y_pred, y)
        self.iou(y_pred, y)
        start = 0 if self.include_background else 1
        p, g = y_pred[:, start:].bool(), y[:, start:].bool()
        dims = tuple(range(2, y.ndim))
        gt_any, pred_any = g.any(dim=dims), p.any(dim=dims)  # (B, C')
        with warnings.catch_warnings():  # empty masks are handled below; MONAI warns about each one
            warnings.filterwarnings("ignore", message=".* is all 0")
            hd = torch.as_tensor(self.hd(y_pred, y, spacing=self.spacing)).float().cpu().reshape(gt_any.shape)
        spacing = (
            torch.ones(len(dims)) if self.spacing is None else torch.as_tensor(self.spacing).float().expand(len(dims))
        )
        diagonal = float(torch.linalg.vector_norm(torch.tensor(y.shape[2:]).float() * spacing))
        hd = torch.where((gt_any & ~pred_any).cpu(), torch.full_like(hd, diagonal), hd)
        hd = torch.where((~gt_any).cpu(), torch.full_like(hd, float("nan")), hd)
        self._hd.append(hd)
        counts = (
            torch.stack([(p & g).sum(dim=dims), (p & ~g).sum(dim=dims), (~p & g).sum(dim=dims)], dim=-1)
            .sum(0)
            .double()
            .cpu()
        )  # (C', 3)
        self._tp_fp_fn = counts if self._tp_fp_fn is None else self._tp_fp_fn + counts
        self._empty_fp.append(torch.where(gt_any, float("nan"), pred_any.float()).cpu())

    def _names(self, num: int) -> list[str]:
        if self.class_names is not None:
            names = self.class_names if not self.include_background else ["background", *self.class_names]
            if len(names) != num:
                raise ValueError(f"{num} classes scored but class_names gives {len(names)} names: {names}.")
            return names
        return [f"class{i + (0 if self.include_background else 1)}" for i in range(num)]

    def aggregate(self) -> dict[str, Any]:
        """The metrics of every batch added since the last :meth:`reset`.

        Returns:
            ``dice``, ``sensitivity``, ``hd95``, ``miou`` (means over images with a non-empty ground truth, then over
            classes), ``dice_global`` (eq. 16 on the summed counts), ``empty_false_positive_rate``,
            ``num_images``, ``num_scored`` (images with foreground in the ground truth), and ``<metric>_<class>``
            for every class when there are several. NaN where no image could be scored.
        """
        if self._tp_fp_fn is None:
            raise RuntimeError("no batch was added: the evaluation set is empty.")
        per_image = {
            "dice": torch.as_tensor(self.dice.aggregate()).float().cpu(),
            "sensitivity": torch.as_tensor(self.sensitivity.aggregate()[0]).float().cpu(),
            "hd95": torch.cat(self._hd),
            "miou": torch.as_tensor(self.iou.aggregate()).float().cpu(),
        }
        empty_fp = torch.cat(self._empty_fp)
        tp, fp, fn = self._tp_fp_fn.unbind(-1)
        global_dice = torch.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), torch.nan)
        per_class = {k: [_nanmean(v[:, c]) for c in range(v.shape[1])] for k, v in per_image.items()}
        per_class["dice_global"] = [float(d) for d in global_dice]
        per_class["empty_false_positive_rate"] = [_nanmean(empty_fp[:, c]) for c in range(empty_fp.shape[1])]
        results: dict[str, Any] = {k: _nanmean(torch.tensor(v)) for k, v in per_class.items()}
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


class SegmentationMetricsHandler:
    """Ignite handler: scores an evaluator's predictions with :class:`SegmentationMetrics`, writes a JSON file.

    At every iteration it reads ``pred`` and ``label`` from the (decollated) engine output, which must hold binary
    one-hot masks; when the run completes it writes ``{dice, sensitivity, hd95, miou, ...}`` plus ``extra`` to
    ``output_file`` atomically (rank 0), prints a table, and stores the results in ``engine.state.metrics``.

    Args:
        output_file: the JSON file (e.g. the bundle's ``eval/metrics.json``).
        metrics: the accumulator (default: binary tumour-vs-background).
        extra: descriptive entries added to the file (bundle, variant, split...).
        output_transform: maps the engine output to ``(y_pred, y)`` batches; default stacks ``pred``/``label``.
    """

    def __init__(
        self,
        output_file: str,
        metrics: SegmentationMetrics | None = None,
        extra: Mapping[str, Any] | None = None,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.output_file = output_file
        self.metrics = metrics if metrics is not None else SegmentationMetrics()
        self.extra = dict(extra or {})
        self.output_transform = output_transform or self._pred_label
        self.results: dict[str, Any] = {}

    @staticmethod
    def _pred_label(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        items = output if isinstance(output, (list, tuple)) else [output]
        return torch.stack([torch.as_tensor(o["pred"]) for o in items]), torch.stack(
            [torch.as_tensor(o["label"]) for o in items]
        )

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.metrics.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _update(self, engine: Any) -> None:
        y_pred, y = self.output_transform(engine.state.output)
        self.metrics(y_pred.detach().cpu(), y.detach().cpu())

    def _complete(self, engine: Any) -> None:
        results = self.metrics.aggregate()
        clash = set(results) & set(self.extra)
        if clash:
            raise ValueError(f"extra entries {sorted(clash)} would overwrite metrics.")
        self.results = {**results, **self.extra}
        engine.state.metrics.update({k: v for k, v in results.items() if isinstance(v, float)})
        if is_rank0():
            atomic_write_json(
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.results.items()},
                self.output_file,
            )
            print(format_table(self.results), flush=True)
            logger.info(f"wrote segmentation metrics to {self.output_file}")
