"""The classification and segmentation metric handlers: MONAI's IgniteMetricHandler driving the cumulative metrics,
one JSON report with the extra entries, the table in the log."""

import json
import logging

import numpy as np
import pytest
import torch
from common.experiments.results import case_intervals, read_per_image, read_per_image_csv, write_per_image_csv
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


def classification_run(handler, prob, y, batch_size=3, shuffle=False):
    """Run ``handler`` on an engine over the (probabilities, label) pairs, in batches of ``batch_size``."""
    pairs = list(zip(torch.as_tensor(prob), torch.as_tensor(y)))
    loader = torch.utils.data.DataLoader(pairs, batch_size=batch_size, shuffle=shuffle, collate_fn=list)
    engine = Engine(lambda e, batch: [{"pred": p, "label": t} for p, t in batch])
    handler.attach(engine)
    engine.run(loader, max_epochs=1)
    return engine


def case_rows(per_image_file):
    """``per_image.csv`` rows of one run that wrote ``per_image_file``, as the grids' reports read them."""
    record = {"dataset": "d", "method": "m", "seed": 0, "status": "ok", "per_image": read_per_image(per_image_file)}
    write_per_image_csv([record], per_image_file.with_suffix(".csv"))
    return read_per_image_csv(per_image_file.with_suffix(".csv"))


def test_classification_per_image_file_gives_the_report_values_to_the_tables(tmp_path):
    """Binary task: score/label/pred per image in loader order with the phantom ids; the tables' bootstrap estimates
    (every case once) from the file equal metrics.json, and the resampling is by patient (two cases each)."""
    prob, y = random_probabilities(12, 2, 3)
    ids = [f"/data/images/brain_P{i // 2:04d}_C{i % 2:02d}_t1.nii.gz" for i in range(12)]
    out, per_image = tmp_path / "metrics.json", tmp_path / "per_image.json"
    classification_run(ClassificationMetricsHandler(str(out), per_image_file=str(per_image), image_ids=ids), prob, y)
    data, metrics = json.loads(per_image.read_text()), json.loads(out.read_text())
    assert data["ids"] == ids and data["label"] == y.tolist() and data["pred"] == prob.argmax(1).tolist()
    assert data["score"] == pytest.approx(prob[:, 1].tolist())
    names = ["auc", "acc", "recall", "specificity", "precision", "f1"]
    intervals = case_intervals(case_rows(per_image), names, n_resamples=200)
    for name in names:
        ci = intervals[("d", "m", name)]
        assert ci.estimate == pytest.approx(metrics[name]), name
        assert ci.unit == "patients" and ci.n_units == 6 and ci.n_cases == 12
        assert ci.low <= ci.estimate <= ci.high


def test_classification_per_image_multiclass_and_order_checks(tmp_path):
    """C > 2: one probability list per class and the label, read by the grids (no interval from them); a shuffled
    loader or a wrong number of ids is refused with a message saying why."""
    prob, y = random_probabilities(7, 3, 4)
    per_image = tmp_path / "per_image.json"
    handler = ClassificationMetricsHandler(
        tmp_path / "m.json", 3, class_names=["a", "b", "c"], per_image_file=per_image, image_ids=list("pqrstuv")
    )
    classification_run(handler, prob, y)
    data = read_per_image(per_image)
    assert set(data) == {"ids", "label", "probability_a", "probability_b", "probability_c"}
    assert data["label"] == y.tolist() and data["probability_c"] == pytest.approx(prob[:, 2].tolist())
    assert case_intervals(case_rows(per_image), ["auc", "acc", "f1"], n_resamples=50) == {}
    shuffled = ClassificationMetricsHandler(tmp_path / "m.json", per_image_file=per_image, image_ids=list("pqrstuv"))
    with pytest.raises(ValueError, match="RandomSampler.*shuffle: false"):
        classification_run(shuffled, *random_probabilities(7, 2, 4), shuffle=True)
    short = ClassificationMetricsHandler(tmp_path / "m.json", per_image_file=per_image, image_ids=list("pqr"))
    with pytest.raises(ValueError, match="7 images were scored but image_ids names 3"):
        classification_run(short, *random_probabilities(7, 2, 4))


def test_segmentation_per_image_metrics_average_to_the_report(tmp_path):
    """Binary task: Dice, sensitivity, HD95 and IoU per image, null for the empty ground truth, their means the
    report's values; a missed tumour scores 0 with HD95 the diagonal. Several classes: per class, as the report."""
    gt = np.zeros((4, 8, 8), int)
    gt[0, 2:5, 2:5] = gt[1, 1:6, 1:4] = gt[2, 3:5, 3:7] = 1  # image 3: no tumour
    pred = gt.copy()
    pred[1, 1:6, 1:3] = 0  # 5 of 15 pixels found, nothing false
    pred[2] = 0  # missed
    pred[3, 0, 0] = 1  # a false positive on the empty image
    batches = [[{"pred": onehot(pred)[i], "label": onehot(gt)[i]}] for i in range(4)]
    out, per_image = tmp_path / "metrics.json", tmp_path / "per_image.json"
    SegmentationMetricsHandler(out, per_image_file=per_image, image_ids=list("abcd")).attach(
        engine := Engine(lambda e, b: b)
    )
    engine.run(batches)
    data, metrics = json.loads(per_image.read_text()), json.loads(out.read_text())
    assert data["dice"] == pytest.approx([1.0, 2 * 5 / 20, 0.0, None]) and data["sensitivity"][1] == pytest.approx(
        1 / 3
    )
    assert data["miou"][1] == pytest.approx(5 / 15) and data["hd95"][2] == pytest.approx(np.hypot(8, 8))
    for key in ("dice", "sensitivity", "hd95", "miou"):
        assert data[key][3] is None
        assert np.mean(data[key][:3]) == pytest.approx(metrics[key]), key
    intervals = case_intervals(case_rows(per_image), ["dice", "hd95"], n_resamples=50)
    assert intervals[("d", "m", "dice")].estimate == pytest.approx(metrics["dice"])
    assert intervals[("d", "m", "hd95")].estimate == pytest.approx(metrics["hd95"])  # the empty image: weight 0

    three = np.zeros((2, 8, 8), int)
    three[0, 1:3, 1:3], three[0, 5:7, 5:7], three[1, 1:3, 1:3] = 1, 2, 1
    guess = three.copy()
    guess[0, 5:7, 5:7] = 0  # class 2 missed in image 0; image 1 has no class 2
    metric = SegmentationMetrics(class_names=["core", "rim"])
    metric(onehot(guess, 3), onehot(three, 3))
    per_class = metric.per_image_metrics()
    assert set(per_class) == {f"{k}_{c}" for k in ("dice", "sensitivity", "hd95", "miou") for c in ("core", "rim")}
    assert per_class["dice_core"].tolist() == [1.0, 1.0] and per_class["dice_rim"][0] == 0.0
    assert torch.isnan(per_class["dice_rim"][1]) and metric.aggregate()["dice_rim"] == 0.0
