"""The fp32-vs-policy comparison: its maths on hand-made curves, and one tiny run of the DCGAN bundle."""

import json
import math
import sys
from pathlib import Path

import pytest
from common.bundle.precision_comparison import (
    agreement_iterations,
    compare_runs,
    curve_deviation,
    ema,
    first_iteration_deviation,
    merge_comparisons,
    parse_policy,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import compare_precision  # noqa: E402


def _run(policy, seed, losses, fid=None, start="s"):
    run = {"policy": policy, "seed": seed, "losses": losses, "start": {"weights_sha256": f"{start}{seed}"}}
    if fid is not None:
        run["fid"] = fid
    return run


def test_parse_policy_reads_the_runs_own_overrides():
    assert parse_policy("auto") == ("auto", {})
    assert parse_policy("float32 conv_algorithm=winograd image_size=64 betas=[0.5,0.9]") == (
        "float32",
        {"conv_algorithm": "winograd", "image_size": 64, "betas": [0.5, 0.9]},
    )
    with pytest.raises(ValueError, match="key=value"):
        parse_policy("float32 winograd")


def test_ema_skips_missing_values():
    assert ema([1.0, None, 3.0, 5.0], beta=0.5) == [1.0, None, 2.0, 3.5]
    assert ema([2.0, 2.0], beta=0.0) == [2.0, 2.0]
    with pytest.raises(ValueError):
        ema([1.0], beta=1.0)


def test_curve_deviation_is_relative_to_the_smoothed_reference():
    ref = [1.0] * 10
    assert curve_deviation(ref, ref) == 0.0
    # a 50 % jump at the last iteration moves the EMA (beta 0.9) by 0.05; eps = 0.1 * mean |EMA| = 0.1
    assert curve_deviation(ref[:-1] + [1.5], ref) == pytest.approx(0.05 / 1.1)
    # a loss near zero is measured on its own scale, not divided by ~0
    assert curve_deviation([0.0, 1e-3], [0.0, 0.0]) == pytest.approx(1e-4 / 1e-8)
    assert curve_deviation([None, None], [1.0, 1.0]) is None
    # the smoothed curves agree within 10 % for 11 iterations (1 after the jump), then the jump takes them apart
    drifted = [1.0] * 10 + [1.6] * 10
    assert agreement_iterations(drifted, ref + ref, 0.1) == 11
    assert agreement_iterations(ref, ref, 0.1) == 10
    assert first_iteration_deviation([1.01, 5.0], [1.0, 1.0]) == pytest.approx(0.01 / 1.1)
    # the first logged value of a loss logged every second iteration
    assert first_iteration_deviation([None, 2.2], [None, 2.0]) == pytest.approx(0.2 / 2.2)


def test_compare_runs_flags_a_tolerance_violation_and_passes_equal_curves():
    flat = [1.0] * 20
    drifted = [1.0] * 10 + [1.6] * 10  # the smoothed curve ends about 39 % above the reference
    runs = [
        _run("float32", 0, {"a": flat, "b": flat}, fid=10.0),
        _run("float32", 1, {"a": [1.02] * 20, "b": flat}, fid=11.0),
        _run("auto", 0, {"a": flat, "b": drifted}, fid=10.5),
        _run("auto", 1, {"a": [1.02] * 20, "b": flat}, fid=11.0),
    ]
    out = compare_runs(runs, tolerance=0.1)
    res = out["policies"]["auto"]
    assert out["seed_noise"]["a"] == pytest.approx((0.02 / 1.1 + 0.02 / 1.122) / 2)  # mean of both directions
    assert out["seed_noise"]["b"] == 0.0
    assert res["curves"]["a"]["deviation"] == 0.0 and res["curves"]["a"]["pass"] is True
    b = res["curves"]["b"]
    assert b["per_seed"]["1"] == 0.0 and b["deviation"] > 0.3 and b["agreement_iterations"] == 11
    assert b["within_tolerance"] is False and b["pass"] is False
    assert res["first_iteration"]["b"]["pass"] is True
    assert res["identical_start"] == {"0": True, "1": True}
    assert res["fid"]["difference"] == pytest.approx(0.25) and res["fid"]["noise"] == pytest.approx(1.0)
    assert res["fid"]["pass"] is True
    assert res["pass"] is False
    # the same runs without the drift pass; a worse FID beyond the seed spread fails
    runs[2] = _run("auto", 0, {"a": flat, "b": flat}, fid=12.5)
    res = compare_runs(runs, tolerance=0.1)["policies"]["auto"]
    assert all(c["pass"] for c in res["curves"].values())
    assert res["fid"]["difference"] == pytest.approx(1.25) and res["fid"]["pass"] is False
    # beyond the fixed tolerance but within the seed noise: a pass
    half = [1.0] * 10 + [1.3] * 10  # half the drift between the two float32 seeds
    res = compare_runs(
        [_run("float32", 0, {"a": flat}), _run("float32", 1, {"a": drifted}), _run("auto", 0, {"a": half})]
    )
    assert res["policies"]["auto"]["curves"]["a"]["within_tolerance"] is False
    assert res["policies"]["auto"]["curves"]["a"]["within_seed_noise"] is True
    assert res["policies"]["auto"]["curves"]["a"]["pass"] is True


def test_compare_runs_reports_a_different_start():
    runs = [_run("float32", 0, {"a": [1.0]}), _run("bfloat16", 0, {"a": [1.0]}, start="other")]
    res = compare_runs(runs)["policies"]["bfloat16"]
    assert res["identical_start"] == {"0": False} and res["pass"] is False
    with pytest.raises(ValueError, match="reference"):
        compare_runs([_run("auto", 0, {"a": [1.0]})])


def test_merge_comparisons_compares_the_runs_of_separate_commands():
    def result(seed, fid):
        runs = [_run("float32", seed, {"a": [1.0, 1.0]}, fid=fid), _run("auto", seed, {"a": [1.0, 1.0]}, fid=fid)]
        return {"config_file": ["t.yaml"], "override": {}, "iterations": 2, "seeds": [seed], "runs": runs}

    merged = merge_comparisons([result(0, 10.0), result(1, 12.0)])
    assert merged["seeds"] == [0, 1] and merged["merged"] == 2 and len(merged["runs"]) == 4
    assert merged["comparison"]["fid_noise"] == pytest.approx(2.0)
    assert merged["comparison"]["policies"]["auto"]["fid"]["pass"] is True
    assert len(merge_comparisons([result(0, 10.0), result(0, 10.0)])["runs"]) == 2  # an equal rerun, kept once
    changed = result(0, 10.0)
    changed["runs"][1]["losses"] = {"a": [1.0, 2.0]}
    with pytest.raises(ValueError, match="repeated"):
        merge_comparisons([result(0, 10.0), changed])
    other = dict(result(1, 10.0), iterations=3)
    with pytest.raises(ValueError, match="iterations"):
        merge_comparisons([result(0, 10.0), other])


@pytest.mark.slow
def test_tiny_dcgan_float32_vs_bfloat16(tmp_path, capsys):
    cfg = REPO / "bundles" / "dcgan_wgan" / "configs"
    output = tmp_path / "precision.json"
    compare_precision.main(
        config_file=[str(cfg / "train.yaml"), str(cfg / "variants" / "tiny.yaml")],
        iterations=2,
        seeds=[0],
        policies=["float32", "bfloat16", "float32 learning_rate=0.5"],
        fid_samples=8,
        perturb_control=2**-9,
        output=str(output),
        bundle_root=str(tmp_path / "bundle"),
    )
    captured = capsys.readouterr()
    result = json.loads(output.read_text())
    assert json.loads(captured.out) == result
    assert "loss_d" in captured.err and "bfloat16" in captured.err
    fp32, bf16, fast, control = result["runs"]
    assert (fp32["policy"], bf16["policy"], control["policy"]) == ("float32", "bfloat16", "float32+perturbed")
    # a policy's own config override: the same start and precision, another learning rate from iteration 2 on
    assert fast["policy"] == "float32 learning_rate=0.5" and fast["start"] == fp32["start"]
    assert fast["precision"] == fp32["precision"] and fast["losses"]["loss_d"][0] == fp32["losses"]["loss_d"][0]
    assert fast["losses"]["loss_g"][1] != fp32["losses"]["loss_g"][1]
    assert fp32["acceleration"]["conv_algorithm"] == "auto"  # the bundle's default, recorded with every run
    switched = fp32["acceleration"]["switched_convolutions"]
    assert set(switched) == {"winograd", "kn2row"}  # auto, fp32 on a CPU: both measured where eligible
    assert all(set(v.values()) <= {0} for v in switched.values())  # the DCGAN has no stride-1 convolution
    assert control["start"] == fp32["start"] and control["perturb"] == 2**-9
    assert control["precision"]["dtype"] == "float32" and control["losses"] != fp32["losses"]
    assert fp32["precision"]["dtype"] == "float32" and bf16["precision"]["dtype"] == "bfloat16"
    # identical starts: weights, RNG state before the first iteration and the first real batch
    assert fp32["start"] == bf16["start"]
    assert set(fp32["start"]) == {"weights_sha256", "rng_sha256", "first_batch_sha256"}
    assert fp32["real_images_sha256"] == bf16["real_images_sha256"]
    assert sorted(fp32["losses"]) == ["loss_d", "loss_g"] and all(len(v) == 2 for v in fp32["losses"].values())
    # the first discriminator loss comes from identical weights and inputs: equal to bf16 rounding
    assert bf16["losses"]["loss_d"][0] == pytest.approx(fp32["losses"]["loss_d"][0], rel=2**-6)
    assert bf16["losses"]["loss_d"][0] != fp32["losses"]["loss_d"][0]  # but really computed in bf16
    for run in result["runs"]:
        assert math.isfinite(run["fid"]) and run["fid_samples"] == 8
        assert run["feature_extractor"].startswith("fallback:random-init-resnet18-2d-seed0")
    comparison = result["comparison"]["policies"]["bfloat16"]
    assert comparison["identical_start"] == {"0": True}
    assert set(comparison["curves"]) == {"loss_d", "loss_g"}
    assert comparison["fid"]["noise"] is None and comparison["fid"]["pass"] is None
    assert result["comparison"]["settings"]["ema_beta"] == 0.9
