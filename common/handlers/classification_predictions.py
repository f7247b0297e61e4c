"""Ignite handler writing a classifier's per-image probabilities and predicted class to a JSON file."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from common.utils import atomic_write_json, is_rank0
from ignite.engine import Engine, Events

__all__ = ["ClassificationPredictionWriter"]

logger = logging.getLogger(__name__)


class ClassificationPredictionWriter:
    """Ignite handler for inference: writes each image's class probabilities and arg-max class to a JSON file.

    Reads ``pred`` (probabilities ``(C,)``) from the decollated engine output and the image file names from
    ``engine.state.batch[path_key]``; writes ``{"predictions": [{"image", "probabilities", "pred"}...]}``
    atomically on completion (rank 0). MONAI's :class:`~monai.handlers.ClassificationSaver` writes a CSV keyed by
    the images' ``filename_or_obj`` metadata instead, which the classification bundle drops (``track_meta: false``)
    and its tests and users read as this JSON.

    Args:
        output_file: the JSON file.
        path_key: batch key holding each sample's image path.
    """

    def __init__(self, output_file: str | os.PathLike, path_key: str = "image_path") -> None:
        self.output_file = output_file
        self.path_key = path_key
        self.predictions: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Reset on ``STARTED``, collect at every iteration, write on ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, lambda _: self.predictions.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _update(self, engine: Engine) -> None:
        items = engine.state.output if isinstance(engine.state.output, (list, tuple)) else [engine.state.output]
        batch = engine.state.batch
        if isinstance(batch, dict):
            paths = batch.get(self.path_key)
        elif isinstance(batch, (list, tuple)):  # MONAI engines decollate the batch too
            paths = [b.get(self.path_key) if isinstance(b, dict) else None for b in batch]
        else:
            paths = None
        for i, item in enumerate(items):
            prob = torch.as_tensor(item["pred"]).detach().float().cpu().reshape(-1)
            self.predictions.append(
                {
                    "image": None if paths is None or paths[i] is None else str(paths[i]),
                    "probabilities": [round(float(v), 6) for v in prob],
                    "pred": int(prob.argmax()),
                }
            )

    def _complete(self, engine: Engine) -> None:
        if is_rank0():
            atomic_write_json({"predictions": self.predictions}, self.output_file)
            logger.info("wrote %d predictions to %s", len(self.predictions), os.fspath(self.output_file))
