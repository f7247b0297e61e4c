"""Refiner step chosen by the validation accuracy of a classifier trained with its refined images (Han sec. 4.2.3)."""

import json

import pytest
from common.evaluation import prediction_accuracy, select_refined_set
from monai.data import load_decathlon_datalist


@pytest.fixture
def layout(tmp_path):
    real = tmp_path / "real" / "datalist.json"
    real.parent.mkdir()
    val = [{"image": [f"v{i}_t1.nii.gz", f"v{i}_t1c.nii.gz"], "class": i % 2} for i in range(4)]
    real.write_text(json.dumps({"training": [], "validation": val}))
    preds = {}
    for step, guesses in {"20": [0, 1, 1, 1], "40": [0, 1, 0, 1], "60": [0, 1, 0, 1]}.items():
        p = tmp_path / f"clf_{step}" / "predictions.json"
        p.parent.mkdir()
        items = [
            {"image": str(real.parent / e["image"][0]), "pred": g, "probabilities": [0.5, 0.5]}
            for e, g in zip(val, guesses)
        ]
        p.write_text(json.dumps({"predictions": items}))
        preds[step] = p
    cands = {}
    for step in preds:
        c = tmp_path / f"refined_{step}" / "datalist.json"
        c.parent.mkdir()
        c.write_text(json.dumps({"training": [{"image": f"r{step}.nii.gz", "class": 1}]}))
        cands[step] = c
    return real, preds, cands


def test_accuracy_and_selection_of_the_best_earliest_step(layout, tmp_path):
    real, preds, cands = layout
    assert prediction_accuracy(preds["20"], real) == 0.75
    assert prediction_accuracy(preds["40"], real) == 1.0
    out = tmp_path / "selected" / "datalist.json"
    record = select_refined_set(cands, preds, real, out)
    assert record["selected_step"] == "40" and record["accuracy"] == {"20": 0.75, "40": 1.0, "60": 1.0}
    chosen = load_decathlon_datalist(str(out), True, "training")
    assert chosen[0]["image"] == str(tmp_path / "refined_40" / "r40.nii.gz")
    assert json.loads((out.parent / "selection.json").read_text())["selected_step"] == "40"


def test_selection_errors(layout, tmp_path):
    real, preds, cands = layout
    with pytest.raises(ValueError, match="same refiner steps"):
        select_refined_set({"20": cands["20"]}, preds, real, tmp_path / "o.json")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"predictions": json.loads(preds["20"].read_text())["predictions"][:2]}))
    with pytest.raises(ValueError, match="no prediction for 2"):
        prediction_accuracy(partial, real)
