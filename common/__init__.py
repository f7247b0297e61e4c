"""Shared library of the generative-data-augmentation bundles.

Runtime packages, lowest layer first (a package imports only from those before it): ``utils`` (atomic writes,
hashing, rank, bundle paths), ``losses``, ``data`` (phantoms, datalists, validation), ``networks`` and
``transforms``, ``metrics`` (pure metric functions), ``handlers`` (ignite handlers), ``engines`` (the step
trainer and one training step per method) and ``evaluation`` (pipelines that load data, run networks and report
metrics). Bundle configs need one import line (``$import common``) to use ``$common.<package>.<name>``
expressions: ``import common`` loads ``utils`` and each other runtime package when it is first used (a module
``__getattr__``), so that a bundle command that stops on a bad datalist has not loaded the networks, engines and
evaluation pipelines first.

The tools ``common.experiments`` (experiment grids, tables, plots) and ``common.bundle`` (model-zoo verification
and export) are importable but never loaded by an attribute of ``common``: bundle configs never need them, and an
exported bundle does not vendor them.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from types import ModuleType

from . import utils

utils.install_excepthook()  # a bundle run that fails on the user's input ends with that error (common.utils.errors)

__all__ = ["data", "engines", "evaluation", "handlers", "losses", "metrics", "networks", "transforms", "utils"]


def __getattr__(name: str) -> ModuleType:
    """Import the runtime package ``common.<name>`` when it is first used (PEP 562)."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
