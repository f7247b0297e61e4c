"""Exact resume after SIGKILL, and a checkpoint on SIGTERM, with tiny bundle trainings on a CPU."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from training_runs import build, record_losses

from common.engines import latest_checkpoint
from common.engines.checkpoint import RANDOM_STATE_KEY

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _bundle_copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(REPO / "bundles" / name, dst, ignore=shutil.ignore_patterns("models", "eval", "data", "runs"))
    return dst


def _spawn(spec: dict, tmp_path: Path) -> subprocess.Popen:
    spec_file = tmp_path / f"spec_{spec['mode']}.json"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(HERE / "training_runs.py"), str(spec_file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _assert_same(a, b, where: str = "") -> None:
    """Recursive equality of two loaded checkpoints: tensors with ``torch.equal``, everything else with ``==``."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} vs {b}"


def test_sigkilled_runs_resume_exactly(tmp_path):
    """N+M iterations uninterrupted == N iterations, SIGKILL mid-epoch, resume to N+M: losses and whole checkpoints.

    One adversarial bundle (dcgan_wgan: GANStep on a StepTrainer) and one downstream bundle (classification:
    MONAI's SupervisedTrainer with validation); both are killed in one subprocess (see training_runs.py), at
    iteration 3 of 2-iteration epochs, with a checkpoint every iteration; the full runs have 4 epochs (8 iterations).
    """
    threads = torch.get_num_threads()  # the subprocess computes with as many threads as this one
    names = ("dcgan_wgan", "classification")
    roots = {name: _bundle_copy(tmp_path, name) for name in names}
    runs = [
        {
            "root": str(roots[n]),
            "name": n,
            "ckpt_dir": str(tmp_path / f"{n}_killed"),
            "max_epochs": 4,
            "at": 3,
            "losses": str(tmp_path / f"{n}_killed.json"),
        }
        for n in names
    ]
    proc = _spawn({"threads": threads, "mode": "kill", "runs": runs}, tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out[-4000:]

    for run in runs:
        killed = Path(run["ckpt_dir"])
        ckpt = latest_checkpoint(killed)
        assert ckpt is not None and ckpt.name == "checkpoint_3.pt", (run["name"], sorted(os.listdir(killed)))
        before = json.loads(Path(run["losses"]).read_text())
        assert len(before) == 3

        resumed_wf = build(run["root"], run["name"], killed, max_epochs=4, resume=True)
        resumed_trainer = resumed_wf.parser.get_parsed_content("train#trainer")
        after = record_losses(resumed_trainer)
        resumed_wf.run()

        full = tmp_path / f"{run['name']}_full"
        full_wf = build(run["root"], run["name"], full, max_epochs=4)
        losses = record_losses(full_wf.parser.get_parsed_content("train#trainer"))
        full_wf.run()

        assert len(losses) == 8 and before + after == losses, (run["name"], before, after, losses)
        last_full, last_resumed = latest_checkpoint(full), latest_checkpoint(killed)
        assert last_full.name == last_resumed.name == "checkpoint_8.pt"
        state = torch.load(last_resumed, weights_only=True)
        assert RANDOM_STATE_KEY in state
        _assert_same(torch.load(last_full, weights_only=True), state, run["name"])


def test_sigterm_writes_checkpoint_and_ends_with_the_signal(tmp_path):
    """SIGTERM to a training subprocess: a checkpoint of the current iteration, no traceback, exit by SIGTERM."""
    root = _bundle_copy(tmp_path, "classification")
    ckpt_dir = tmp_path / "models"
    run = {
        "root": str(root),
        "name": "classification",
        "ckpt_dir": str(ckpt_dir),
        "max_epochs": 10**4,
        "save_interval": 10**4,  # no interval checkpoint during the test: any checkpoint is the SIGTERM one
        "iteration_level": False,
        "at": 3,
        "losses": str(tmp_path / "losses.json"),
    }
    proc = _spawn({"threads": 1, "mode": "term", "runs": [run]}, tmp_path)
    try:
        deadline = time.time() + 120
        while not (ckpt_dir / "started").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert latest_checkpoint(ckpt_dir) is None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM, out[-4000:]
    assert "Traceback" not in out
    ckpt = latest_checkpoint(ckpt_dir)
    assert ckpt is not None, out[-4000:]
    state = torch.load(ckpt, weights_only=True)
    done = len(json.loads(Path(run["losses"]).read_text()))
    assert state["trainer"]["iteration"] == done >= 3 and ckpt.name == f"checkpoint_{done}.pt"
    assert RANDOM_STATE_KEY in state and "network" in state and "optimizer" in state
    assert f"stopped on SIGTERM at iteration {done}" in out
