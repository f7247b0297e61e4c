"""Data loaders that keep a training step fed: workers, pinned memory and the project's worker seeding.

:func:`loader_options` turns a bundle's ``num_workers`` and device into the keyword arguments of a
``torch.utils.data.DataLoader``; :func:`make_dataloader` builds MONAI's ``DataLoader`` with them (the ``_target_`` of
the bundles' ``train#dataloader``). The deterministic part of the preprocessing is cached by MONAI's
``CacheDataset`` (in each bundle's ``train#dataset``), which runs the transforms up to the first random one once.

Exact resume (:class:`~common.engines.RandomStateTracker`) holds with ``num_workers=0`` and with non-persistent
workers: a new iterator (each pass over the data) forks its workers and seeds them from a base seed drawn from the
global torch generator, which the checkpoint restores. A persistent worker keeps its transforms' random state from
one pass to the next, and no checkpoint holds that state, so a resumed run draws other augmentations.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from common.utils import object_rng_states, set_object_rng_states
from common.utils.errors import UserInputError
from monai.data import CacheDataset, DataLoader
from monai.data.utils import worker_init_fn as monai_worker_init_fn
from monai.transforms import Compose, RandomizableTrait
from torch.utils.data import Dataset, get_worker_info

__all__ = [
    "PERSISTENT_AUTO",
    "LoaderSettingError",
    "cycle_loader",
    "loader_options",
    "make_dataloader",
    "preprocess_once",
    "seed_worker",
]

PERSISTENT_AUTO = "auto"
"""``persistent_workers`` value: persistent where starting a worker re-imports the libraries (the ``spawn`` and
``forkserver`` start methods: seconds per worker and pass), not with ``fork`` (milliseconds; the default on Linux),
where non-persistent workers keep resume exact."""


class LoaderSettingError(UserInputError, ValueError):
    """A data-loading setting of a config that cannot work (e.g. a negative ``num_workers``)."""


def _start_method() -> str:
    return multiprocessing.get_start_method(allow_none=False)


def loader_options(
    num_workers: int,
    device: str | torch.device | None = None,
    persistent_workers: bool | str = PERSISTENT_AUTO,
    prefetch_factor: int | None = 2,
) -> dict[str, Any]:
    """The ``DataLoader`` keyword arguments of a bundle's loading settings.

    Args:
        num_workers: worker processes (0: load in the training process, between steps).
        device: the training device; memory is pinned for a CUDA device only (a faster host-to-device copy;
            on a CPU pinning only costs time and locked memory).
        persistent_workers: keep the workers from one pass over the data to the next. ``"auto"``
            (:data:`PERSISTENT_AUTO`): only where the multiprocessing start method is not ``fork`` (there a worker
            start re-imports torch and MONAI, seconds per worker and pass). Ignored with ``num_workers=0``, where
            torch does not allow it. Persistent workers make resume inexact (module docstring).
        prefetch_factor: batches loaded ahead by each worker (torch's default 2); ignored with ``num_workers=0``,
            where torch does not allow it.

    Returns:
        ``{"num_workers", "pin_memory"}``, and with workers ``"persistent_workers"`` and ``"prefetch_factor"``.

    Raises:
        LoaderSettingError: a negative ``num_workers``, a ``prefetch_factor`` below 1 or an unknown
            ``persistent_workers``.
    """
    workers = int(num_workers)
    if workers < 0:
        raise LoaderSettingError(f"the setting num_workers must be >= 0, got {num_workers}.")
    if persistent_workers != PERSISTENT_AUTO and not isinstance(persistent_workers, bool):
        raise LoaderSettingError(
            f"the setting persistent_workers must be true, false or {PERSISTENT_AUTO!r}, got {persistent_workers!r}."
        )
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available(),
    }
    if workers > 0:
        if prefetch_factor is not None and int(prefetch_factor) < 1:
            raise LoaderSettingError(f"the setting prefetch_factor must be >= 1, got {prefetch_factor}.")
        persistent = _start_method() != "fork" if persistent_workers == PERSISTENT_AUTO else persistent_workers
        options["persistent_workers"] = bool(persistent)
        options["prefetch_factor"] = None if prefetch_factor is None else int(prefetch_factor)
    return options


def preprocess_once(data: Sequence[Mapping[str, Any]], transform: Callable[[dict], dict]) -> list[dict]:
    """The entries after a deterministic ``transform``, each computed once (MONAI ``CacheDataset``), for a dataset of
    the project that takes preprocessed entries (e.g. the training entries of :class:`~common.data.UnpairedDataset`,
    whose draws then stay the same: the transform draws nothing).

    The cache is computed in one thread: MONAI's ``LoadImaged`` shares one reader between threads, and with keys
    holding a list of files (multi-file channels) beside single files (a mask), ``CacheDataset``'s threads stacked
    some images with the wrong number of channels (6 of 24 phantom entries, 2 threads, MONAI 1.6).

    Args:
        data: datalist entries.
        transform: the deterministic preprocessing (e.g. loading, intensity scaling, resizing).

    Raises:
        LoaderSettingError: ``transform`` holds a random transform (its result would be frozen at the first draw; apply it
            to the preprocessed entries instead).
    """
    compose = transform if isinstance(transform, Compose) else Compose([transform])
    random = [type(t).__name__ for t in compose.flatten().transforms if isinstance(t, RandomizableTrait)]
    if random:
        raise LoaderSettingError(
            f"the cached preprocessing must be deterministic, but it holds random transforms {random}: apply them "
            "to the preprocessed entries (e.g. the dataset's transform) instead."
        )
    cache = CacheDataset(list(data), compose, cache_rate=1.0, num_workers=1, progress=False, copy_cache=False)
    return [cache[i] for i in range(len(cache))]


def _reseeded(state: dict[str, Any] | torch.Tensor, seed: int) -> dict[str, Any] | torch.Tensor:
    """A fresh state seeded with ``seed`` of the same kind as ``state`` (an object generator's state)."""
    if isinstance(state, torch.Tensor):
        return torch.Generator().manual_seed(seed).get_state()
    name = state["bit_generator_state"]["bit_generator"]
    return {"bit_generator_state": getattr(np.random, name)(seed).state}


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: MONAI's (each worker's ``Randomizable`` transforms reseeded from its seed), then every NumPy
    ``Generator`` and ``torch.Generator`` of the worker's copy of the dataset (e.g. the negative sampling of
    :class:`~common.data.UnpairedDataset`) seeded from the worker's seed, so that workers draw different samples
    (otherwise each worker repeats the same draws, and a non-persistent one repeats them every pass).

    The worker's seed is torch's ``base_seed + worker_id``, the base seed drawn from the global torch generator when
    the iterator starts, so the draws are reproducible from the run's seed and restored by exact resume.
    """
    monai_worker_init_fn(worker_id)
    info = get_worker_info()
    if info is None:
        return
    states = object_rng_states([info.dataset])
    # MONAI's RandomState (``R``) was just reseeded above; the project's own generators are seeded here
    seeded = [
        state if isinstance(state, dict) and "keys" in state else _reseeded(state, (info.seed + 7919 * i) % 2**32)
        for i, state in enumerate(states)
    ]
    set_object_rng_states([info.dataset], seeded)


def make_dataloader(
    dataset: Dataset,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    persistent_workers: bool | str = PERSISTENT_AUTO,
    prefetch_factor: int | None = 2,
    worker_init_fn: Callable[[int], None] = seed_worker,
    **kwargs: Any,
) -> DataLoader:
    """MONAI's ``DataLoader`` of ``dataset`` with the options of :func:`loader_options` and :func:`seed_worker`.

    Args:
        dataset: the dataset.
        num_workers / device / persistent_workers / prefetch_factor: see :func:`loader_options`.
        worker_init_fn: run in each worker at its start.
        kwargs: other ``DataLoader`` arguments (``batch_size``, ``shuffle``, ``sampler``, ``collate_fn``...).
    """
    options = loader_options(num_workers, device, persistent_workers, prefetch_factor)
    if options["num_workers"] > 0:
        options["worker_init_fn"] = worker_init_fn
    return DataLoader(dataset, **options, **kwargs)


def cycle_loader(loader: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    """``(epoch, batch)`` pairs of a loader, pass after pass without end; ``epoch`` counts the passes from 1.

    Unlike :func:`itertools.cycle`, each pass iterates the loader again (new shuffling, new random transforms, its
    workers restarted) instead of replaying the first pass's batches. The first pass starts at the first ``next``.

    Args:
        loader: a data loader (or any re-iterable of batches) with at least one batch.

    Raises:
        ValueError: when a pass yields no batch.
    """
    epoch = 0
    while True:
        epoch += 1
        empty = True
        for batch in loader:
            empty = False
            yield epoch, batch
        if empty:
            raise ValueError("the loader yielded no batch: nothing to cycle over.")
