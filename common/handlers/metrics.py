"""Ignite handlers that score an evaluator's predictions with a cumulative metric and report the numbers.

The metric is driven by MONAI's :class:`~monai.handlers.IgniteMetricHandler` (reset when an epoch starts, one
update per iteration, ``aggregate()`` when the epoch completes); :class:`MetricsReport` then writes the flat JSON file
the bundles, tests and the experiment runner read, and logs the same numbers as a table. MONAI's
:class:`~monai.handlers.MetricsSaver` is not used for the file: it writes one CSV line per scalar metric, whereas the
report is one JSON object with the descriptive ``extra`` entries (bundle, variant, split...) and ``null`` for NaN
(listed under ``non_finite``).

- :class:`MetricsHandler`: any cumulative metric whose ``aggregate()`` returns a dict of numbers;
- :class:`ClassificationMetricsHandler`: :class:`~common.metrics.ClassificationMetrics` (CDA-GAN eq. 11-14), and
  optionally each test image's class-1 probability, label and predicted class with the image ids
  (``per_image.json``);
- :class:`SegmentationMetricsHandler`: :class:`~common.metrics.SegmentationMetrics` (CDA-GAN eq. 15-20), and
  optionally each test image's Dice, sensitivity, HD95, IoU and DSC of Vu et al. eq. 6 with the image ids
  (``per_image.json``).

The per-image file (:class:`PerImageMetricsHandler`) is what :func:`common.experiments.read_per_image` reads:
``{"ids": [N ids], <key>: [N values, null where undefined], ...}`` in the order the images were scored. The
experiment grids take from it the bootstrap intervals over the test patients of the table metrics
(:func:`common.experiments.case_interval`) and the blocks of paper 004's Friedman and Nemenyi tests (sec. 3.4,
``blocks: test_images``).
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from common.metrics import ClassificationMetrics, SegmentationMetrics
from common.utils import atomic_write_json, is_rank0
from common.utils.tables import format_table
from ignite.engine import Engine, Events
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric
from torch.utils.data import DistributedSampler, RandomSampler

__all__ = [
    "ClassificationMetricsHandler",
    "MetricsHandler",
    "MetricsReport",
    "PerImageMetricsHandler",
    "SegmentationMetricsHandler",
    "stack_pred_label",
]

logger = logging.getLogger(__name__)


def stack_pred_label(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``pred`` and ``label`` entries of a (decollated) engine output, stacked into batches on the CPU.

    Args:
        output: ``engine.state.output``: a dict or a list of per-sample dicts with ``pred`` and ``label``.

    Returns:
        ``(y_pred, y)``, each ``(B, *shape of one sample)``.
    """
    items = output if isinstance(output, (list, tuple)) else [output]
    return (
        torch.stack([torch.as_tensor(o["pred"]).detach().cpu() for o in items]),
        torch.stack([torch.as_tensor(o["label"]).detach().cpu() for o in items]),
    )


def _stack_flat_pred_label(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stack_pred_label` with flattened samples: ``(B, C)`` probabilities, ``(B, 1)`` or ``(B, C)`` labels."""
    items = output if isinstance(output, (list, tuple)) else [output]
    return stack_pred_label([{k: torch.as_tensor(o[k]).reshape(-1) for k in ("pred", "label")} for o in items])


class MetricsReport:
    """Writes a dict of metrics plus descriptive entries as one flat JSON file and logs it as a table.

    The file is written atomically by rank 0 only, with NaN written as ``null``; the float values also go to
    ``engine.state.metrics`` when an engine is given.

    Args:
        output_file: the JSON file (e.g. the bundle's ``@output_dir/metrics.json``).
        extra: descriptive entries added to the file (bundle, variant, split...); they may not reuse a metric's name.
        title: what is reported, the first words of the log message (e.g. ``"classification metrics"``).
    """

    def __init__(
        self, output_file: str | os.PathLike, extra: Mapping[str, Any] | None = None, title: str = "metrics"
    ) -> None:
        self.output_file = output_file
        self.extra = dict(extra or {})
        self.title = title
        self.results: dict[str, Any] = {}

    def write(self, results: Mapping[str, Any], engine: Engine | None = None) -> dict[str, Any]:
        """Write ``results`` plus ``extra`` to the JSON file and log them as a table.

        Args:
            results: metric name to value.
            engine: when given, its ``state.metrics`` receives the float values.

        Returns:
            ``results`` followed by the ``extra`` entries, as written.

        Raises:
            ValueError: when an ``extra`` entry has the name of a metric.
        """
        clash = set(results) & set(self.extra)
        if clash:
            raise ValueError(f"extra entries {sorted(clash)} would overwrite metrics.")
        self.results = {**results, **self.extra}
        if engine is not None:
            engine.state.metrics.update({k: v for k, v in results.items() if isinstance(v, float)})
        if is_rank0():
            atomic_write_json(self.results, self.output_file)  # NaN as null, listed under non_finite
            logger.info("%s (%s):\n%s", self.title, os.fspath(self.output_file), format_table(self.results))
        return self.results


class MetricsHandler(IgniteMetricHandler):
    """MONAI's :class:`~monai.handlers.IgniteMetricHandler` for a cumulative metric with a dict result, reported by
    :class:`MetricsReport` when the epoch completes.

    Attach it as a handler (``handler.attach(engine)``, e.g. in a MONAI evaluator's ``val_handlers``): the metric is
    reset when the epoch starts, updated at every iteration from ``output_transform(engine.state.output)`` and
    aggregated when the epoch completes; the aggregate is then written, logged and its floats put in
    ``engine.state.metrics``. An evaluator runs one epoch, so this is once per run.

    Args:
        metric: a MONAI cumulative metric, called with ``(y_pred, y)``, whose ``aggregate()`` returns a dict.
        output_file: the JSON file.
        extra: descriptive entries added to the file.
        output_transform: maps the engine output to ``(y_pred, y)`` batches; default :func:`stack_pred_label`.
        title: the first words of the log message.
    """

    def __init__(
        self,
        metric: CumulativeIterationMetric,
        output_file: str | os.PathLike,
        extra: Mapping[str, Any] | None = None,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        title: str = "metrics",
    ) -> None:
        super().__init__(metric_fn=metric, output_transform=output_transform or stack_pred_label, save_details=False)
        self.report = MetricsReport(output_file, extra, title)

    @property
    def metrics(self) -> CumulativeIterationMetric:
        """The cumulative metric."""
        return self.metric_fn

    @property
    def results(self) -> dict[str, Any]:
        """The last written results (metrics and ``extra``)."""
        return self.report.results

    def attach(self, engine: Engine, name: str = "metrics") -> None:  # type: ignore[override]
        """Attach to ``engine``; ``name`` only identifies the handler (the results go to ``engine.state.metrics``
        under their own keys)."""
        super().attach(engine, name)

    def completed(self, engine: Engine, name: str) -> None:
        """Aggregate the metric, write and log the report."""
        self.report.write(self.compute(), engine)

    def write(self, results: Mapping[str, Any], engine: Engine | None = None) -> dict[str, Any]:
        """Report ``results`` computed elsewhere (e.g. by the SVM baseline) like the metric's own."""
        return self.report.write(results, engine)


class PerImageMetricsHandler(MetricsHandler):
    """A :class:`MetricsHandler` that also writes the per-image values of its metric, with the image ids, to a second
    JSON file when the epoch completes (rank 0, atomically): ``{"ids": [N ids], <key>: [N values], ...}``, NaN as
    ``null``. Subclasses say which values (:meth:`per_image_values`).

    The ids name the images in the order they were scored, e.g. the files of the test datalist, which the
    evaluator's loader must then read in order: with ids, a loader that shuffles (``RandomSampler``) or splits the
    set across ranks (``DistributedSampler``) is refused when the epoch starts, and the number of ids must be the
    number of images scored. Without ids the images are named by their indices ``"0"``, ``"1"``...

    Args:
        metric, output_file, extra, output_transform, title: as :class:`MetricsHandler`.
        per_image_file: the JSON file of the per-image values (``None``: not written).
        image_ids: the ids of the images in scoring order.
    """

    def __init__(
        self,
        metric: CumulativeIterationMetric,
        output_file: str | os.PathLike,
        extra: Mapping[str, Any] | None = None,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        title: str = "metrics",
        per_image_file: str | os.PathLike | None = None,
        image_ids: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(metric, output_file, extra, output_transform, title)
        self.per_image_file = per_image_file
        self.image_ids = None if image_ids is None else [str(i) for i in image_ids]
        if self.image_ids is not None and len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError("image_ids has duplicates.")

    @abstractmethod
    def per_image_values(self) -> dict[str, list]:
        """The per-image values of the images scored since the last reset, ``{key: [N values]}`` (no ``ids``)."""

    def per_image(self) -> dict[str, list]:
        """The per-image values with the image ids: ``{"ids": [N ids], <key>: [N values], ...}``.

        Raises:
            ValueError: when ``image_ids`` does not name every scored image exactly once.
        """
        values = self.per_image_values()
        n = len(next(iter(values.values())))
        ids = self.image_ids if self.image_ids is not None else [str(i) for i in range(n)]
        if len(ids) != n:
            raise ValueError(
                f"{n} images were scored but image_ids names {len(ids)}: the ids must list the evaluated images in "
                "the loader's order (an unshuffled loader over the same datalist section)."
            )
        return {"ids": list(ids), **values}

    def attach(self, engine: Engine, name: str = "metrics") -> None:  # type: ignore[override]
        """Attach to ``engine``; with ``image_ids``, the engine's loader is checked to keep the datalist order."""
        super().attach(engine, name)
        if self.per_image_file is not None and self.image_ids is not None:
            engine.add_event_handler(Events.EPOCH_STARTED, self._check_order)

    def _check_order(self, engine: Engine) -> None:
        sampler = getattr(engine.state.dataloader, "sampler", None)
        distributed = isinstance(sampler, DistributedSampler) and sampler.num_replicas > 1
        if isinstance(sampler, RandomSampler) or distributed:
            raise ValueError(
                f"the evaluator's loader reads the images in a different order ({type(sampler).__name__}) than "
                f"image_ids, which name the per-image values of {os.fspath(self.per_image_file)}: use an "
                "unshuffled single-process loader (shuffle: false)."
            )

    def completed(self, engine: Engine, name: str) -> None:
        """Aggregate the metric, write and log the report, and write the per-image file when one is named."""
        super().completed(engine, name)
        if self.per_image_file is not None and is_rank0():
            atomic_write_json(self.per_image(), self.per_image_file)


class ClassificationMetricsHandler(PerImageMetricsHandler):
    """Scores an evaluator's class probabilities with :class:`~common.metrics.ClassificationMetrics` (CDA-GAN eq.
    11-14) and writes ``{acc, auc, recall, specificity, precision, f1, num_samples}`` plus ``extra`` to a JSON file.

    At every iteration it reads ``pred`` (class probabilities ``(C,)``) and ``label`` (class index or one-hot) from
    the (decollated) engine output.

    With ``per_image_file``, the buffered per-image values are written too (:class:`PerImageMetricsHandler`):

    - binary task: ``{"ids", "score": [probability of class 1], "label": [0/1], "pred": [arg-max class]}``. The
      experiment tables' bootstrap intervals (:func:`common.experiments.case_interval`) compute ``auc`` from
      ``score`` and ``label`` and ``acc``, ``recall``, ``specificity``, ``precision``, ``f1`` from ``pred`` and
      ``label``; on the whole test set these equal this report's values;
    - ``C > 2``: ``{"ids", "label": [class index], "probability_<class>": [...] for each class}`` (``<class>``: the
      class name, else its index). The tables give no interval from them (their case intervals read binary
      ``score``/``label`` only); the file keeps the predictions with their ids for other analyses.

    Args:
        output_file: the JSON file (e.g. the bundle's ``@output_dir/metrics.json``).
        num_classes: number of classes.
        extra: descriptive entries added to the file (bundle, variant, split...).
        class_names: optional class names for per-class keys (``C > 2``).
        output_transform: maps the engine output to ``(y_prob, y)`` batches; default stacks ``pred``/``label``.
        per_image_file: the JSON file of the per-image values (``None``: not written).
        image_ids: the ids of the images in scoring order (e.g. the first image file of each test datalist entry);
            their number must equal the images scored.
    """

    def __init__(
        self,
        output_file: str | os.PathLike,
        num_classes: int = 2,
        extra: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        per_image_file: str | os.PathLike | None = None,
        image_ids: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(
            ClassificationMetrics(num_classes, class_names),
            output_file,
            extra,
            output_transform or _stack_flat_pred_label,
            title="classification metrics",
            per_image_file=per_image_file,
            image_ids=image_ids,
        )

    def per_image_values(self) -> dict[str, list]:
        """The buffered probabilities and labels of the images scored since the last reset, see the class docstring.

        Raises:
            RuntimeError: when no batch was added.
        """
        buffers = self.metric_fn.get_buffer()
        if buffers is None:
            raise RuntimeError("no batch was added: the evaluation set is empty.")
        y_prob, labels = buffers  # (N, C) float64, (N,) int64
        if y_prob.shape[1] == 2:
            return {"score": y_prob[:, 1].tolist(), "label": labels.tolist(), "pred": y_prob.argmax(dim=1).tolist()}
        names = self.metric_fn.class_names or [str(k) for k in range(y_prob.shape[1])]
        if len(names) != y_prob.shape[1]:
            raise ValueError(f"{y_prob.shape[1]} classes scored but class_names gives {len(names)} names: {names}.")
        return {"label": labels.tolist(), **{f"probability_{n}": y_prob[:, k].tolist() for k, n in enumerate(names)}}


class SegmentationMetricsHandler(PerImageMetricsHandler):
    """Scores an evaluator's masks with :class:`~common.metrics.SegmentationMetrics` (CDA-GAN eq. 15-20) and writes
    ``{dice, sensitivity, hd95, miou, ...}`` plus ``extra`` to a JSON file.

    At every iteration it reads ``pred`` and ``label`` from the (decollated) engine output, which must hold binary
    one-hot masks ``(C, *spatial)``.

    With ``per_image_file``, the per-image values are written too (:class:`PerImageMetricsHandler`), as
    ``{"ids": [N ids], "dice", "sensitivity", "hd95", "miou", "dsc_eq6": [N values]}`` in the order the images were
    scored (``image_ids``, e.g. the label files of an unshuffled test loader, else the indices ``"0"``, ``"1"``...):
    Dice, sensitivity, HD95 and IoU of each image (:meth:`~common.metrics.SegmentationMetrics.per_image_metrics`;
    ``null`` for an empty ground truth, which the report's means leave out, so the mean of the non-null values is
    the report's value; with several foreground classes ``<metric>_<class>`` per class instead, the report's
    per-class keys) and eq. 6 on all channels (:func:`common.metrics.dsc_per_image`, whose mean is the report's
    ``dsc_eq6``).

    Args:
        output_file: the JSON file (e.g. the bundle's ``eval/metrics.json``).
        metrics: the accumulator (default: binary tumour-vs-background).
        extra: descriptive entries added to the file (bundle, variant, split...).
        output_transform: maps the engine output to ``(y_pred, y)`` batches; default stacks ``pred``/``label``.
        per_image_file: the JSON file of the per-image values (``None``: not written).
        image_ids: the ids of the images in scoring order; their number must equal the images scored.
    """

    def __init__(
        self,
        output_file: str | os.PathLike,
        metrics: SegmentationMetrics | None = None,
        extra: Mapping[str, Any] | None = None,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        per_image_file: str | os.PathLike | None = None,
        image_ids: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(
            metrics if metrics is not None else SegmentationMetrics(),
            output_file,
            extra,
            output_transform,
            title="segmentation metrics",
            per_image_file=per_image_file,
            image_ids=image_ids,
        )

    def per_image_values(self) -> dict[str, list]:
        """``{"dice", "sensitivity", "hd95", "miou", "dsc_eq6": [N floats, NaN where undefined]}`` of the images
        scored since the last reset, see the class docstring.

        Raises:
            RuntimeError: when no batch was added.
        """
        values = {k: v.tolist() for k, v in self.metric_fn.per_image_metrics().items()}
        return {**values, "dsc_eq6": [float(v) for v in self.metric_fn.per_image_dsc()]}
