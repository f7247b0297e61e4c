"""The precision policy (``amp: auto``): per-device resolution, the step's autocast, checkpoints, the run summary.

The capability queries (AMX, the measured bf16 speed of a CPU without AMX, CUDA bf16) are monkeypatched both ways,
so the tests give the same answers on any machine; nothing here asserts a time.
"""

import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from common.engines import (
    CheckpointHandler,
    GANStep,
    PrecisionPolicy,
    ResumeHandler,
    StepTrainer,
    TrainingStep,
    latest_checkpoint,
    precision,
    resolve_precision,
)
from common.handlers import RunSummaryHandler
from common.losses import AdversarialLoss, gradient_penalty
from common.networks import DCGANDiscriminator, DCGANGenerator
from common.utils import cpu as cpu_utils
from training_runs import build

from tests.gloo import run_ranks

LATENT = 8
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def amx(monkeypatch):
    """Set whether the CPU reports AMX and what the bf16 probe measures: ``amx(True)``, ``amx(False, 1.9)``.

    Without AMX the probe's answer defaults to 0.7 (bf16 slower), as on the CPUs where fp32 is the right choice.
    """

    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)  # the suite's conftest sets it: measure here

    def _set(flag: bool, bf16_speedup: float = 0.7) -> None:
        monkeypatch.setattr(precision, "cpu_has_amx", lambda: flag)
        monkeypatch.setattr(precision, "cpu_has_bf16_instructions", lambda: True)  # measured, on any machine
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: bf16_speedup)

    return _set


@pytest.fixture
def cuda_bf16(monkeypatch):
    """Set whether the CUDA device computes bf16 natively (the emulation argument must be off)."""

    def _set(flag: bool) -> None:
        def query(including_emulation: bool = True) -> bool:
            assert including_emulation is False  # emulated bf16 is slow: never counts as support
            return flag

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", query)

    return _set


# ---------------------------------------------------------------------- resolution
def test_auto_on_cpu_is_bf16_only_with_amx(amx):
    amx(True)
    on = resolve_precision("auto", "cpu")
    assert (on.enabled, on.dtype, on.grad_scaling, on.reason) == (True, torch.bfloat16, False, "CPU with AMX")
    assert on.describe() == "bfloat16 autocast (CPU with AMX)"
    amx(False)
    off = resolve_precision("AUTO", torch.device("cpu"))
    assert (off.enabled, off.dtype, off.grad_scaling) == (False, None, False)
    assert off.reason == "CPU without AMX, bfloat16 convolutions measured at 0.70x the float32 speed (below 1.2x)"
    assert off.name == "float32"
    assert off.as_dict() == {"enabled": False, "dtype": "float32", "grad_scaling": False, "reason": off.reason}


@pytest.mark.parametrize("speedup, bf16", [(0.5, False), (1.19, False), (1.2, True), (1.9, True)])
def test_auto_on_cpu_without_amx_follows_the_measured_bf16_speed(amx, speedup, bf16):
    """AVX-512-BF16 without AMX is faster than fp32 on some CPUs and slower on others: the probe decides."""
    amx(False, speedup)
    policy = resolve_precision("auto", "cpu")
    assert (policy.enabled, policy.dtype, policy.grad_scaling) == (bf16, torch.bfloat16 if bf16 else None, False)
    assert policy.reason.startswith(f"CPU without AMX, bfloat16 convolutions measured at {speedup:.2f}x")
    amx(True, 0.5)  # AMX is enough: the probe is not asked
    assert resolve_precision("auto", "cpu").reason == "CPU with AMX"


@pytest.mark.parametrize("value, bf16", [("0", False), ("off", False), ("1", True), ("TRUE", True)])
def test_the_environment_variable_replaces_the_probe(amx, monkeypatch, value, bf16):
    amx(False, 1.9)
    monkeypatch.setenv(precision.CPU_BF16_ENV, value)
    policy = resolve_precision("auto", "cpu")
    assert (policy.enabled, policy.dtype) == (bf16, torch.bfloat16 if bf16 else None)
    assert policy.reason == f"CPU without AMX, GDA_CPU_BF16={value.lower()}"
    amx(True)  # AMX decides alone
    assert resolve_precision("auto", "cpu").reason == "CPU with AMX"
    amx(False, 0.5)
    monkeypatch.setenv(precision.CPU_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match="GDA_CPU_BF16 must be 0 or 1"):
        resolve_precision("auto", "cpu")


def test_bf16_probe_measures_without_touching_the_global_random_state(monkeypatch):
    precision.cpu_bf16_speedup.cache_clear()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    speedup = precision.cpu_bf16_speedup(channels=8, size=8, repeats=2)
    assert torch.equal(torch.get_rng_state(), state)  # a run's initial weights do not depend on the probe
    assert math.isfinite(speedup) and speedup > 0
    # timed as fp32 over bf16: a bf16 pass that takes twice as long reads 0.5
    clock = iter([0.0, 1.0, 0.0, 2.0] * 4)
    monkeypatch.setattr(precision, "perf_counter", lambda: next(clock))
    precision.cpu_bf16_speedup.cache_clear()
    assert precision.cpu_bf16_speedup(channels=4, size=4, repeats=1) == pytest.approx(0.5)
    precision.cpu_bf16_speedup.cache_clear()


def _counting_clock(readings: list[float], ticks: list[int]):
    """A stand-in for ``perf_counter`` that returns ``readings`` in turn (repeated) and counts its calls."""
    times = iter(readings * 20)

    def clock() -> float:
        ticks.append(1)
        return next(times)

    return clock


def test_bf16_probe_gives_up_where_bf16_is_far_slower(monkeypatch):
    """Where bf16 is emulated (0.02x on an AVX2 CPU) nine rounds would take many seconds: one round decides."""
    ticks = []
    monkeypatch.setattr(precision, "perf_counter", _counting_clock([0.0, 1.0, 0.0, 10.0], ticks))
    precision.cpu_bf16_speedup.cache_clear()
    assert precision.cpu_bf16_speedup(channels=4, size=4, repeats=9) == pytest.approx(0.1)
    assert len(ticks) == 2 * (2 + 2)  # the warm-up pair and one timed round, two clock reads per pass
    ticks.clear()
    monkeypatch.setattr(precision, "perf_counter", _counting_clock([0.0, 1.0, 0.0, 2.5], ticks))
    precision.cpu_bf16_speedup.cache_clear()
    assert precision.cpu_bf16_speedup(channels=4, size=4, repeats=3) == pytest.approx(0.4)
    assert len(ticks) == 2 * (2 + 2 * 3)  # 0.4x is not far enough below 1.2x to stop: every round
    precision.cpu_bf16_speedup.cache_clear()


@pytest.mark.parametrize(
    "text, native",
    [
        ("flags\t\t: fpu sse sse2 avx avx2 fma\n", False),  # AVX2 only (e.g. AMD EPYC family 25): emulated bf16
        ("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n", True),
        ("flags\t\t: fpu sse2 avx2 avx_vnni avx_ne_convert\n", True),
        ("flags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n", True),
        ("Features\t: fp asimd bf16\n", True),  # not an x86 flags line: the probe decides
        (None, True),  # unreadable
    ],
)
def test_bf16_instructions_from_the_cpu_flags(monkeypatch, tmp_path, text, native):
    info = tmp_path / "cpuinfo"
    if text is not None:
        info.write_text("processor\t: 0\n" + text)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(cpu_utils, "CPUINFO", str(info))
    precision.cpu_has_bf16_instructions.cache_clear()
    try:
        assert precision.cpu_has_bf16_instructions() is native
    finally:
        precision.cpu_has_bf16_instructions.cache_clear()


def test_auto_without_bf16_instructions_is_fp32_without_measuring(amx, monkeypatch):
    amx(False)
    monkeypatch.setattr(precision, "cpu_has_bf16_instructions", lambda: False)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: pytest.fail("the probe ran"))
    policy = resolve_precision("auto", "cpu")
    assert (policy.enabled, policy.dtype, policy.grad_scaling) == (False, None, False)
    assert policy.reason == "CPU without AMX or bfloat16 instructions (cpuinfo flags)"
    monkeypatch.setenv(precision.CPU_BF16_ENV, "1")  # the variable still overrides
    assert resolve_precision("auto", "cpu").dtype == torch.bfloat16


def _slowest_rank_worker(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        precision.cpu_has_amx = lambda: False
        precision.cpu_has_bf16_instructions = lambda: True
        precision.cpu_bf16_speedup = lambda: [1.9, 1.1][rank]
        os.environ.pop(precision.CPU_BF16_ENV, None)
        if rank == 0:  # one rank alone (e.g. an evaluation handler): its own measurement, no collective to wait for
            results.put(("alone", resolve_precision("auto", "cpu").enabled))
        dist.barrier()
        results.put((rank, precision._slowest_rank([1.9, 1.1][rank])))
        results.put((f"step{rank}", _step("auto").precision.enabled))  # a step resolves across the ranks
        # a mixed group: AMX on rank 0, no bf16 instructions on rank 1; both decide without a probe, yet join the
        # minimum (a rank that returned early would leave the other waiting in its all_reduce forever)
        precision.cpu_has_amx = lambda: rank == 0
        precision.cpu_has_bf16_instructions = lambda: rank == 0
        precision.cpu_bf16_speedup = lambda: pytest.fail("the probe ran")
        mixed = _step("auto").precision
        results.put((f"mixed{rank}", (mixed.enabled, mixed.reason)))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_on_the_slowest_measurement():
    """Two gloo ranks measuring 1.9x and 1.1x both use 1.1x in a training step, so both train in fp32; a policy
    resolved on one rank alone keeps that rank's own measurement (no collective that would wait forever)."""
    assert precision._slowest_rank(1.9) == 1.9  # no process group: its own value
    got = dict(run_ranks(_slowest_rank_worker, 7))
    assert got == {
        "alone": True,
        0: pytest.approx(1.1),
        1: pytest.approx(1.1),
        "step0": False,
        "step1": False,
        "mixed0": (False, "CPU with AMX; another rank: bfloat16 ruled out"),
        "mixed1": (False, "CPU without AMX or bfloat16 instructions (cpuinfo flags)"),
    }


def test_auto_on_cuda_bf16_or_fp16_with_scaling(cuda_bf16):
    cuda_bf16(True)
    bf16 = resolve_precision("auto", "cuda:0")
    assert (bf16.enabled, bf16.dtype, bf16.grad_scaling) == (True, torch.bfloat16, False)
    cuda_bf16(False)
    fp16 = resolve_precision("auto", "cuda")
    assert (fp16.enabled, fp16.dtype, fp16.grad_scaling) == (True, torch.float16, True)
    assert fp16.describe() == "float16 autocast with gradient scaling (CUDA device without bfloat16 support)"


def test_auto_on_other_devices_is_fp32(amx, cuda_bf16):
    amx(True)
    cuda_bf16(True)
    policy = resolve_precision("auto", "mps")
    assert (policy.enabled, policy.dtype, policy.grad_scaling) == (False, None, False)
    assert "mps" in policy.reason


def test_explicit_values_override_the_device(amx):
    amx(False)  # true / a dtype name autocast even where auto would not
    assert resolve_precision(True, "cpu").dtype == torch.bfloat16
    assert resolve_precision(True, "cpu", "float16") == PrecisionPolicy(
        True, torch.float16, False, "amp: true, float16"
    )
    assert resolve_precision("true", "cpu", "fp16").dtype == torch.float16
    scaled = resolve_precision(True, "cuda", "float16")
    assert scaled.grad_scaling and scaled.dtype == torch.float16
    assert resolve_precision("bfloat16", "cpu").dtype == torch.bfloat16
    assert resolve_precision("bf16", "cpu", "float16").dtype == torch.bfloat16  # amp_dtype only for amp=True
    assert resolve_precision("float16", "cuda").grad_scaling
    assert not resolve_precision("float16", "cpu").grad_scaling  # fp16 scaling on CUDA only
    amx(True)
    for value in (False, "false", "float32", "FP32"):
        policy = resolve_precision(value, "cpu")
        assert (policy.enabled, policy.dtype, policy.grad_scaling) == (False, None, False), value


@pytest.mark.parametrize("value", ["half", "yes", "", 1, None, 0.5])
def test_invalid_amp_values_raise_a_clear_value_error(value):
    with pytest.raises(ValueError, match=r"amp must be 'auto', true, false or a dtype name"):
        resolve_precision(value, "cpu")
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        resolve_precision(True, "cpu", "float64")


def test_amx_detection_asks_torch_then_cpuinfo(monkeypatch, tmp_path):
    precision.cpu_has_amx.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert precision.cpu_has_amx() is False
    precision.cpu_has_amx.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision.cpu_has_amx() is True
    precision.cpu_has_amx.cache_clear()
    # a torch without the query: the cpuinfo flags; AVX-512-BF16 alone is not AMX
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.setattr(sys, "platform", "linux")
    no_amx, with_amx = tmp_path / "no_amx", tmp_path / "amx"
    no_amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    assert precision._cpuinfo_has_amx(str(no_amx)) is False
    assert precision._cpuinfo_has_amx(str(with_amx)) is True
    assert precision._cpuinfo_has_amx(str(tmp_path / "absent")) is False
    monkeypatch.setattr(cpu_utils, "CPUINFO", str(with_amx))
    assert precision.cpu_has_amx() is True
    precision.cpu_has_amx.cache_clear()


# ---------------------------------------------------------------------- the step
def _step(amp, **kwargs):
    net = torch.nn.Linear(4, 3)
    return TrainingStep({"net": net}, {"net": torch.optim.SGD(net.parameters(), 0.1)}, amp=amp, **kwargs)


def test_step_autocast_follows_the_policy(amx, caplog):
    amx(True)
    with caplog.at_level(logging.INFO, logger="common.engines.step"):
        step = _step("auto")
    assert "precision on cpu: bfloat16 autocast (CPU with AMX)" in caplog.text
    assert step.precision.dtype == torch.bfloat16
    x = torch.randn(2, 4)
    with step.autocast():
        assert step.networks["net"](x).dtype == torch.bfloat16
    assert not any(s.is_enabled() for s in step.scalers.values())
    amx(False)
    step = _step("auto")
    with step.autocast():
        assert step.networks["net"](x).dtype == torch.float32
    with _step("float16").autocast():
        assert step.networks["net"](x).dtype == torch.float16
    assert _step(False, amp_dtype="float16").precision.enabled is False  # the class default stays fp32
    with pytest.raises(ValueError, match="amp must be"):
        _step("bf32")


def test_penalties_losses_and_norm_statistics_stay_float32_under_autocast():
    """What the policy promises stays fp32 (module docstring of common.engines.precision)."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(1)
    )
    real, fake = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = critic(real)
        assert scores.dtype == torch.bfloat16
        for criterion in ("bce", "lsgan", "wgan", "hinge"):
            assert AdversarialLoss(criterion)(scores, True).dtype == torch.float32, criterion
        penalty = gradient_penalty(critic, real, fake)
    assert penalty.dtype == torch.float32
    assert critic[1].running_mean.dtype == torch.float32 and critic[1].running_var.dtype == torch.float32
    assert critic[0].weight.dtype == torch.float32


def _gan(amp):
    torch.manual_seed(0)
    g = DCGANGenerator(2, LATENT, 1, 16, base_channels=2)
    d = DCGANDiscriminator(2, 1, 16, base_channels=2, norm="batch")
    opt = lambda net: torch.optim.Adam(net.parameters(), 1e-3)  # noqa: E731
    return GANStep(g, d, opt(g), opt(d), LATENT, amp=amp)


def _gan_run(ckpt_dir: Path, amp, max_epochs: int, resume: bool = False):
    step = _gan(amp)
    gen = torch.Generator().manual_seed(1)
    data = [{"image": torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1} for _ in range(2)]
    summary = RunSummaryHandler(ckpt_dir, ckpt_dir, model_files=(), output_file=ckpt_dir / "summary.json")
    handlers = [
        ResumeHandler(ckpt_dir, step, resume=resume),
        CheckpointHandler(ckpt_dir, step, save_interval=1, epoch_level=True),
        summary,
    ]
    trainer = StepTrainer("cpu", max_epochs, data, step, handlers=handlers)
    trainer.run()
    return step, trainer


def test_policy_in_checkpoint_and_summary_and_resume_across_a_policy_change(tmp_path, caplog):
    """Train in fp32, resume in bf16: the checkpoint records fp32, the resumed run logs both and trains on."""
    step, _ = _gan_run(tmp_path, False, 1)
    saved = torch.load(latest_checkpoint(tmp_path), weights_only=True)
    assert saved["precision"] == {"enabled": False, "dtype": "float32", "grad_scaling": False, "reason": "amp: false"}
    assert json.loads((tmp_path / "summary.json").read_text())["precision"]["dtype"] == "float32"
    with caplog.at_level(logging.INFO, logger="common.engines"):
        step, trainer = _gan_run(tmp_path, "bfloat16", 2, resume=True)
    assert trainer.state.iteration == 4
    assert step.resumed_precision == saved["precision"]
    assert "the checkpoint was trained in float32 (amp: false); this run uses bfloat16 autocast" in caplog.text
    assert all(torch.isfinite(p).all() for net in step.networks.values() for p in net.parameters())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["precision"] == {
        "enabled": True,
        "dtype": "bfloat16",
        "grad_scaling": False,
        "reason": "amp: bfloat16",
    }
    assert torch.load(latest_checkpoint(tmp_path), weights_only=True)["precision"]["dtype"] == "bfloat16"


def test_checkpoint_of_an_earlier_version_without_a_policy_resumes(tmp_path):
    """A checkpoint written before the precision policy existed (no "precision" entry) still resumes."""
    _gan_run(tmp_path, False, 1)
    path = latest_checkpoint(tmp_path)
    old = torch.load(path, weights_only=True)
    del old["precision"]
    torch.save(old, path)
    step, trainer = _gan_run(tmp_path, False, 2, resume=True)
    assert trainer.state.iteration == 4 and step.resumed_precision is None
    assert step.precision.dtype is None  # its own policy (fp32), nothing read back


def test_summary_without_a_precision_policy_has_no_entry(tmp_path):
    handler = RunSummaryHandler(tmp_path, tmp_path, model_files=())
    engine = SimpleNamespace(state=SimpleNamespace(epoch=1, iteration=2), step=SimpleNamespace())
    assert "precision" not in handler.summarise(engine)


def test_tiny_bundle_run_records_the_policy_in_checkpoint_and_summary(tmp_path):
    """dcgan_wgan's tiny training with the bundle default (amp: auto): the resolved policy is in both files."""
    root = tmp_path / "dcgan_wgan"
    shutil.copytree(
        REPO / "bundles" / "dcgan_wgan", root, ignore=shutil.ignore_patterns("models", "eval", "data", "runs")
    )
    ckpt_dir = tmp_path / "models"
    wf = build(root, "dcgan_wgan", ckpt_dir, max_epochs=1, save_interval=10**6)
    step = wf.parser.get_parsed_content("train#step")
    expected = resolve_precision("auto", step.device).as_dict()
    assert step.precision.as_dict() == expected
    wf.run()
    assert torch.load(latest_checkpoint(ckpt_dir), weights_only=True)["precision"] == expected
    assert json.loads((ckpt_dir / "eval" / "summary.json").read_text())["precision"] == expected
