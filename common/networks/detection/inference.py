"""Whole-image detection by sliding windows and the prediction writer of the detection bundle.

The thesis's 3D Faster R-CNN takes 160x176x224 input volumes (sec. 6.2.2); here a trained detector is run on
overlapping patches of the whole volume (or slice), the patch detections are shifted back to image coordinates,
merged, and cleaned by per-class NMS (:func:`sliding_window_detect`). :class:`DetectionPredictor` runs it on a
datalist section and writes a JSON datalist of predicted boxes with scores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from common.utils import atomic_write_json
from monai.data.utils import dense_patch_slices
from torch import Tensor, nn

from .matching import nms

__all__ = ["patch_starts", "sliding_window_detect", "window_slices", "DetectionPredictor"]


def _scan_interval(roi: int, overlap: float) -> int:
    """Distance between the starts of neighbouring windows: ``round(roi * (1 - overlap))``, at least 1.

    MONAI's :class:`~monai.inferers.SlidingWindowInferer` truncates instead of rounding (``int(roi * (1 -
    overlap))``) and blends overlapping dense outputs, which boxes do not need, so only its window enumeration,
    :func:`~monai.data.utils.dense_patch_slices`, is used here.
    """
    if overlap < 0:
        raise ValueError(
            f"overlap must be non-negative (a negative overlap leaves gaps between windows), got {overlap}."
        )
    return max(1, int(round(roi * (1.0 - overlap))))


def window_slices(spatial_size: Sequence[int], roi_size: Sequence[int], overlap: float) -> list[tuple[slice, ...]]:
    """Windows of size ``roi_size`` covering an image of ``spatial_size`` with the given fractional overlap.

    Along each axis the starts are ``0, step, 2 step, ...`` below ``size - roi``, then ``size - roi`` (the last
    window ends at the border), with ``step = round(roi * (1 - overlap))``; a window at least as large as the axis
    covers it once. The windows are the Cartesian product of the per-axis starts, the first axis varying slowest
    (MONAI's :func:`~monai.data.utils.dense_patch_slices`).

    Args:
        spatial_size: image size per axis.
        roi_size: window size per axis (values larger than the image are cut to the image size).
        overlap: fractional overlap of neighbouring windows, ``>= 0``.

    Returns:
        one tuple of slices (one per axis) per window.
    """
    roi = [min(int(r), int(s)) for r, s in zip(roi_size, spatial_size)]
    return dense_patch_slices(spatial_size, roi, [_scan_interval(r, overlap) for r in roi])


def patch_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of windows of length ``roi`` covering ``[0, size)`` with the given fractional overlap (one axis
    of :func:`window_slices`)."""
    if roi >= size:
        return [0]
    return [int(w[0].start) for w in window_slices((size,), (roi,), overlap)]


@torch.no_grad()
def sliding_window_detect(
    network: nn.Module,
    image: Tensor,
    roi_size: Sequence[int] | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    nms_thresh: float = 0.3,
    max_detections: int = 100,
) -> dict[str, Tensor]:
    """Detect on one image by windows; merge with per-class NMS.

    Args:
        network: detector in eval mode returning ``[{"boxes", "scores", "labels"}]`` per window.
        image: (C, *S) or (1, C, *S).
        roi_size: window size per axis (None or non-positive values: the whole axis).
        overlap: fractional overlap of neighbouring windows (see :func:`window_slices`).
        sw_batch_size: windows per forward pass.
        nms_thresh: IoU threshold of the merging NMS.
        max_detections: detections kept.

    Returns:
        ``{"boxes": (D, 2 * spatial_dims), "scores": (D,), "labels": (D,)}`` in image coordinates.
    """
    if image.ndim >= 3 and image.shape[0] == 1 and image.ndim == getattr(network, "spatial_dims", 0) + 2:
        image = image[0]
    spatial = image.shape[1:]
    roi = [s if (r is None or r <= 0) else min(int(r), s) for r, s in zip(roi_size or [None] * len(spatial), spatial)]
    windows = window_slices(spatial, roi, overlap)
    boxes, scores, labels = [], [], []
    for i in range(0, len(windows), sw_batch_size):
        chunk = windows[i : i + sw_batch_size]
        patches = torch.stack([image[(slice(None), *window)] for window in chunk])
        outputs = network(patches)
        for window, out in zip(chunk, outputs):
            shift = torch.tensor([float(w.start) for w in window] * 2, device=out["boxes"].device)
            boxes.append(out["boxes"].float() + shift)
            scores.append(out["scores"].float())
            labels.append(out["labels"])
    all_boxes, all_scores, all_labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    if len(windows) > 1:
        keep = nms(all_boxes, all_scores, all_labels, nms_thresh, max_detections)
    else:
        keep = torch.argsort(all_scores, descending=True, stable=True)[:max_detections]
    return {"boxes": all_boxes[keep], "scores": all_scores[keep], "labels": all_labels[keep]}


class DetectionPredictor:
    """Detect on every image of a datalist section and write the predictions as a JSON datalist.

    Output: ``{"description", "box_mode", "box_coordinates", "<section>": [{"image": path relative to the JSON,
    "box": [[...], ...], "score": [...], "box_label": [...]}, ...]}``, written to a temporary name and renamed.

    Args:
        network: trained detector.
        datalist: Decathlon-style datalist JSON.
        section: the section to predict (e.g. ``"test"``).
        transform: loads an entry ``{"image": absolute path}`` into ``{"image": (C, *S) tensor}``.
        output_file: the predictions JSON.
        device: inference device.
        roi_size / overlap / sw_batch_size / nms_thresh / max_detections: see :func:`sliding_window_detect`.
        box_mode: written in the header (``"xyzxyz"`` or ``"xyxy"``).
        amp: autocast on the device type (``True``/``False``; a bundle's ``"auto"`` is resolved before, e.g. by
            :func:`common.engines.resolve_precision`, whose ``enabled`` and ``dtype`` go here).
        amp_dtype: the autocast dtype (``torch.bfloat16`` or ``torch.float16``).

    Raises:
        TypeError: ``amp`` is not a bool (a string such as ``"auto"`` or ``"false"`` would otherwise count as true).
    """

    def __init__(
        self,
        network: nn.Module,
        datalist: str | os.PathLike,
        section: str,
        transform: Callable[[dict[str, Any]], dict[str, Any]],
        output_file: str | os.PathLike,
        device: str | torch.device = "cpu",
        roi_size: Sequence[int] | None = None,
        overlap: float = 0.25,
        sw_batch_size: int = 1,
        nms_thresh: float = 0.3,
        max_detections: int = 100,
        box_mode: str = "xyzxyz",
        amp: bool = False,
        amp_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if not isinstance(amp, bool):
            raise TypeError(
                f"DetectionPredictor: amp must be True or False, got {amp!r}; resolve a bundle's amp setting first "
                "(common.engines.resolve_precision(amp, device).enabled)."
            )
        self.network = network
        self.datalist = Path(datalist)
        self.section = section
        self.transform = transform
        self.output_file = Path(output_file)
        self.device = torch.device(device)
        self.kwargs = {
            "roi_size": roi_size,
            "overlap": overlap,
            "sw_batch_size": sw_batch_size,
            "nms_thresh": nms_thresh,
            "max_detections": max_detections,
        }
        self.box_mode = box_mode
        self.amp = amp
        self.amp_dtype = amp_dtype

    def run(self) -> str:
        """Predict and write the JSON; return its path."""
        data = json.loads(self.datalist.read_text())
        if self.section not in data:
            raise ValueError(f"{self.datalist}: no section {self.section!r} to predict.")
        self.network.eval()
        out_dir = self.output_file.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        entries = []
        for entry in data[self.section]:
            path = (self.datalist.parent / entry["image"]).resolve()
            item = self.transform({"image": str(path)})
            image = torch.as_tensor(item["image"]).to(self.device).float()
            ctx = (
                torch.autocast(self.device.type, dtype=self.amp_dtype)
                if self.amp
                else torch.autocast("cpu", enabled=False)
            )
            with ctx:
                det = sliding_window_detect(self.network, image, **self.kwargs)
            entries.append(
                {
                    "image": os.path.relpath(path, out_dir.resolve()),
                    "box": [[round(float(v), 3) for v in b] for b in det["boxes"].cpu()],
                    "score": [round(float(s), 6) for s in det["scores"].cpu()],
                    "box_label": [int(v) for v in det["labels"].cpu()],
                }
            )
        result = {
            "description": f"Predicted boxes of {self.datalist.name} [{self.section}]",
            "box_mode": self.box_mode,
            "box_coordinates": "voxel",
            self.section: entries,
        }
        atomic_write_json(result, self.output_file, indent=1)
        return str(self.output_file)
