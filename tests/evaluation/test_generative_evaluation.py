"""End-to-end tests of the generative evaluation runner."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F
from common.evaluation import REFERENCE_KEYS, RESULT_KEYS, GenerativeEvaluation, format_table
from monai.data import DataLoader, Dataset


def _loader(n: int, seed: int, size: int, spatial_dims: int, noise: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    if noise:
        images = torch.rand(n, 1, *([size] * spatial_dims), generator=g)
    else:
        low = torch.rand(n, 1, *([4] * spatial_dims), generator=g)
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        images = F.interpolate(low, size=(size,) * spatial_dims, mode=mode, align_corners=False)
    return DataLoader(Dataset([{"image": img, "id": i} for i, img in enumerate(images)]), batch_size=4)


@pytest.mark.parametrize("spatial_dims,size", [(2, 24), (3, 12)])
def test_generative_evaluation_end_to_end(tmp_path, caplog, spatial_dims, size):
    out = tmp_path / "reports" / "nested" / "metrics.json"
    evaluation = GenerativeEvaluation(
        real_loader=_loader(10, 0, size, spatial_dims),
        fake_loader=_loader(7, 1, size, spatial_dims, noise=True),
        spatial_dims=spatial_dims,
        in_channels=1,
        output_file=str(out),
        arch="resnet10",
        input_size=16,
        kid_subsets=5,
        kid_subset_size=6,
        diversity_pairs=8,
        extra={"run": "unit-test", "epoch": 3},
    )
    with caplog.at_level(logging.INFO, logger="common.evaluation"):
        results = evaluation.run()

    written = json.loads(out.read_text())
    assert not (tmp_path / "reports" / "nested" / "metrics.json.tmp").exists()
    assert set(RESULT_KEYS) <= set(written) and written["run"] == "unit-test" and written["epoch"] == 3
    assert written == json.loads(json.dumps(results))
    assert written["num_real"] == 10 and written["num_fake"] == 7 and written["feature_dim"] == 512
    assert written["feature_extractor"].startswith(f"fallback:random-init-resnet10-{spatial_dims}d-seed0")
    assert written["spatial_dims"] == spatial_dims and written["diversity_metric"] == "ssim"
    for key in ("fid", "kid_mean", "kid_std", "mmd", "ssim_diversity_fake", "ssim_diversity_real"):
        assert isinstance(written[key], float)
    assert written["fid"] > 0 and written["kid_std"] >= 0 and written["mmd"] == written["mmd"]
    # independent noise is far more diverse (lower SSIM) than the smooth real images
    assert written["ssim_diversity_fake"] < written["ssim_diversity_real"]

    printed = caplog.text  # the table is logged (the bundle runner's logging.conf shows it on stdout)
    assert "metric" in printed and "| value" in printed
    assert "fallback:random-init" in printed and "unit-test" in printed
    assert any("fid" in r.getMessage() for r in caplog.records)


def test_generative_evaluation_resizes_fake_for_mmd_and_accepts_tensors(tmp_path):
    real = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    fake = torch.rand(5, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    results = GenerativeEvaluation(
        real, fake, 2, 1, str(tmp_path / "m.json"), arch="resnet10", input_size=16, kid_subsets=2, diversity_pairs=3
    ).run()
    assert results["num_fake"] == 5 and (tmp_path / "m.json").exists()


def test_extra_keys_must_not_clash(tmp_path):
    with pytest.raises(ValueError, match="clash"):
        GenerativeEvaluation(
            torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), 2, 1, str(tmp_path / "x.json"), extra={"fid": 0}
        )


def test_format_table_alignment():
    table = format_table({"fid": 1.23456789, "kid_mean": 0.5, "name": "x", "nested": {"a": 1}, "n": 3})
    lines = table.splitlines()
    assert lines[0].startswith("metric") and set(lines[1]) <= {"-", "+"}
    assert len({line.index("|") for line in lines if "|" in line}) == 1
    assert "1.23457" in table and '{"a": 1}' in table


def test_reference_set_is_scored_like_the_synthetic_one(tmp_path):
    """A reference set equal to the synthetic one scores exactly what the synthetic set scores; a set from the real
    distribution scores nearer the real images than noise does; without a reference no reference key is written."""
    real = _loader(12, 0, 24, 2)
    noise = _loader(12, 1, 24, 2, noise=True)
    settings = dict(arch="resnet10", input_size=16, kid_subsets=5, kid_subset_size=8, diversity_pairs=4)
    same = GenerativeEvaluation(real, noise, 2, 1, str(tmp_path / "a.json"), reference_loader=noise, **settings).run()
    assert set(REFERENCE_KEYS) <= set(same) and same["num_reference"] == 12
    assert same["fid_reference"] == pytest.approx(same["fid"]) and same["kid_reference_mean"] == same["kid_mean"]
    like_real = _loader(12, 2, 24, 2)
    other = GenerativeEvaluation(real, noise, 2, 1, str(tmp_path / "b.json"), reference_loader=like_real, **settings)
    scored = other.run()
    assert scored["fid_reference"] < scored["fid"] and scored["kid_reference_mean"] < scored["kid_mean"]
    plain = GenerativeEvaluation(real, noise, 2, 1, str(tmp_path / "c.json"), **settings).run()
    assert not set(REFERENCE_KEYS) & set(plain) and plain["fid"] == pytest.approx(scored["fid"])
    with pytest.raises(ValueError, match="clash"):
        GenerativeEvaluation(real, noise, 2, 1, str(tmp_path / "d.json"), extra={"fid_reference": 0})
