import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def run_python(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_benchmark_prints_json_for_config_lists(tmp_path):
    cfg = REPO / "bundles" / "dcgan_wgan" / "configs"
    sets = [[str(cfg / "train.yaml"), str(cfg / "variants" / "tiny.yaml")]]
    sets.append(sets[0][:1] + [str(cfg / "variants" / "wgan.yaml"), str(cfg / "variants" / "tiny.yaml")])
    out_file = tmp_path / "bench.json"
    proc = run_python(
        [
            str(REPO / "scripts" / "benchmark.py"),
            "--config_sets",
            json.dumps(sets),
            "--iterations",
            "2",
            "--warmup",
            "1",
            "--bundle_root",
            str(tmp_path / "bundle"),
            "--output",
            str(out_file),
        ],
        cwd=tmp_path,
    )
    printed = json.loads(proc.stdout[proc.stdout.index("[") :])
    assert printed == json.loads(out_file.read_text())
    assert len(printed) == 2
    for result in printed:
        assert result["device"] == "cpu" and result["batch_size"] == 4
        assert result["step_time_s"]["mean"] > 0 and result["samples_per_s"] > 0
        assert result["peak_memory_mb"] > 0 and result["peak_memory_kind"] == "cpu_process_peak_rss"
        data, step = result["data_time_s"], result["step_time_s"]
        assert result["num_workers"] == 0 and len(data["times"]) == 2 and min(data["times"]) > 0
        assert result["data_fraction"] == sum(data["times"]) / (sum(data["times"]) + sum(step["times"]))
    assert "data %" in proc.stderr


def test_benchmark_rounds_and_reference_cyclegan(tmp_path):
    """--repeats merges the rounds of each configuration; --reference_cyclegan adds the plain CycleGAN; --peak adds
    the measured peaks last, and every step gets its FLOPs, speed-ups and fractions of those peaks."""
    cfg = REPO / "bundles" / "cda_gan" / "configs"
    sets = [[str(cfg / "train.yaml"), str(cfg / "variants" / "cyclegan.yaml"), str(cfg / "variants" / "tiny.yaml")]]
    proc = run_python(
        [
            str(REPO / "scripts" / "benchmark.py"),
            "--config_sets",
            json.dumps(sets),
            "--iterations",
            "2",
            "--warmup",
            "0",
            "--repeats",
            "2",
            "--reference_cyclegan",
            "{'channels': 1, 'image_size': 32, 'num_res_blocks': 1}",
            "--peak",
            "{'matmul_size': 32, 'conv_channels': 8, 'conv_size': 8, 'reps': 1, 'warmup': 0}",
            "--bundle_root",
            str(tmp_path / "bundle"),
        ],
        cwd=tmp_path,
    )
    printed = json.loads(proc.stdout[proc.stdout.index("[") :])
    assert len(printed) == 3
    project, reference, peak = printed
    assert peak["workflow"] == "peak" and peak["rounds"] == 2 and peak["conv_shape"] == [1, 8, 8, 8]
    assert all(len(rates) == 2 and max(rates) > 0 for rates in peak["peak_gflops_rounds"].values())
    assert project["speedup_vs"]["first"] == 1.0 and reference["speedup_vs"]["reference"] == 1.0
    assert project["speedup_vs"]["reference"] == reference["step_time_s"]["mean"] / project["step_time_s"]["mean"]
    for result in (project, reference):
        assert result["step_gflop"] > 0 and result["hardware"]["cpu"] and "amx" in result["hardware"]
        assert result["achieved_gflops"] == result["step_gflop"] / result["step_time_s"]["mean"]
        assert result["achieved_gflops_best"] == result["step_gflop"] / result["step_time_s"]["min"]
        fp32_conv = result["achieved_gflops"] / peak["peak_gflops"]["fp32_conv"]
        assert set(result["fraction_of_peak"]) == set(peak["peak_gflops"])
        assert abs(result["fraction_of_peak"]["fp32_conv"] - fp32_conv) < 1e-12
    assert "reference_cyclegan" in proc.stderr and "speedup vs first" in proc.stderr
    assert project["config_file"] == sets[0] and reference["config_file"].startswith("reference:cyclegan")
    for result in (project, reference):
        assert result["rounds"] == 2 and result["iterations"] == 4 and len(result["step_time_s"]["times"]) == 4
        assert result["step_time_s"]["min"] <= result["step_time_s"]["mean"] and result["device_name"]
        assert len(result["step_cpu_time_s"]["times"]) == 4 and result["step_cpu_time_s"]["mean"] > 0
    assert reference["override"]["image_size"] == "32"
    assert project["precision"]["dtype"] in ("float32", "bfloat16") and project["precision"]["reason"]


def test_benchmark_inference_workflow(tmp_path):
    """--workflow inference times the inference config's benchmark#call: MCGAN synthesis at a batch size and
    whole-volume detection, items per second from the items per call."""
    mcgan = REPO / "bundles" / "mcgan_3d" / "configs"
    detection = REPO / "bundles" / "detection" / "configs"
    sets = [
        [str(mcgan / "inference.yaml"), str(mcgan / "variants" / "tiny.yaml")],
        [str(detection / "inference.yaml"), str(detection / "variants" / "tiny.yaml")],
    ]
    proc = run_python(
        [
            str(REPO / "scripts" / "benchmark.py"),
            "--workflow",
            "inference",
            "--config_sets",
            json.dumps(sets),
            "--iterations",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--benchmark_batch_size",
            "3",
            "--bundle_root",
            str(tmp_path / "bundle"),
        ],
        cwd=tmp_path,
    )
    synthesis, detection_result = json.loads(proc.stdout[proc.stdout.index("[") :])
    assert synthesis["items_per_call"] == 3 and detection_result["items_per_call"] == 1
    for result in (synthesis, detection_result):
        # one round each (rounds are merged as in test_benchmark_rounds_and_reference_cyclegan)
        assert result["workflow"] == "inference" and result["iterations"] == 2
        assert len(result["call_cpu_time_s"]["times"]) == 2
        assert abs(result["items_per_s"] - result["items_per_call"] / result["call_time_s"]["mean"]) < 1e-9
        assert result["peak_memory_mb"] > 0
    # nothing was written: no phantom, no checkpoint is needed for timing
    assert not (tmp_path / "bundle").exists()


def test_data_time_is_timed_apart_from_the_step():
    """Each batch's loading (``prepare``) is timed apart from the step it feeds: a loader that sleeps 30 ms per batch
    gives data times of at least 30 ms and step times without them; the data fraction is data over data + step."""
    sys.path.insert(0, str(REPO / "scripts"))
    from benchmark import _merge, comparison_table
    from common.bundle.benchmark import _time_calls, data_fraction, step_time_summary

    def slow_batch() -> int:
        time.sleep(0.03)
        return 1

    times, cpu_times, data_times, _ = _time_calls(lambda b: time.sleep(0.01 * b), 3, 1, torch.device("cpu"), slow_batch)
    assert len(times) == len(cpu_times) == len(data_times) == 3
    assert min(data_times) >= 0.03 and min(times) >= 0.01
    assert data_fraction([0.1, 0.3], [0.9, 0.7]) == pytest.approx(0.2) and data_fraction([], []) == 0.0
    rounds = [
        {
            "config_file": ["a.yaml"],
            "step_time_s": step_time_summary(step),
            "step_cpu_time_s": step_time_summary(step),
            "data_time_s": step_time_summary(data),
            "peak_memory_mb": 1.0,
        }
        for step, data in (([1.0, 3.0], [0.5, 0.5]), ([2.0], [1.0]))
    ]
    merged = _merge(rounds)
    assert merged["data_time_s"]["times"] == [0.5, 0.5, 1.0] and merged["data_fraction"] == pytest.approx(2 / 8)
    assert "conv_measurements_rounds" not in merged
    # the conv_algorithm: auto choices of every round's process, not only the last one's
    rounds[0]["acceleration"] = {"conv_measurements": [{"algorithm": "winograd", "used": False}]}
    rounds[1]["acceleration"] = {"conv_measurements": [{"algorithm": "winograd", "used": True}]}
    assert [m[0]["used"] for m in _merge(rounds)["conv_measurements_rounds"]] == [False, True]
    assert "settle_steps_rounds" not in merged
    # each round's settling steps and the rechecks still pending after them
    rounds[0].update(settle_steps=3, pending_rechecks=0)
    rounds[1].update(settle_steps=8, pending_rechecks=2)
    merged_settling = _merge(rounds)
    assert merged_settling["settle_steps_rounds"] == [3, 8] and merged_settling["pending_rechecks_rounds"] == [0, 2]
    assert "| 25.0% |" in comparison_table([merged])


@pytest.mark.parametrize("variants", [["tiny.yaml"], ["cyclegan.yaml", "tiny.yaml"]])
def test_benchmark_inference_of_cda_gan_translates_a_batch(tmp_path, variants):
    """cda_gan's inference config times the P -> N translation (G_N with its attention network, or the plain
    CycleGAN's generator): one image per item, nothing written."""
    from common.bundle.benchmark import benchmark_inference

    cfg = REPO / "bundles" / "cda_gan" / "configs"
    files = [str(cfg / "inference.yaml"), *(str(cfg / "variants" / v) for v in variants)]
    result = benchmark_inference(files, iterations=2, warmup=1, benchmark_batch_size=2, bundle_root=str(tmp_path / "b"))
    assert result["items_per_call"] == 2 and len(result["call_time_s"]["times"]) == 2
    assert result["items_per_s"] > 0
    # the tiny generators' 7x7 output layers (4 -> 4 channels) are kn2row-capable: measured without gradients
    measured = result["acceleration"]["conv_measurements"]
    assert any(m["algorithm"] == "kn2row" and m["weight"][2:] == [7, 7] and not m["trained"] for m in measured)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "states, limit, made",
    [
        ([(2, 3), (2, 5), (1, 6), (0, 0)], 8, 3),  # until no recheck is pending
        ([(1, 4), (1, 4)], 8, 1),  # a call that advances nothing (compiled networks): stop
        ([(1, 1), (1, 2), (1, 3), (1, 4)], 2, 2),  # at most `limit` calls
        ([(0, 0)], 8, 0),  # nothing pending: no call
    ],
)
def test_warm_up_settles_pending_rechecks_before_timing(monkeypatch, states, limit, made):
    """After the warm-up, untimed calls go on while `conv_algorithm: auto` waits for rechecks, so that the timed calls
    run the choices a training keeps; the timed calls are still `iterations` and come after the settling."""
    from common.bundle import benchmark

    sequence = iter(states)
    monkeypatch.setattr(benchmark, "recheck_state", lambda: next(sequence, states[-1]))
    order: list[str] = []
    times, _, _, settled = benchmark._time_calls(
        lambda label: order.append(label), 2, 1, torch.device("cpu"), lambda: "call", settle=limit
    )
    assert settled == made and len(times) == 2
    assert order == ["call"] * (1 + made + 2)
