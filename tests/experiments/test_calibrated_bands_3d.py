"""The calibrated 3D brain MR phantom tasks sit in their loose band at tiny scale, and the default 3D phantom does not:
a phantom change that makes a calibrated 3D task trivial (or impossible) fails here.

As in ``test_calibrated_bands.py`` (2D), the proxies (:py:func:`common.experiments.calibration.linear_proxies`) are
linear models on fixed features, fitted in seconds, here on volumes: per-channel intensity histograms of the head
(classification AUC) and per-voxel intensities smoothed in 3D (segmentation Dice). The bundles' own 3D baselines,
measured with ``scripts/calibrate_phantom.py --spatial_dims 3``, are recorded in
``common/data/phantoms/difficulty.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from common.data.phantoms import BRAIN_MR_PRESETS, make_brain_mr
from common.experiments.calibration import FAMILIES_3D, calibrate, linear_proxies

# the 3D calibration's volumes (32^3, one per patient, phantom seed 0) and its 40 test patients; the proxies fit on 16
# training patients (half with a tumour), twice the calibration's 8: on 8 volumes the histogram proxy of the
# calibrated classification task sits near chance (AUC 0.58), where a band cannot tell it from an impossible task
NUM_TRAIN, NUM_TEST, SIZE = 16, 40, 32
PRESETS_3D = {family: FAMILIES_3D[family]["preset"] for family in ("classification", "segmentation")}


@pytest.fixture(scope="module")
def proxies(tmp_path_factory) -> dict[str | None, dict[str, float]]:
    """Linear proxies' test AUC and Dice on the default 3D phantom and on each calibrated 3D preset."""
    total = NUM_TRAIN + NUM_TEST
    scores = {}
    for difficulty in (None, *sorted(set(PRESETS_3D.values()))):
        datalist = make_brain_mr(
            Path(tmp_path_factory.mktemp("phantom")) / "set",
            spatial_dims=3,
            num_patients=total,
            image_size=SIZE,
            seed=0,
            split_fractions=(NUM_TRAIN / total, 0.0, NUM_TEST / total),
            difficulty=difficulty,
        )
        scores[difficulty] = linear_proxies(datalist)
    return scores


def test_3d_presets_are_named_presets():
    # calibrate(..., spatial_dims=3, difficulty="calibrated") resolves to these
    for family, preset in PRESETS_3D.items():
        assert preset in BRAIN_MR_PRESETS, (family, preset)


def test_classification_3d_band(proxies):
    # the easy default: a linear model on the intensity histograms of 16 training volumes separates the classes
    # (measured 0.99)
    assert proxies[None]["auc"] > 0.95
    # calibrated: clearly below the default's ceiling, clearly above chance (measured 0.74)
    assert 0.6 < proxies[PRESETS_3D["classification"]]["auc"] < 0.9


def test_segmentation_3d_band(proxies):
    # the easy default: a per-voxel linear model outlines the tumour (measured 0.97)
    assert proxies[None]["dice"] > 0.95
    # calibrated: well below the default, not hopeless (measured 0.73). For scale: the classification preset, whose
    # 3D U-Net baseline is above the band (Dice 0.75), gives 0.87; the 2D segmentation preset, which leaves the 3D
    # U-Net at Dice 0, gives 0.41
    assert 0.5 < proxies[PRESETS_3D["segmentation"]]["dice"] < 0.82


def test_calibrate_rejects_bad_spatial_dims(tmp_path):
    with pytest.raises(ValueError, match="spatial_dims"):
        calibrate("segmentation", tmp_path, spatial_dims=4)


@pytest.mark.slow
def test_calibrate_3d_trains_both_regimes_on_volumes(tmp_path):
    """``calibrate(spatial_dims=3)`` runs the segmentation bundle with ``variants/3d.yaml`` on one volume per patient,
    both regimes scored on the same test patients."""
    result = calibrate(
        "segmentation",
        tmp_path,
        num_small_patients=2,
        ratio=2,
        num_val_patients=2,
        num_test_patients=2,
        image_size=16,
        iterations=2,
        batch_size=2,
        extra_overrides={"unet_channels": [2, 4], "unet_strides": [2]},
        spatial_dims=3,
    )
    assert result["difficulty"] == PRESETS_3D["segmentation"] and result["metric"] == "dice"
    assert result["settings"]["spatial_dims"] == 3 and result["settings"]["cases_per_patient"] == 1
    assert result["baseline"]["training_cases"] == 2 and result["upper_bound"]["training_cases"] == 4
    parameters = json.loads((tmp_path / "data" / "datalist.json").read_text())["parameters"]
    assert parameters["spatial_dims"] == 3 and parameters["image_size"] == [16, 16, 16]
    assert parameters["difficulty"] == PRESETS_3D["segmentation"]
    tests = []
    for regime in ("baseline", "upper_bound"):
        metrics = json.loads((tmp_path / regime / "eval" / "metrics.json").read_text())
        assert metrics["spatial_dims"] == 3 and metrics["image_size"] == 16
        assert metrics["dice"] == pytest.approx(result[regime]["dice"]) and 0.0 <= metrics["dice"] <= 1.0
        split = json.loads((tmp_path / regime / "eval" / f"datalist_{regime}.json").read_text())
        assert len({e["patient"] for e in split["training"]}) == result[regime]["training_cases"]
        tests.append([e["patient"] for e in split["test"]])
    assert tests[0] == tests[1] and len(tests[0]) == 2
