"""Errors about what the user gave (files, datalists, settings), and how they reach the end of the output.

MONAI's bundle runner wraps an exception raised by a config expression (e.g. the datalist validation in
``initialize``) in ``RuntimeError: Failed to evaluate ConfigExpression ...``; Python then prints the user's problem
in the middle of a long chained traceback and ends with MONAI's wrapper. :func:`install_excepthook` (installed by
``import common``) keeps Python's traceback as it is and prints the :class:`UserInputError` of the chain once more
at the very end, so that the list of problems is the last thing a user reads. The exit status stays non-zero.
"""

from __future__ import annotations

import sys
from types import TracebackType

__all__ = ["UserInputError", "find_user_error", "install_excepthook"]


class UserInputError(Exception):
    """Base of the errors that describe a problem in the user's input (a file, a datalist, a setting)."""


def find_user_error(exc: BaseException | None) -> UserInputError | None:
    """The first :class:`UserInputError` in the chain of ``exc`` (itself, then its causes and contexts).

    Args:
        exc: an exception, or None.

    Returns:
        the user error, or None when the chain has none.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserInputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    return None


def _user_error_last(
    previous: object, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    previous(exc_type, exc, tb)  # type: ignore[operator]
    user_error = find_user_error(exc)
    if user_error is not None and user_error is not exc:
        bar = "=" * 79
        sys.stderr.write(f"\n{bar}\nThe run stopped because of its input:\n{type(user_error).__name__}: {user_error}\n")
        sys.stderr.flush()


def install_excepthook() -> None:
    """Make uncaught exceptions end with the user error of their chain, if any (idempotent).

    The previous ``sys.excepthook`` still prints the traceback first; an exception without a
    :class:`UserInputError` in its chain, or one that is itself the user error (already printed last), is printed
    unchanged.
    """
    hook = sys.excepthook
    if getattr(hook, "_user_error_last", False):
        return

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        _user_error_last(hook, exc_type, exc, tb)

    excepthook._user_error_last = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
