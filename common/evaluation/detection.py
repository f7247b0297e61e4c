"""Evaluation of a detector's predictions datalist against the ground truth (Han's thesis: CPM and FROC, sec. 6.2.2 /
Table 5; sensitivity and false positives per image, sec. 5.2.3 / Table 4; COCO mAP/mAR).

The matching rules and the metrics are the pure functions of :mod:`common.metrics.detection`; this module pairs the
datalists, writes ``metrics.json`` and the FROC plot, and reports the table.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.evaluation.report import write_report
from common.metrics.detection import (
    CPM_FP_RATES,
    coco_metrics,
    cpm,
    cpm_bootstrap,
    cpm_by_attribute,
    froc_matches,
    sensitivity_fp_per_image,
)
from common.utils import atomic_path, atomic_write_json

__all__ = ["DetectionEvaluation", "MATCHES_FILE"]

MATCHES_FILE = "froc_matches.json"
"""Per-image matched detections that :class:`DetectionEvaluation` writes beside ``metrics.json``."""

logger = logging.getLogger(__name__)


def _nanfmt(v: float) -> str:
    return "  n/a" if v is None or not np.isfinite(v) else f"{100 * v:5.1f}"


class DetectionEvaluation:
    """Evaluate a predictions datalist against the ground truth and write ``metrics.json`` and a FROC plot.

    ``metrics.json`` is flat: ``cpm``, ``sens@<rate>`` for the seven rates, the bootstrap 95 % intervals
    ``cpm_ci_low``/``cpm_ci_high`` and ``sens@<rate>_ci_low``/``_ci_high`` (LUNA16: scans drawn with replacement,
    :func:`~common.metrics.detection.cpm_bootstrap`), ``cpm_<attribute>_<value>`` for each attribute (Table 5),
    ``sensitivity_iou<t>`` / ``fp_per_image_iou<t>`` for each ``iou_thresholds`` entry (Table 4), ``map``/``mar``
    (COCO), and the counts. ``froc_matches.json`` (:data:`MATCHES_FILE`) holds each image's matched detections at
    the CPM's IoU (:func:`~common.metrics.detection.froc_matches`, with the image's ``patient`` where the
    datalist names one and each box's ``attributes``): the per-case values from which a grid report draws its
    bootstrap interval of the seeds' mean CPM (:func:`~common.metrics.bootstrap.bootstrap_cpm_ci`).

    Args:
        datalist: ground-truth datalist JSON (boxes in ``box``, attributes per box).
        section: the evaluated section.
        predictions: predictions JSON written by :class:`~common.networks.detection.DetectionPredictor`.
        output_dir: folder of ``metrics.json`` and ``froc.png``.
        iou_threshold: IoU of the CPM (0.25 in the thesis).
        fp_rates: FP rates of the CPM.
        attributes: per-box attributes for CPM by attribute (``["size", "attenuation"]``).
        iou_thresholds: IoU thresholds of the per-image sensitivity/FPs (Table 4: 0.5 and 0.25).
        score_threshold: detection threshold of the per-image sensitivity/FPs.
        duplicates: ``"ignore"`` or ``"fp"`` (see the module docstring).
        per_image_name: word used in the logged table ("scan" or "slice").
        attribute_values: optional ``{attribute: [values]}`` reported even when absent (NaN, written as null).
        extra: extra entries copied into ``metrics.json``.
        cpm_mode: how sensitivities are read from the FROC: ``"luna16"`` (interpolated, the default) or ``"step"``
            (see :mod:`common.metrics.detection`).
        n_bootstrap: bootstrap samples of the confidence intervals (LUNA16: 1000); 0: no intervals.
        confidence: coverage of the intervals.
        bootstrap_seed: seed of the bootstrap draws.
    """

    def __init__(
        self,
        datalist: str | os.PathLike,
        section: str,
        predictions: str | os.PathLike,
        output_dir: str | os.PathLike,
        iou_threshold: float = 0.25,
        fp_rates: Sequence[float] = CPM_FP_RATES,
        attributes: Sequence[str] = (),
        iou_thresholds: Sequence[float] = (),
        score_threshold: float = 0.5,
        duplicates: str = "ignore",
        per_image_name: str = "scan",
        attribute_values: Mapping[str, Sequence[str]] | None = None,
        extra: Mapping[str, Any] | None = None,
        cpm_mode: str = "luna16",
        n_bootstrap: int = 1000,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ) -> None:
        self.attribute_values = {k: list(v) for k, v in (attribute_values or {}).items()}
        self.datalist = Path(datalist)
        self.section = section
        self.predictions = Path(predictions)
        self.output_dir = Path(output_dir)
        self.iou_threshold = float(iou_threshold)
        self.fp_rates = tuple(float(r) for r in fp_rates)
        self.attributes = tuple(attributes)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.score_threshold = float(score_threshold)
        self.duplicates = duplicates
        self.per_image_name = per_image_name
        self.extra = dict(extra or {})
        self.cpm_mode = cpm_mode
        self.n_bootstrap = int(n_bootstrap)
        self.confidence = float(confidence)
        self.bootstrap_seed = int(bootstrap_seed)

    def load(self) -> list[dict[str, Any]]:
        """Pair ground truths and predictions by resolved image path."""
        if not self.predictions.is_file():
            raise FileNotFoundError(f"{self.predictions}: no predictions; run inference first.")
        gt = json.loads(self.datalist.read_text())
        pred = json.loads(self.predictions.read_text())
        if self.section not in gt:
            raise ValueError(f"{self.datalist}: no section {self.section!r}.")
        by_path = {}
        for entry in pred.get(self.section, []):
            by_path[str((self.predictions.parent / entry["image"]).resolve())] = entry
        images = []
        for entry in gt[self.section]:
            path = str((self.datalist.parent / entry["image"]).resolve())
            if path not in by_path:
                raise ValueError(f"{self.predictions}: no prediction for {path}.")
            p = by_path[path]
            img = {
                "image": path,
                "patient": entry.get("patient"),
                "gt_boxes": entry.get("box", []),
                "gt_labels": entry.get("box_label", [0] * len(entry.get("box", []))),
                "pred_boxes": p.get("box", []),
                "pred_scores": p.get("score", []),
                "pred_labels": p.get("box_label", [0] * len(p.get("score", []))),
            }
            for attr in self.attributes:
                img[attr] = entry.get(attr, [])
            images.append(img)
        return images

    def run(self) -> dict[str, Any]:
        """Compute, write ``metrics.json`` (non-finite values as ``null``) and ``froc.png``, log the table.

        Returns:
            the metrics (non-finite values kept as ``nan``).
        """
        images = self.load()
        result = cpm(images, self.iou_threshold, self.fp_rates, self.duplicates, mode=self.cpm_mode)
        metrics: dict[str, Any] = {"cpm": result["cpm"]}
        for rate, sens in result["sensitivities"].items():
            metrics[f"sens@{rate:g}"] = sens
        if self.n_bootstrap > 0:
            ci = cpm_bootstrap(
                images,
                self.iou_threshold,
                self.fp_rates,
                self.duplicates,
                self.cpm_mode,
                self.n_bootstrap,
                self.confidence,
                self.bootstrap_seed,
            )
            metrics["cpm_ci_low"], metrics["cpm_ci_high"] = ci["cpm_ci_low"], ci["cpm_ci_high"]
            for rate in self.fp_rates:
                metrics[f"sens@{rate:g}_ci_low"] = ci["sens_ci_low"][rate]
                metrics[f"sens@{rate:g}_ci_high"] = ci["sens_ci_high"][rate]
        for attr in self.attributes:
            for value, v in cpm_by_attribute(
                images,
                attr,
                self.iou_threshold,
                self.fp_rates,
                self.duplicates,
                self.attribute_values.get(attr),
                self.cpm_mode,
            ).items():
                metrics[f"cpm_{attr}_{value}"] = v
        for t in self.iou_thresholds:
            s = sensitivity_fp_per_image(images, t, self.score_threshold, self.duplicates)
            metrics[f"sensitivity_iou{t:g}"] = s["sensitivity"]
            metrics[f"fp_per_image_iou{t:g}"] = s["fp_per_image"]
        metrics.update({k: v for k, v in coco_metrics(images).items() if k in ("map", "mar")})
        metrics.update(
            {
                "iou_threshold": self.iou_threshold,
                "score_threshold": self.score_threshold,
                "cpm_mode": self.cpm_mode,
                "n_bootstrap": self.n_bootstrap,
                "confidence": self.confidence if self.n_bootstrap > 0 else None,
                "num_images": len(images),
                "num_gt": int(result["froc"]["num_gt"]),
                "section": self.section,
            }
        )
        metrics.update(self.extra)
        write_report(
            metrics,  # NaN (e.g. no nodule of a size) as null, listed under non_finite
            self.output_dir / "metrics.json",
            table=self.table(metrics),
            title="detection evaluation",
            log=logger,
            indent=1,
        )
        atomic_write_json(
            {
                "iou_threshold": self.iou_threshold,
                "duplicates": self.duplicates,
                "fp_rates": list(self.fp_rates),
                "cpm_mode": self.cpm_mode,
                "section": self.section,
                "images": froc_matches(images, self.iou_threshold, self.duplicates, self.attributes),
            },
            self.output_dir / MATCHES_FILE,
        )
        self.plot(result["froc"])
        return metrics

    def plot(self, froc: Mapping[str, Any]) -> str | None:
        """FROC curve (log FP axis) as ``froc.png``: the operating points joined by lines (``cpm_mode="luna16"``,
        the curve the CPM reads) or steps (``"step"``).

        matplotlib is an optional dependency (``pip install .[experiments]``), imported here only, so that
        ``import common`` does not load it; without it the plot is skipped with a warning.

        Returns:
            the path of the plot, or ``None`` when matplotlib is not installed.
        """
        try:
            import matplotlib
        except ImportError:
            logger.warning("matplotlib is not installed: no FROC plot (install it with `pip install .[experiments]`).")
            return None
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        fps = np.maximum(np.asarray(froc["fps"]), 1e-3)
        if self.cpm_mode == "step":
            ax.step(fps, froc["sensitivity"], where="post")
        else:
            ax.plot(fps, froc["sensitivity"])
        for r in self.fp_rates:
            ax.axvline(r, color="0.85", lw=0.5)
        ax.set_xscale("log")
        ax.set_xlim(min(self.fp_rates) / 2, max(self.fp_rates) * 2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"false positives per {self.per_image_name}")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"FROC (IoU >= {self.iou_threshold:g})")
        path = self.output_dir / "froc.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return str(path)

    def table(self, metrics: Mapping[str, Any]) -> str:
        """A plain-text table: CPM, sensitivity per FP rate, CPM by attribute, per-image sensitivity/FPs, COCO."""
        lines = [
            f"Detection on [{self.section}]: {metrics['num_images']} {self.per_image_name}s, "
            f"{metrics['num_gt']} lesions"
        ]
        lines.append("CPM (%)  " + "  ".join(f"{r:g}FP".rjust(6) for r in self.fp_rates))
        lines.append(
            f"{_nanfmt(metrics['cpm'])}    "
            + "  ".join(_nanfmt(metrics[f"sens@{r:g}"]).rjust(6) for r in self.fp_rates)
        )
        if "cpm_ci_low" in metrics:
            lines.append(
                f"{100 * self.confidence:g} % CI (bootstrap over {self.per_image_name}s, {self.n_bootstrap} samples): "
                f"CPM {_nanfmt(metrics['cpm_ci_low']).strip()}-{_nanfmt(metrics['cpm_ci_high']).strip()}"
            )
        for attr in self.attributes:
            keys = [k for k in metrics if k.startswith(f"cpm_{attr}_")]
            lines.append(
                f"CPM by {attr} (%): " + ", ".join(f"{k[len(attr) + 5:]} {_nanfmt(metrics[k]).strip()}" for k in keys)
            )
        for t in self.iou_thresholds:
            lines.append(
                f"IoU >= {t:g}: sensitivity {_nanfmt(metrics[f'sensitivity_iou{t:g}']).strip()} %, "
                f"FPs per {self.per_image_name} {metrics[f'fp_per_image_iou{t:g}']:.2f} "
                f"(score >= {self.score_threshold:g})"
            )
        lines.append(f"COCO mAP {metrics.get('map', float('nan')):.3f}, mAR {metrics.get('mar', float('nan')):.3f}")
        return "\n".join(lines)
