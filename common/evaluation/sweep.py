"""Run one configured workflow object at several values of one of its settings, in one bundle command.

Runtime code of a bundle workflow (bundle configs may call it), used by the experiment grids: the grid runner
(:mod:`common.experiments.runner`) runs one ``inference`` per generator entry; a generator whose
inference is cheap to repeat but whose training is not (3D MCGAN, Han thesis sec. 6.2.2: the same generator gives
the 1x, 2x and 3x augmented sets of Table 5) can instead produce every value in its single inference step, by
overriding the bundle's ``inference`` id in the generator's ``overrides``::

    ratios: [1, 2, 3]
    inference:
      - "$common.evaluation.run_for_each(@synthesis, 'ratio', @ratios,
         output_dir=os.path.join(@output_dir, 'synthetic_{ratio}x'))"

and declaring one generator output per value (``synthetic_1x/datalist.json`` ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_for_each"]


def run_for_each(obj: Any, attribute: str, values: Sequence[Any], method: str = "run", **templates: str) -> list[Any]:
    """For each value: sets ``obj.<attribute> = value`` and ``obj.<key> = template.format(<attribute>=value)`` for
    every keyword template, calls ``obj.<method>()``, and finally restores the original attributes.

    A template whose original attribute is a path (``os.PathLike``) is set as a :class:`pathlib.Path`.

    Args:
        obj: a configured object, e.g. a ``common.evaluation.MCGANSynthesis``.
        attribute: the attribute swept, e.g. ``"ratio"``.
        values: its values, e.g. ``[1, 2, 3]``.
        method: the method called once per value.
        templates: other attributes that depend on the value, as ``str.format`` templates with ``{<attribute>}``.

    Returns:
        what ``obj.<method>()`` returned, one item per value.

    Raises:
        AttributeError: when ``obj`` lacks ``attribute``, a templated attribute or ``method``.
        ValueError: for an empty ``values``.
    """
    if not values:
        raise ValueError(f"run_for_each needs at least one value of {attribute!r}.")
    names = [attribute, *templates]
    missing = [n for n in [*names, method] if not hasattr(obj, n)]
    if missing:
        raise AttributeError(f"{type(obj).__name__} has no attribute(s) {missing}.")
    original = {n: getattr(obj, n) for n in names}
    results = []
    try:
        for value in values:
            setattr(obj, attribute, value)
            for key, template in templates.items():
                new = template.format(**{attribute: value})
                setattr(obj, key, Path(new) if isinstance(original[key], os.PathLike) else new)
            results.append(getattr(obj, method)())
    finally:
        for n, v in original.items():
            setattr(obj, n, v)
    return results
