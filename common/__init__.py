"""Shared library of the generative-data-augmentation bundles.

Runtime packages, lowest layer first (a package imports only from those before it): ``utils`` (atomic writes,
hashing, rank, bundle paths), ``losses``, ``data`` (phantoms, datalists, validation), ``networks`` and
``transforms``, ``metrics`` (pure metric functions), ``handlers`` (ignite handlers), ``engines`` (the step
trainer and one training step per method) and ``evaluation`` (pipelines that load data, run networks and report
metrics). ``import common`` loads exactly these, so that bundle configs need one import line (``$import common``)
to use ``$common.<package>.<name>`` expressions.

The tools ``common.experiments`` (experiment grids, tables, plots) and ``common.bundle`` (model-zoo verification
and export) are importable but not imported here: bundle configs never need them, and an exported bundle does not
vendor them.
"""

__version__ = "0.1.0"

from . import data, engines, evaluation, handlers, losses, metrics, networks, transforms, utils  # noqa: E402

utils.install_excepthook()  # a bundle run that fails on the user's input ends with that error (common.utils.errors)

__all__ = ["data", "engines", "evaluation", "handlers", "losses", "metrics", "networks", "transforms", "utils"]
