"""Command-line entry of the project's scripts: python-fire, with ``--help`` and the short flags kept from a
``**kwargs`` catch-all.

A script whose ``main`` takes ``**override`` (config ids) would receive ``--help`` as an override ``help=True`` and
run instead of printing its help; :func:`fire_command` hands such a flag to fire as its own ``-- --help``. Fire's help
lists a short flag (``-o, --output``) for every parameter with a unique first letter, but with a catch-all fire
passes ``-o x.json`` on as the override ``o`` instead: ``scripts/benchmark.py -o out.json`` wrote no file and ``-i 4``
timed the default number of steps, silently. :func:`fire_command` therefore spells such flags out (``--output``)
and refuses one that names no single parameter.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import fire

__all__ = ["HELP_FLAGS", "fire_command", "run_fire"]

HELP_FLAGS = ("--help", "-h")


def fire_command(argv: Sequence[str], component: Callable[..., Any] | None = None) -> list[str]:
    """The fire command line for ``argv``: with a help flag before any ``--``, fire's ``-- --help`` (the help of the
    component); else ``argv`` with every one-letter flag before ``--`` (``-o``, ``-o=x``) spelled out as the long
    flag of the one parameter of ``component`` that starts with that letter, as fire's help lists it.

    Args:
        argv: the script's arguments, without the program name.
        component: the function fire will call; ``None`` leaves one-letter flags as they are.

    Raises:
        ValueError: a one-letter flag names no parameter of ``component``, or several.
    """
    args = [str(a) for a in argv]
    split = args.index("--") if "--" in args else len(args)
    head = args[:split]
    if any(a in HELP_FLAGS for a in head):
        return ["--", "--help"]
    if component is None:
        return args
    return _spelled_out(head, component) + args[split:]


def _spelled_out(args: list[str], component: Callable[..., Any]) -> list[str]:
    """``args`` with each one-letter flag replaced by the long flag of ``component``'s parameter it stands for."""
    params = inspect.signature(component).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out = []
    for arg in args:
        short = re.fullmatch(r"-([A-Za-z])(=.*)?", arg)
        if short:
            letter, value = short.group(1), short.group(2) or ""
            matches = [n for n in names if n.startswith(letter)]
            if len(matches) != 1:
                found = f"matches {', '.join('--' + n for n in matches)}" if matches else "matches no parameter"
                raise ValueError(f"the flag -{letter} {found}; give the long flag (--name value).")
            arg = f"--{matches[0]}{value}"
        out.append(arg)
    return out


def run_fire(component: Callable[..., Any], argv: Sequence[str] | None = None) -> Any:
    """``fire.Fire(component)`` on ``argv`` (default ``sys.argv[1:]``) through :func:`fire_command`."""
    return fire.Fire(component, command=fire_command(sys.argv[1:] if argv is None else argv, component))
