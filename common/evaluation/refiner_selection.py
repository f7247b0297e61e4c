"""Choosing the refiner's training step by a classifier's validation accuracy (Han's thesis sec. 4.2.3: "To find
suitable refining steps, we pick the MUNIT/SimGAN models with the highest accuracy on tumor classification
validation, when pre-trained and combined with classic DA, among 20,000/50,000/100,000 steps").

For each saved refiner step the candidate is a refined synthetic datalist and the predictions (``predictions.json``
of the classification bundle's ``inference`` on the ``validation`` section) of a classifier trained with it;
:func:`select_refined_set` scores each candidate's validation accuracy, keeps the best (the earliest step on a tie)
and writes its datalist to a fixed place, with a record of every score.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from common.data.merging import merge_datalists
from common.utils import atomic_write_json
from monai.data import load_decathlon_datalist

__all__ = ["prediction_accuracy", "select_refined_set"]

logger = logging.getLogger(__name__)


def _first_file(image: Any) -> str:
    first = image[0] if isinstance(image, (list, tuple)) else image
    return os.path.normpath(os.path.abspath(str(first)))


def prediction_accuracy(
    predictions_file: str | os.PathLike,
    datalist: str | os.PathLike,
    section: str = "validation",
    class_key: str = "class",
) -> float:
    """Accuracy of a ``predictions.json`` (``{"predictions": [{"image", "pred"}...]}``) against a datalist section.

    Args:
        predictions_file: the classifier's predictions.
        datalist: the datalist whose ``section`` holds the images and their ``class_key``.
        section: the section predicted.
        class_key: entry key of the class.

    Returns:
        the fraction of the section's images whose predicted class is their class.

    Raises:
        ValueError: when an image of the section has no prediction (or the section is empty).
    """
    with open(predictions_file) as f:
        preds = {_first_file(p["image"]): int(p["pred"]) for p in json.load(f)["predictions"] if p.get("image")}
    entries = load_decathlon_datalist(os.fspath(datalist), True, section)
    if not entries:
        raise ValueError(f"{datalist}: section {section!r} is empty.")
    missing = [e["image"] for e in entries if _first_file(e["image"]) not in preds]
    if missing:
        raise ValueError(
            f"{predictions_file}: no prediction for {len(missing)} of the {len(entries)} {section!r} images of "
            f"{datalist} (e.g. {missing[0]!r}); run the classifier's inference on that section."
        )
    correct = sum(int(preds[_first_file(e["image"])] == int(e[class_key])) for e in entries)
    return correct / len(entries)


def select_refined_set(
    candidates: Mapping[Any, str | os.PathLike],
    predictions: Mapping[Any, str | os.PathLike],
    datalist: str | os.PathLike,
    output_file: str | os.PathLike,
    section: str = "validation",
    class_key: str = "class",
) -> dict[str, Any]:
    """Keeps the refined datalist whose classifier has the best validation accuracy.

    Args:
        candidates: ``{step: refined datalist}`` in step order.
        predictions: ``{step: predictions.json}`` of the classifier trained with that step's refined images.
        datalist: the real datalist holding ``section`` (with classes).
        output_file: where the chosen datalist is written (paths rebased; :func:`common.data.merge_datalists`);
            ``selection.json`` beside it records every step's accuracy and the choice.
        section: the validation section.
        class_key: entry key of the class.

    Returns:
        ``{"selected_step", "accuracy": {step: acc}, "datalist", "section"}`` (steps as strings).

    Raises:
        ValueError: when the steps of ``candidates`` and ``predictions`` differ, or there is none.
    """
    steps = [str(s) for s in candidates]
    if not steps or set(steps) != {str(s) for s in predictions}:
        raise ValueError(
            f"candidates and predictions must name the same refiner steps, got {steps} and {[str(s) for s in predictions]}."
        )
    files = {str(k): v for k, v in predictions.items()}
    accuracy = {s: prediction_accuracy(files[s], datalist, section, class_key) for s in steps}
    best = max(steps, key=lambda s: (accuracy[s], -steps.index(s)))
    chosen = {str(k): v for k, v in candidates.items()}[best]
    merge_datalists([chosen], output_file)
    record = {
        "selected_step": best,
        "accuracy": accuracy,
        "section": section,
        "datalist": os.path.abspath(os.fspath(datalist)),
        "candidates": {
            s: os.path.abspath(os.fspath(candidates_path)) for s, candidates_path in zip(steps, candidates.values())
        },
    }
    atomic_write_json(record, os.path.join(os.path.dirname(os.path.abspath(os.fspath(output_file))), "selection.json"))
    logger.info("refiner step %s selected (validation accuracy %s)", best, accuracy)
    return record
