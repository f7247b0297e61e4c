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
from torch import Tensor, nn

from .matching import nms

__all__ = ["patch_starts", "sliding_window_detect", "DetectionPredictor"]


def patch_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of windows of length ``roi`` covering ``[0, size)`` with the given fractional overlap."""
    if roi >= size:
        return [0]
    step = max(1, int(round(roi * (1.0 - overlap))))
    starts = list(range(0, size - roi, step))
    starts.append(size - roi)
    return sorted(set(starts))


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
        overlap: fractional overlap of neighbouring windows.
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
    grids = [patch_starts(s, r, overlap) for s, r in zip(spatial, roi)]
    starts = [list(p) for p in torch.cartesian_prod(*[torch.tensor(g) for g in grids]).reshape(-1, len(spatial))]
    boxes, scores, labels = [], [], []
    for i in range(0, len(starts), sw_batch_size):
        chunk = starts[i : i + sw_batch_size]
        patches = torch.stack(
            [image[(slice(None), *[slice(int(s), int(s) + r) for s, r in zip(st, roi)])] for st in chunk]
        )
        outputs = network(patches)
        for st, out in zip(chunk, outputs):
            shift = torch.tensor([float(s) for s in st] * 2, device=out["boxes"].device)
            boxes.append(out["boxes"].float() + shift)
            scores.append(out["scores"].float())
            labels.append(out["labels"])
    all_boxes, all_scores, all_labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    if len(starts) > 1:
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
        amp: bfloat16/float16 autocast on the device type.
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
    ) -> None:
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
                torch.autocast(self.device.type, dtype=torch.bfloat16)
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
        tmp = self.output_file.with_name(f".{self.output_file.name}.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, self.output_file)
        return str(self.output_file)
