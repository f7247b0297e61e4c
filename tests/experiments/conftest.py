"""Fixtures of the grid runner tests: fake bundles and a fake interpreter (see ``helpers.py``)."""

import os
import stat
import sys

import pytest

from tests.experiments.helpers import FAKE_MONAI, write_yaml

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """``(python, calls_file, downstream_bundle, generator_bundle)`` for runner tests."""
    script = tmp_path / "fake_monai.py"
    script.write_text(FAKE_MONAI)
    python = tmp_path / "fakepython"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("GDA_CPU_BF16", "0")  # no precision probe per grid (test_runner.py tests the pinning)

    down = tmp_path / "bundles" / "down"
    base = "ckpt_dir: models\noutput_dir: eval\nseed: 0\nquality: 0.0\ndataset_dir: data\nsynthetic_datalist: none\n"
    write_yaml(down / "configs" / "train.yaml", base)
    write_yaml(down / "configs" / "evaluate.yaml", "evaluated: true\n")  # an overlay: merged on train.yaml
    write_yaml(down / "configs" / "variants" / "good.yaml", "quality: 1.0\n")
    write_yaml(down / "configs" / "variants" / "synthetic.yaml", "quality: 0.5\n")
    write_yaml(down / "configs" / "variants" / "fail.yaml", "fail_evaluating: true\n")
    gen = tmp_path / "bundles" / "gen"
    write_yaml(gen / "configs" / "train.yaml", "ckpt_dir: models\noutput_dir: eval\nseed: 0\nnum_samples: 2\n")
    write_yaml(gen / "configs" / "inference.yaml", "ckpt_dir: models\noutput_dir: eval\nseed: 0\nnum_samples: 2\n")
    write_yaml(gen / "configs" / "variants" / "broken.yaml", "fail_training: true\n")
    return str(python), calls, down, gen
