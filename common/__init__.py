"""Shared library of the generative-data-augmentation bundles.

Sub-packages: ``data`` (phantoms, datalists, validation), ``engines`` (adversarial workflow and training
steps), ``losses``, ``handlers``, ``metrics``, ``networks``, ``transforms`` and ``bundle`` (paths,
verification, export). ``import common`` loads them all, so that bundle configs need one import line
(``$import common``) to use ``$common.<package>.<name>`` expressions.
"""

__version__ = "0.1.0"

from . import bundle, data, engines, experiments, handlers, losses, metrics, networks, transforms  # noqa: E402

__all__ = ["bundle", "data", "engines", "experiments", "handlers", "losses", "metrics", "networks", "transforms"]
