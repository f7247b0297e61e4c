"""Command line front end of :py:mod:`common.data.phantoms`: generate deterministic phantom data sets.

Examples::

    python scripts/make_phantoms.py brain_mr --output_dir /tmp/brain_2d
    python scripts/make_phantoms.py brain_mr --output_dir /tmp/brain_3d --spatial_dims 3
    python scripts/make_phantoms.py chest_ct --output_dir /tmp/chest --num_cases 12
    python scripts/make_phantoms.py brain_metastases --output_dir /tmp/mets --max_lesions 4
    python scripts/make_phantoms.py prepare --dataset_dir /tmp/brain_2d --kind brain_mr_2d

Each command prints the path of the datalist JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import fire

from common.data.phantoms import make_brain_metastases, make_brain_mr, make_chest_ct, prepare_phantom


def _printing_path(fn: Callable[..., Any]) -> Callable[..., str]:
    """``fn`` with its signature and docstring (shown by ``--help``), returning the datalist path as a string."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> str:
        return str(fn(*args, **kwargs))

    return command


COMMANDS = {
    "brain_mr": _printing_path(make_brain_mr),
    "chest_ct": _printing_path(make_chest_ct),
    "brain_metastases": _printing_path(make_brain_metastases),
    "prepare": _printing_path(prepare_phantom),
}

if __name__ == "__main__":
    fire.Fire(COMMANDS)
