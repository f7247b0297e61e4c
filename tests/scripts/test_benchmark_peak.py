"""Peak GFLOP/s, FLOP counting and hardware fields of the benchmark, in-process, tiny sizes."""

import sys
from pathlib import Path

import pytest
import torch
from common.bundle.peak_benchmark import CPU_FLAGS, benchmark_peak, count_flops, fractions_of_peak, hardware_info

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from benchmark import add_comparisons, comparison_table  # noqa: E402


def test_peak_workflow_returns_positive_rates_with_counted_flops():
    result = benchmark_peak(
        matmul_size=16, conv_channels=4, conv_size=8, conv_batch=2, precisions=("fp32", "bf16"), reps=2, warmup=1
    )
    names = {"fp32_matmul", "fp32_conv", "bf16_matmul", "bf16_conv"}
    assert result["workflow"] == "peak" and set(result["peaks"]) == names and set(result["peak_gflops"]) == names
    assert "bfloat16" in result["bf16_mode"] and result["conv_shape"] == [2, 4, 8, 8]
    for precision in ("fp32", "bf16"):
        assert result["peaks"][f"{precision}_matmul"]["gflop_per_call"] == pytest.approx(2 * 16**3 / 1e9)
        # 2 x N x C_out x H x W x C_in x 3 x 3 (padding 1 keeps 8x8)
        assert result["peaks"][f"{precision}_conv"]["gflop_per_call"] == pytest.approx(2 * 2 * 4 * 64 * 4 * 9 / 1e9)
    for peak in result["peaks"].values():
        assert peak["gflops"] > 0 and len(peak["times_s"]) == 2
        assert peak["gflops"] == pytest.approx(peak["gflop_per_call"] / peak["median_s"])
        assert peak["best_gflops"] == pytest.approx(peak["gflop_per_call"] / min(peak["times_s"]))
    assert result["hardware"]["threads"] == torch.get_num_threads()
    with pytest.raises(ValueError, match="precisions"):
        benchmark_peak(precisions=("fp16",))


@pytest.mark.parametrize("native", [True, False])
def test_peak_default_skips_emulated_bf16(monkeypatch, native):
    import common.bundle.peak_benchmark as peak_benchmark

    monkeypatch.setattr(peak_benchmark, "cpu_has_bf16_instructions", lambda: native)
    result = benchmark_peak(matmul_size=8, conv_channels=2, conv_size=4, reps=1, warmup=0)
    assert set(result["peaks"]) == (
        {"fp32_matmul", "fp32_conv", "bf16_matmul", "bf16_conv"} if native else {"fp32_matmul", "fp32_conv"}
    )
    assert ("skipped" in result) is not native and (
        native or "without bfloat16 instructions" in result["skipped"]["bf16"]
    )


def test_count_flops_of_linear_and_conv_forward_backward_equals_hand_count():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 5)
    x = torch.randn(4, 3, requires_grad=True)
    # forward 2*B*in*out; backward: grad of the input and grad of the weight, 2*B*in*out each (bias: a sum, 0)
    assert count_flops(lambda: linear(x).sum().backward()) == 3 * 2 * 4 * 3 * 5
    conv = torch.nn.Conv2d(2, 3, 3)
    image = torch.randn(1, 2, 6, 6)  # no input gradient: forward and weight gradient only
    per_pass = 2 * 1 * 3 * 4 * 4 * 2 * 3 * 3  # output 4x4
    assert count_flops(lambda: conv(image).sum().backward()) == 2 * per_pass
    with torch.no_grad():
        assert count_flops(lambda: conv(image)) == per_pass


def test_count_flops_through_a_gradient_penalty_double_backward():
    linear = torch.nn.Linear(3, 5, bias=False)
    x = torch.randn(4, 3)

    def penalty_step() -> None:
        x_hat = x.clone().requires_grad_(True)  # a leaf, as the WGAN-GP interpolates
        (grads,) = torch.autograd.grad(linear(x_hat).sum(), x_hat, create_graph=True)
        (grads.norm(2, dim=1) ** 2).mean().backward()

    # forward, input gradient (ones @ W) and, in the second backward, the weight gradient of that product
    assert count_flops(penalty_step) == 3 * 2 * 4 * 3 * 5
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


def test_hardware_info_names_the_cpu_and_its_bf16_paths():
    info = hardware_info("cpu")
    for key in ("cpu", "cpu_flags", "cpu_capability", "amx", "avx512_bf16", "logical_cpus", "usable_cpus", "torch"):
        assert key in info
    assert info["cpu"] and info["torch"] == torch.__version__ and info["threads"] == torch.get_num_threads()
    assert set(info["cpu_flags"]) <= set(CPU_FLAGS) and info["amx"] in (True, False, None)
    assert 1 <= info["usable_cpus"] <= info["logical_cpus"] and "gpu" not in info


def test_comparisons_give_speedups_and_fractions_of_peak():
    def result(name, wall, cpu, gflops):
        return {
            "config_file": [f"{name}.yaml"],
            "step_time_s": {"mean": wall},
            "step_cpu_time_s": {"mean": cpu},
            "step_gflop": gflops * wall,
            "achieved_gflops": gflops,
        }

    results = [result("a", 2.0, 4.0, 10.0), result("b", 1.0, 1.0, 20.0), result("reference", 4.0, 4.0, 5.0)]
    add_comparisons(results, results[-1], {"peak_gflops": {"fp32_conv": 40.0, "bf16_conv": 80.0}})
    assert results[1]["speedup_vs"] == {"first": 2.0, "reference": 4.0}
    assert results[1]["cpu_time_speedup_vs"] == {"first": 4.0, "reference": 4.0}
    assert results[0]["fraction_of_peak"] == {"fp32_conv": 0.25, "bf16_conv": 0.125}
    assert fractions_of_peak(10.0, {"fp32_conv": 0.0}) == {}
    results[1].update(data_time_s={"mean": 0.0525}, data_fraction=0.05)  # the loader's share, when measured
    table = comparison_table(results).splitlines()
    assert len(table) == 4
    assert table[1].startswith("a.yaml | 2.000 | 4.000 | - | - | 1.000 | 2.000 | 20.00 | 10.00 | 25.0%")
    assert table[2].startswith("b.yaml | 1.000 | 1.000 | 0.0525 | 5.0% | 2.000 | 4.000 | 20.00 | 20.00 | 50.0%")
