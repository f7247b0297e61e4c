"""The scripts' fire entry: ``--help`` prints the help and one-letter flags reach their parameters even where
``main`` takes ``**kwargs``."""

import subprocess
import sys
from pathlib import Path

import pytest
from common.utils.cli import fire_command, run_fire

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--help"], ["--", "--help"]),
        (["--iterations", "3", "-h"], ["--", "--help"]),
        (["--iterations", "3"], ["--iterations", "3"]),
        (["--x", "1", "--", "--help"], ["--x", "1", "--", "--help"]),  # after `--` it is fire's already
        ([], []),
    ],
)
def test_fire_command(argv, expected):
    assert fire_command(argv) == expected


def test_run_fire_passes_arguments_and_keeps_help_from_kwargs(capsys):
    calls = []

    def main(a: int = 1, **override):
        calls.append((a, override))
        return a

    assert run_fire(main, ["--a", "4", "--image_size", "8"]) == 4 and calls == [(4, {"image_size": 8})]
    with pytest.raises(SystemExit) as stop:
        run_fire(main, ["--help"])
    assert stop.value.code == 0 and len(calls) == 1  # main did not run
    assert "SYNOPSIS" in capsys.readouterr().err  # fire writes its help to stderr when not on a terminal


def _main(config_file=None, iterations: int = 10, warmup: int = 2, workflow: str = "training", output=None, **override):
    return {"iterations": iterations, "output": output, "override": override}


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["-o", "x.json", "-i", "3"], ["--output", "x.json", "--iterations", "3"]),
        (["-i=3", "--image_size", "-1"], ["--iterations=3", "--image_size", "-1"]),  # numbers are values
        (["-c", "a.yaml", "--", "-o"], ["--config_file", "a.yaml", "--", "-o"]),  # after `--`: fire's own
    ],
)
def test_fire_command_spells_out_one_letter_flags(argv, expected):
    assert fire_command(argv, _main) == expected
    assert fire_command(argv) == argv  # no component: unchanged


@pytest.mark.parametrize("flag,message", [("-w", "matches --warmup, --workflow"), ("-z", "matches no parameter")])
def test_fire_command_refuses_a_one_letter_flag_of_no_single_parameter(flag, message):
    with pytest.raises(ValueError, match=f"the flag {flag} {message}"):
        fire_command([flag, "1"], _main)


def test_run_fire_gives_one_letter_flags_to_their_parameters_not_to_kwargs():
    """With ``**override``, fire itself passed ``-o out.json`` on as the override ``o`` (and wrote no file)."""
    got = run_fire(_main, ["-o", "out.json", "-i", "4", "--image_size", "8"])
    assert got == {"iterations": 4, "output": "out.json", "override": {"image_size": 8}}


@pytest.mark.parametrize(
    "script,parameter",
    [
        ("benchmark.py", "config_file"),
        ("compare_precision.py", "config_file"),
        ("calibrate_phantom.py", "spatial_dims"),
    ],
)
def test_scripts_print_their_help(script, parameter):
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), "--help"],
        capture_output=True, text=True, timeout=300, env={"PAGER": "cat", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SYNOPSIS" in done.stderr and parameter in done.stderr
