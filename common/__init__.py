"""Shared library of the generative-data-augmentation bundles.

Sub-packages: ``data`` (phantoms, datalists, validation), ``engines`` (adversarial workflow and
training steps), ``losses``, ``handlers``, ``metrics``, ``networks`` and ``transforms``.
"""

__version__ = "0.1.0"
