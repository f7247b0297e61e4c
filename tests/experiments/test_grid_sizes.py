"""The phantom grids that report Friedman/Nemenyi over seeds run 5 seeds on a fixed held-out test set of at least 40
patients; the tests that plan or run them take fewer seeds by setting ``seeds`` on the parsed grid."""

from pathlib import Path

import pytest
from common.data.splits import split_counts
from common.experiments import load_grid

REPO = Path(__file__).resolve().parents[2]
GRIDS = [
    "phantom_classification.yaml",
    "phantom_segmentation.yaml",
    "thesis_classification_table2.yaml",
    "phantom_ga_unet_table2.yaml",
    "phantom_ga_unet_table3.yaml",
    "phantom_classification_calibrated.yaml",
    "phantom_classification_calibrated_gan.yaml",
    "phantom_segmentation_calibrated.yaml",
    "phantom_segmentation_calibrated_gan.yaml",
    "phantom_ga_unet_calibrated.yaml",
    "phantom_stylegan2_calibrated.yaml",
    "phantom_classification_calibrated_table7.yaml",
]
MIN_TEST_PATIENTS = 40


def _phantom_args(spec) -> dict:
    args = spec.overrides["phantom_args"]
    return spec.vars["phantom_args"] if args == "${vars.phantom_args}" else args


@pytest.mark.parametrize("name", GRIDS)
def test_five_seeds_and_a_large_fixed_test_set(name):
    spec = load_grid(REPO / "scripts" / "experiments" / name, root=REPO)
    assert spec.blocks == "seeds" and spec.seeds == [0, 1, 2, 3, 4]
    args = _phantom_args(spec)
    per_class = args["num_patients"] // 2  # positive_fraction 0.5, the split is stratified by class
    assert args["positive_fraction"] == 0.5 and args["num_patients"] % 2 == 0
    train, val, test = split_counts(per_class, args["split_fractions"])
    assert 2 * test >= MIN_TEST_PATIENTS and train >= 1 and val >= 1
    # the grid's generators, if any, make the same phantom (the same test patients for every run)
    for g in spec.generators.values():
        if "phantom_args" in g.overrides:
            assert g.overrides["phantom_args"] in ("${vars.phantom_args}", args)
