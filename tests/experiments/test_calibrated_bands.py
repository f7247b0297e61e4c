"""The calibrated brain MR phantom sits in its loose band at tiny scale, and the default phantom does not: a phantom
change that makes the calibrated task trivial (or impossible) fails here.

The proxies (:py:func:`common.experiments.calibration.linear_proxies`) are linear models on fixed features, fitted in
a second: a phantom change that makes the calibrated task trivial lifts them to the default phantom's values (close
to 1) and fails these tests; one that makes it impossible drops them to chance. The bundles' own baselines, measured
with ``scripts/calibrate_phantom.py``, are recorded in ``common/data/phantoms/difficulty.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from common.data.phantoms import make_brain_mr
from common.experiments.calibration import calibrate, linear_proxies

# the limited-data regime of the calibration: 8 training patients (half with a tumour), 40 test patients, 2 slices
# each, 64 x 64; phantom seed 0
NUM_TRAIN, NUM_TEST = 8, 40


@pytest.fixture(scope="module")
def proxies(tmp_path_factory) -> dict[str | None, dict[str, float]]:
    """Linear proxies' test AUC and Dice on the default phantom and on each calibrated preset."""
    total = NUM_TRAIN + NUM_TEST
    scores = {}
    for difficulty in (None, "calibrated_classification", "calibrated_segmentation"):
        datalist = make_brain_mr(
            Path(tmp_path_factory.mktemp("phantom")) / "set",
            num_patients=total,
            cases_per_patient=2,
            image_size=64,
            seed=0,
            split_fractions=(NUM_TRAIN / total, 0.0, NUM_TEST / total),
            difficulty=difficulty,
        )
        scores[difficulty] = linear_proxies(datalist)
    return scores


def test_classification_2d_band(proxies):
    # the easy default: a linear model on intensity histograms of 16 training slices separates the classes
    assert proxies[None]["auc"] > 0.95
    # calibrated: clearly above chance, clearly below the default's ceiling (measured 0.77)
    assert 0.6 < proxies["calibrated_classification"]["auc"] < 0.92


def test_segmentation_2d_band(proxies):
    # the easy default: a per-pixel linear model outlines the tumour
    assert proxies[None]["dice"] > 0.95
    # calibrated: far from the default (measured 0.42), not hopeless
    assert 0.25 < proxies["calibrated_segmentation"]["dice"] < 0.75


TINY_RUN = dict(
    num_small_patients=2,
    ratio=2,
    num_val_patients=2,
    num_test_patients=2,
    cases_per_patient=1,
    image_size=16,
    iterations=2,
    batch_size=2,
    extra_overrides={"widen_factor": 0.125},
)
"""A calibration in seconds: 2 against 4 training patients of one 16x16 slice, 2 iterations, a narrow network."""


@pytest.mark.slow
def test_calibrate_trains_both_regimes_with_the_bundle(tmp_path, monkeypatch):
    """``calibrate`` runs the classification bundle's training and evaluation for both regimes on one test set."""
    monkeypatch.chdir(tmp_path)  # the bundle is found from the repository, not from the working directory
    result = calibrate("classification", tmp_path, **TINY_RUN)
    assert result["difficulty"] == "calibrated_classification" and result["metric"] == "auc"
    assert result["baseline"]["training_cases"] == 2 and result["upper_bound"]["training_cases"] == 4
    assert result["baseline"]["max_epochs"] == 2 and result["upper_bound"]["max_epochs"] == 1
    for regime in ("baseline", "upper_bound"):
        assert 0.0 <= result[regime]["auc"] <= 1.0
        split = json.loads((tmp_path / regime / "eval" / "datalist_split.json").read_text())
        assert [e["patient"] for e in split["test"]] == [
            e["patient"]
            for e in json.loads((tmp_path / "upper_bound" / "eval" / "datalist_split.json").read_text())["test"]
        ]
        assert len({e["patient"] for e in split["training"]}) == result[regime]["training_cases"]
    recorded = json.loads((tmp_path / "data" / "datalist.json").read_text())["parameters"]
    assert recorded["difficulty"] == "calibrated_classification"
    assert json.loads((tmp_path / "calibration.json").read_text()) == result


@pytest.mark.slow
def test_calibrate_merges_bundle_variants_into_both_runs(tmp_path):
    """``variants`` merges the bundle's variant files into both regimes' training and evaluation (here the thesis's
    ResNet-50 with its classification head), and is recorded; the run size still overrides what a variant sets."""
    result = calibrate("classification", tmp_path, **TINY_RUN, variants=["variants/thesis.yaml"])
    assert result["settings"]["variants"] == ["variants/thesis.yaml"]
    assert result["baseline"]["max_epochs"] == 2  # the run size, not the variant's 100 epochs
    for regime in ("baseline", "upper_bound"):
        state = torch.load(tmp_path / regime / "models" / "model.pt", weights_only=True)
        # ResNet-50's bottleneck blocks (a third convolution) inside the thesis's head (dense + batch norm)
        assert any(k.startswith("backbone.layer1.0.conv3") for k in state), sorted(state)[:5]
        assert any(k.startswith("head.") for k in state), sorted(state)[-5:]
        assert 0.0 <= result[regime]["auc"] <= 1.0


def test_calibrate_refuses_an_unknown_variant_before_running(tmp_path):
    with pytest.raises(FileNotFoundError, match="'variants/nope.yaml' not found"):
        calibrate("classification", tmp_path, variants="variants/nope.yaml")
    assert not (tmp_path / "data").exists()
