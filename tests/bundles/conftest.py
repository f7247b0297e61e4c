import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle_copy(tmp_path):
    """A copy of a repository bundle in tmp_path (its outputs never touch the repository)."""

    def _copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(
            REPO / "bundles" / name, dst, ignore=shutil.ignore_patterns("models", "eval", "data", "runs", "outputs")
        )
        return dst

    return _copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(args, cwd, timeout=600, env=None):
    """Run a command with this interpreter's environment; fail the test with its output if it fails."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"command {args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def cli_list(files):
    """A config list as the ``--config_file`` argument of ``python -m monai.bundle run``."""
    return "[" + ",".join(f"'{f}'" for f in files) + "]"
