"""The 3D MCGAN realism evaluation (``common.evaluation.evaluate_mcgan``): the held-out real nodules regenerated in
place and scored against the real ones, beside a real-vs-real reference (``reference_sections``)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from common.evaluation.generative import REFERENCE_KEYS
from common.evaluation.mcgan import evaluate_mcgan

SHAPE = (24, 24, 24)
BOXES = [[4, 5, 5, 9, 10, 10], [15, 12, 11, 21, 18, 18]]
CONDITIONS = [("small", "solid"), ("large", "ground-glass")]


class Constant(torch.nn.Module):
    """A stand-in generator: a constant 0.5 (in ``[-1, 1]``) everywhere in the VOI."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 0 + 0.5


class Moments(torch.nn.Module):
    """A small named feature extractor: mean, std, min and max of each crop ``(B, 1, *s) -> (B, 4)``."""

    name = "test-moments"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return torch.stack([flat.mean(1), flat.std(1), flat.amin(1), flat.amax(1)], 1)


def _datalist(tmp_path, sections: dict[str, list[float]]) -> str:
    """One 24^3 volume per (section, nodule HU) with two nodules of that HU; the same volumes for equal HU lists."""
    data = {}
    for section, values in sections.items():
        data[section] = []
        for i, hu in enumerate(values):
            v = np.full(SHAPE, -850.0, dtype=np.float32)
            v[:, :, [0, -1]] = -1000.0
            for b in BOXES:
                v[b[0] + 1 : b[3] - 1, b[1] + 1 : b[4] - 1, b[2] + 1 : b[5] - 1] = hu
                v[b[0] + 2, b[1] + 2, b[2] + 2] = hu + 100.0  # not flat, so that the crops' std is not 0
            name = f"{section}_{i}.nii.gz"
            nib.save(nib.Nifti1Image(v, np.eye(4)), str(tmp_path / name))
            entry = {"image": name, "box": BOXES, "size": [c[0] for c in CONDITIONS]}
            entry["attenuation"] = [c[1] for c in CONDITIONS]
            data[section].append(entry)
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(data))
    return str(path)


def _evaluate(tmp_path, datalist, **kwargs):
    return evaluate_mcgan(
        Constant(),
        datalist,
        tmp_path / "eval",
        sections=["test"],
        feature_extractor=Moments(),
        kid_subsets=5,
        voi_size=16,
        nodule_size=8,
        **kwargs,
    )


def test_reference_of_the_same_real_nodules_scores_zero_and_the_generated_ones_do_not(tmp_path):
    datalist = _datalist(tmp_path, {"training": [-100.0, 40.0], "test": [-100.0, 40.0]})
    result = _evaluate(tmp_path, datalist, reference_sections=["training"])
    assert set(REFERENCE_KEYS) <= set(result)
    assert result["num_reference"] == 4 and result["num_nodules"] == 4
    assert result["reference_sections"] == ["training"]
    assert result["fid_reference"] == pytest.approx(0.0, abs=1e-6)
    assert result["fid"] > 1.0  # a constant nodule is far from the real ones
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["fid_reference"] == pytest.approx(result["fid_reference"])
    assert written["feature_extractor"] == "test-moments"


def test_reference_grows_with_the_difference_between_the_real_sets(tmp_path):
    near = _evaluate(
        tmp_path,
        _datalist(tmp_path, {"training": [-90.0, 50.0], "test": [-100.0, 40.0]}),
        reference_sections=["training"],
    )
    far = _evaluate(
        tmp_path,
        _datalist(tmp_path, {"training": [300.0, 400.0], "test": [-100.0, 40.0]}),
        reference_sections=["training"],
    )
    assert 0.0 < near["fid_reference"] < far["fid_reference"]
    assert near["fid"] == pytest.approx(far["fid"])  # the generated set and the evaluated real set did not change


def test_no_reference_by_default_and_overlapping_sections_are_refused(tmp_path):
    datalist = _datalist(tmp_path, {"training": [-100.0, 40.0], "test": [-100.0, 40.0]})
    assert not set(REFERENCE_KEYS) & set(_evaluate(tmp_path, datalist))
    with pytest.raises(ValueError, match="overlap"):
        _evaluate(tmp_path, datalist, reference_sections=["test"])
    with pytest.raises(ValueError, match="reference sections"):
        _evaluate(tmp_path, _datalist(tmp_path, {"training": [], "test": [-100.0]}), reference_sections=["training"])
