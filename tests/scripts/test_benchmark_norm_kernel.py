"""scripts/benchmark_norm_kernel.py: a bundle's step with each instance-norm kernel, alternating in one process.
Nothing here asserts a time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from common.bundle.norm_kernel_benchmark import benchmark_norm_kernel

REPO = Path(__file__).resolve().parents[2]
CDA = REPO / "bundles" / "cda_gan" / "configs"


def test_prints_both_kernels_per_round_and_their_ratio(tmp_path):
    files = [str(CDA / "train.yaml"), str(CDA / "variants" / "cyclegan.yaml"), str(CDA / "variants" / "tiny.yaml")]
    out = tmp_path / "norm.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "benchmark_norm_kernel.py"),
            "--config_file",
            json.dumps(files),
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--bundle_root",
            str(tmp_path / "bundle"),
            "--output",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result == json.loads(proc.stdout[proc.stdout.index("{") :])
    # every instance norm of the CycleGAN's generators and PatchGANs is switched (tiny: 2 residual blocks)
    assert set(result["switched_norms"]) == {"gen_n", "gen_p", "disc_n", "disc_p"}
    assert all(v > 0 for v in result["switched_norms"].values())
    times = result["cpu_time_s"]
    assert set(times) == {"group_norm", "instance_norm"} and all(len(v) == 2 and min(v) > 0 for v in times.values())
    ratios = [i / g for g, i in zip(times["group_norm"], times["instance_norm"])]
    assert result["round_ratios"] == pytest.approx(ratios)
    assert result["ratio"] == pytest.approx(result["mean_s"]["instance_norm"] / result["mean_s"]["group_norm"])
    assert result["rounds_faster"] == sum(r > 1 for r in ratios)
    assert result["hardware"]["cpu"] and result["hardware"]["threads"] == 1


def test_a_step_without_switched_norms_is_refused(tmp_path):
    files = [str(CDA / "train.yaml"), str(CDA / "variants" / "cyclegan.yaml"), str(CDA / "variants" / "tiny.yaml")]
    with pytest.raises(ValueError, match="no instance norm by the group-norm kernel"):
        benchmark_norm_kernel(files, rounds=1, conv_algorithm="direct", bundle_root=str(tmp_path / "bundle"))
