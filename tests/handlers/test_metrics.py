"""The classification and segmentation metric handlers: MONAI's IgniteMetricHandler driving the cumulative metrics,
one JSON report with the extra entries, the table in the log."""

import json
import logging

import numpy as np
import pytest
import torch
from common.handlers import ClassificationMetricsHandler, MetricsHandler, SegmentationMetricsHandler
from common.metrics import SegmentationMetrics
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler
from monai.networks.utils import one_hot
from sklearn.metrics import accuracy_score, roc_auc_score

from tests.builders import random_probabilities


def onehot(labels: np.ndarray, num_classes: int = 2) -> torch.Tensor:
    """``(B, *spatial)`` integer labels -> ``(B, C, *spatial)`` one-hot."""
    return one_hot(torch.as_tensor(labels)[:, None].long(), num_classes)


def test_classification_handler(tmp_path):
    prob, y = random_probabilities(10, 2, 5)
    batches = [(prob[i : i + 3], y[i : i + 3]) for i in range(0, 10, 3)]

    def step(engine, batch):
        p, t = batch
        return [{"pred": torch.as_tensor(pi), "label": torch.as_tensor(ti)} for pi, ti in zip(p, t)]

    engine = Engine(step)
    out = tmp_path / "eval" / "metrics.json"
    ClassificationMetricsHandler(str(out), extra={"variant": "none"}).attach(engine)
    engine.run(batches, max_epochs=1)
    written = json.loads(out.read_text())
    assert written["variant"] == "none"
    assert written["auc"] == pytest.approx(roc_auc_score(y, prob[:, 1]))
    assert engine.state.metrics["acc"] == pytest.approx(accuracy_score(y, prob.argmax(1)))


def test_segmentation_handler_writes_json(tmp_path):
    gt = np.zeros((2, 8, 8), int)
    gt[:, 2:5, 2:5] = 1
    batches = [[{"pred": onehot(gt)[i], "label": onehot(gt)[i]}] for i in range(2)]
    engine = Engine(lambda e, b: b)
    out = tmp_path / "metrics.json"
    SegmentationMetricsHandler(str(out), extra={"split": "test"}).attach(engine)
    engine.run(batches)
    data = json.loads(out.read_text())
    assert data["dice"] == 1.0 and data["miou"] == 1.0 and data["hd95"] == 0.0 and data["split"] == "test"
    assert engine.state.metrics["dice"] == 1.0


def test_segmentation_handler_writes_per_image_dsc_with_ids(tmp_path):
    """Eq. 6 per image beside metrics.json: a perfect image scores 1; an image whose 3x3 tumour is predicted as
    background has 55 of 64 pixels right: 2 * 55 / (64 + 64) = 0.859375. The mean is the report's dsc_eq6."""
    gt = np.zeros((2, 8, 8), int)
    gt[:, 2:5, 2:5] = 1
    pred = gt.copy()
    pred[1] = 0
    batches = [[{"pred": onehot(pred)[i], "label": onehot(gt)[i]}] for i in range(2)]
    engine = Engine(lambda e, b: b)
    out, per_image = tmp_path / "metrics.json", tmp_path / "per_image.json"
    handler = SegmentationMetricsHandler(str(out), per_image_file=str(per_image), image_ids=["a_seg", "b_seg"])
    handler.attach(engine)
    engine.run(batches)
    data = json.loads(per_image.read_text())
    assert data["ids"] == ["a_seg", "b_seg"] and data["dsc_eq6"] == pytest.approx([1.0, 0.859375])
    assert json.loads(out.read_text())["dsc_eq6"] == pytest.approx(np.mean(data["dsc_eq6"]))
    # without ids: the indices; with the wrong number of ids: an error naming both counts
    SegmentationMetricsHandler(str(out), per_image_file=str(per_image)).attach(engine2 := Engine(lambda e, b: b))
    engine2.run(batches)
    assert json.loads(per_image.read_text())["ids"] == ["0", "1"]
    bad = SegmentationMetricsHandler(str(out), per_image_file=str(per_image), image_ids=["a"])
    bad.attach(engine3 := Engine(lambda e, b: b))
    with pytest.raises(ValueError, match="2 images were scored but image_ids names 1"):
        engine3.run(batches)


def test_handlers_are_monai_metric_handlers_and_log_the_table(tmp_path, caplog):
    """One epoch per run: the metric is reset at each run, the report is logged as a table, NaN is written as null,
    and an extra entry may not hide a metric."""
    gt = np.zeros((2, 8, 8), int)
    gt[0, 2:5, 2:5] = 1  # the second image has no foreground: its empty-FP rate is scored, its Dice is not
    handler = SegmentationMetricsHandler(tmp_path / "m.json", SegmentationMetrics(class_names=["tumour"]))
    assert isinstance(handler, IgniteMetricHandler) and isinstance(handler, MetricsHandler)
    engine = Engine(lambda e, b: b)
    handler.attach(engine)
    batches = [[{"pred": onehot(gt)[i], "label": onehot(gt)[i]}] for i in range(2)]
    with caplog.at_level(logging.INFO, logger="common.handlers.metrics"):
        engine.run(batches)
        engine.run(batches[1:], max_epochs=1)  # a second run sees only the empty image
    first, second = [r.getMessage() for r in caplog.records if r.name == "common.handlers.metrics"]
    assert "segmentation metrics" in first and "dice " in first and "| 1" in first
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["num_images"] == 1 and data["dice"] is None and data["empty_false_positive_rate"] == 0.0
    assert handler.results["num_images"] == 1
    clash = ClassificationMetricsHandler(tmp_path / "c.json", extra={"acc": "x"})
    with pytest.raises(ValueError, match="overwrite"):
        clash.write({"acc": 1.0})
