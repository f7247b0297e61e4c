"""Command-line entry of the project's scripts: python-fire, with ``--help`` kept from a ``**kwargs`` catch-all.

A script whose ``main`` takes ``**override`` (config ids) would receive ``--help`` as an override ``help=True`` and
run instead of printing its help; :func:`fire_command` hands such a flag to fire as its own ``-- --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import fire

__all__ = ["HELP_FLAGS", "fire_command", "run_fire"]

HELP_FLAGS = ("--help", "-h")


def fire_command(argv: Sequence[str]) -> list[str]:
    """The fire command line for ``argv``: with a help flag before any ``--``, fire's ``-- --help`` (the help of the
    component), else ``argv`` unchanged.

    Args:
        argv: the script's arguments, without the program name.
    """
    args = [str(a) for a in argv]
    head = args[: args.index("--")] if "--" in args else args
    return ["--", "--help"] if any(a in HELP_FLAGS for a in head) else args


def run_fire(component: Callable[..., Any], argv: Sequence[str] | None = None) -> Any:
    """``fire.Fire(component)`` on ``argv`` (default ``sys.argv[1:]``) through :func:`fire_command`."""
    return fire.Fire(component, command=fire_command(sys.argv[1:] if argv is None else argv))
