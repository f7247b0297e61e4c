"""The CPU facts that the precision policy, the convolution choices and the benchmarks read (common.utils.cpu)."""

from __future__ import annotations

import sys

import pytest
import torch
from common.utils import cpu as cpu_utils

AMD_LINE = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16\n"


def _cpuinfo(tmp_path, text: str):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


def test_flags_are_those_of_the_first_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    text = "processor\t: 0\nmodel name\t: AMD EPYC\n" + AMD_LINE + "\nprocessor\t: 1\nflags\t\t: fpu amx_tile\n"
    flags = cpu_utils.cpuinfo_flags(_cpuinfo(tmp_path, text))
    assert flags == frozenset({"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"})
    # the default path is read at call time, so a test (or a container) can point it elsewhere
    monkeypatch.setattr(cpu_utils, "CPUINFO", _cpuinfo(tmp_path, text))
    assert cpu_utils.cpuinfo_flags() == flags


@pytest.mark.parametrize(
    "text, platform",
    [
        ("processor\t: 0\nFeatures\t: fp asimd bf16\n", "linux"),  # ARM: no x86 flags line
        ("processor\t: 0\n" + AMD_LINE, "darwin"),  # not Linux: the file is not asked
        (None, "linux"),  # unreadable
    ],
)
def test_no_flags_where_nothing_is_known(monkeypatch, tmp_path, text, platform):
    monkeypatch.setattr(sys, "platform", platform)
    path = _cpuinfo(tmp_path, text) if text is not None else str(tmp_path / "absent")
    assert cpu_utils.cpuinfo_flags(path) is None


def test_benchmark_flags_keep_their_order_and_names(monkeypatch, tmp_path):
    from common.bundle.peak_benchmark import CPU_FLAGS, cpu_flags

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(cpu_utils, "CPUINFO", _cpuinfo(tmp_path, "processor\t: 0\n" + AMD_LINE))
    assert cpu_flags() == [flag for flag in CPU_FLAGS if flag in AMD_LINE.split()]
    assert "avx512_bf16" in cpu_flags() and "amx_tile" not in cpu_flags()
    monkeypatch.setattr(cpu_utils, "CPUINFO", str(tmp_path / "absent"))
    assert cpu_flags() == []


def test_identity_names_the_cpu_its_vector_isa_and_threads():
    identity = cpu_utils.cpu_identity()
    assert identity == {
        "cpu": cpu_utils.cpu_name(),
        "capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": torch.get_num_threads(),
    }
    assert identity["cpu"] and all(isinstance(v, (str, int)) for v in identity.values())
