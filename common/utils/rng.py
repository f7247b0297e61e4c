"""Capture and restore every random state of a training run, as plain types that load with ``weights_only=True``.

Two kinds of random state decide what a run draws:

- the global generators: Python's ``random``, NumPy's global ``RandomState``, torch's CPU generator and, when CUDA
  is available, each CUDA device's generator (:func:`rng_state` / :func:`set_rng_state`);
- generators owned by objects: MONAI ``Randomizable`` transforms (their ``R``, a NumPy ``RandomState``), datasets
  with a NumPy ``Generator`` (e.g. :class:`~common.data.UnpairedDataset`), samplers and data loaders given a
  ``torch.Generator``, image pools and history buffers (:func:`object_rng_states` / :func:`set_object_rng_states`,
  which find them by walking the objects' attributes).

NumPy states are converted to tensors, lists, numbers and strings (no pickled NumPy objects), so that a checkpoint
holding them loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["object_rng_states", "rng_state", "set_object_rng_states", "set_rng_state"]

_Generator = np.random.RandomState | np.random.Generator | torch.Generator


def _numpy_state(rs: np.random.RandomState) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached_gaussian = rs.get_state(legacy=True)
    return {
        "bit_generator": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _set_numpy_state(rs: np.random.RandomState, state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    rs.set_state(
        (state["bit_generator"], keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"]))
    )


def _plain(value: Any) -> Any:
    """A NumPy bit generator's state with arrays as lists of Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _kind(item: Any) -> str:
    """The kind of a generator, or of a state returned by :func:`object_rng_states`."""
    if isinstance(item, np.random.RandomState) or (isinstance(item, dict) and "keys" in item):
        return "RandomState"
    if isinstance(item, np.random.Generator) or (isinstance(item, dict) and "bit_generator_state" in item):
        return "Generator"
    return "torch"


def _state(generator: _Generator) -> dict[str, Any] | torch.Tensor:
    if isinstance(generator, np.random.RandomState):
        return _numpy_state(generator)
    if isinstance(generator, np.random.Generator):
        return {"bit_generator_state": _plain(generator.bit_generator.state)}
    return generator.get_state()


def rng_state() -> dict[str, Any]:
    """The states of the global generators: Python, NumPy, torch CPU and (when available) every CUDA device.

    Returns:
        ``{"python": {...}, "numpy": {...}, "torch": uint8 tensor, "cuda": [uint8 tensor per device]}``, tensors,
        numbers and strings only.
    """
    version, internal, gauss_next = random.getstate()
    return {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": _numpy_state(np.random.mtrand._rand),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global generators from :func:`rng_state`.

    The CUDA states are restored when CUDA is available and the number of devices matches; otherwise (e.g. a
    checkpoint of a GPU run resumed on a CPU) they are left as they are.

    Args:
        state: a dict returned by :func:`rng_state` (possibly after a save and a ``weights_only`` load).
    """
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    _set_numpy_state(np.random.mtrand._rand, state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _find_generators(roots: Iterable[Any]) -> list[_Generator]:
    """The generators reachable from ``roots``, depth first in attribute order, each once.

    Walks lists, tuples, dicts and object attributes (``vars``); a MONAI ``Randomizable`` reaches its ``R`` even
    when that is still the class attribute. Tensors, arrays and ``torch.nn.Module`` objects are not entered (they
    hold no generator and can be large).
    """
    found: list[_Generator] = []
    seen: set[int] = set()
    stack: list[Any] = list(reversed(list(roots)))
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (np.random.RandomState, np.random.Generator, torch.Generator)):
            found.append(obj)
            continue
        if isinstance(obj, (str, bytes, int, float, bool, torch.Tensor, np.ndarray, torch.nn.Module, type)):
            continue
        if isinstance(obj, (list, tuple)):
            children = list(obj)
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif hasattr(obj, "__dict__"):
            children = list(vars(obj).values())
            rs = getattr(obj, "R", None)
            if isinstance(rs, np.random.RandomState):
                children.insert(0, rs)
        else:
            continue
        stack.extend(reversed(children))
    return found


def object_rng_states(roots: Sequence[Any]) -> list[dict[str, Any] | torch.Tensor]:
    """The states of the generators owned by ``roots`` and the objects they reference.

    Args:
        roots: objects to search (e.g. a data loader, a batch preparation, a training step).

    Returns:
        one entry per generator found, in a fixed order: a dict for a NumPy ``RandomState`` (``"keys"``, ...) or
        ``Generator`` (``"bit_generator_state"``), a uint8 tensor for a ``torch.Generator``.
    """
    return [_state(g) for g in _find_generators(roots)]


def set_object_rng_states(roots: Sequence[Any], states: Sequence[dict[str, Any] | torch.Tensor]) -> bool:
    """Restore the generators of ``roots`` from :func:`object_rng_states` of the same objects.

    Args:
        roots: the objects searched when the states were captured (rebuilt the same way).
        states: the captured states.

    Returns:
        ``True`` when restored; ``False`` (nothing changed) when the objects hold other generators than the states
        describe (a different number or kind), e.g. after a change of the data pipeline.
    """
    generators = _find_generators(roots)
    if [_kind(g) for g in generators] != [_kind(s) for s in states]:
        return False
    for generator, state in zip(generators, states):
        if isinstance(generator, np.random.RandomState):
            _set_numpy_state(generator, state)  # type: ignore[arg-type]
        elif isinstance(generator, np.random.Generator):
            generator.bit_generator.state = state["bit_generator_state"]  # type: ignore[index]
        else:
            generator.set_state(state)  # type: ignore[arg-type]
    return True
