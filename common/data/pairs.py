"""Same-class image pairs for GA-UNet (paper 002, sec. II-B, eq. 2-4 and "It is worth noting ...").

The GA-UNet critic judges pairs: the real pair ``(x_i, x_j)``, ``x_j`` another image of the class of ``x_i``, against
the generated pair ``(x_i, G(z, x_i))``. :class:`SameClassPairDataset` turns a datalist's entries into such pairs:
item ``i`` is entry ``i`` as ``x_i`` with a partner ``x_j`` drawn uniformly among the other entries of its class,
re-drawn every time the item is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np
from monai.data import Dataset
from monai.data.utils import set_rnd
from monai.transforms import Randomizable
from monai.utils import MAX_SEED

from .validation import DatalistError, DatalistProblem

__all__ = ["SameClassPairDataset"]


def _source(value: Any) -> str | list[str] | None:
    """The path (or list of paths, for multi-modal entries) of an entry's image, or ``None`` for in-memory data."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [os.fspath(v) for v in value]
    return None


class SameClassPairDataset(Randomizable, Dataset):
    """Datalist entries paired with a random other entry of the same class.

    Item ``i`` is, before the transform, ``{image_key: entry_i[image_key], pair_key: entry_j[image_key],
    class_key: c}`` plus, when the images are paths, their sources ``"<image_key>_source"`` and
    ``"<pair_key>_source"`` (provenance of synthetic images written later). ``j`` is drawn uniformly among the
    other entries of class ``c`` at every read, from the dataset's own ``RandomState`` ``R`` (MONAI
    ``Randomizable``): the checkpoint's random-state tracker finds it through the data loader
    (:func:`common.utils.object_rng_states`), so a resumed run draws the same partners as the uninterrupted one.
    Both images go through one transform chain, e.g. ``LoadImaged(keys=["image", "pair"])``; a random transform on
    both keys applies the same random parameters to the two images of a pair.

    ``monai.data.DataLoader`` reseeds the dataset through :meth:`set_random_state`, which seeds the draws and the
    transform chain: from the global torch generator when it is built with ``num_workers=0``, and with each
    worker's seed in its workers (:func:`~monai.data.utils.worker_init_fn`); the draws then follow the run's seed
    (``monai.utils.set_determinism``) rather than ``seed``.

    Args:
        data: datalist entries, each with ``image_key`` and an integer ``class_key``.
        transform: dictionary transform(s) applied to each pair item (``None``: the item as built).
        image_key: key of the image in the entries and of ``x_i`` in the items.
        pair_key: key of ``x_j`` in the items.
        class_key: key of the integer class in the entries and the items.
        allow_self_pairs: pair the single image of a one-image class with itself (``x_j = x_i``) instead of
            raising; classes with more images always pair two different entries.
        seed: seed of the partner draws.
        datalist_file: the datalist the entries come from, named in errors.
        section: the datalist section of the entries, named in errors.

    Raises:
        DatalistError: when there are no entries, an entry lacks the image or an integer class, or (unless
            ``allow_self_pairs``) a class has a single image: each problem names the entry or the class.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        transform: Callable[[dict], Any] | Sequence[Callable] | None = None,
        image_key: str = "image",
        pair_key: str = "pair",
        class_key: str = "class",
        allow_self_pairs: bool = False,
        seed: int = 0,
        datalist_file: str | os.PathLike | None = None,
        section: str = "training",
    ) -> None:
        Dataset.__init__(self, data=list(data), transform=transform)
        self.image_key, self.pair_key, self.class_key = image_key, pair_key, class_key
        self.allow_self_pairs = bool(allow_self_pairs)
        problems: list[DatalistProblem] = []
        members: dict[int, list[int]] = {}
        for index, entry in enumerate(self.data):
            if image_key not in entry:
                problems.append(DatalistProblem(section, index, image_key, None, f"missing key '{image_key}'"))
            label = entry.get(class_key)
            if isinstance(label, bool) or not isinstance(label, Integral):
                problem = (
                    f"missing key '{class_key}'" if label is None else f"the class must be an integer, got {label!r}"
                )
                problems.append(DatalistProblem(section, index, class_key, None, problem))
                continue
            members.setdefault(int(label), []).append(index)
        if not self.data:
            problems.append(DatalistProblem(section, None, None, None, "no entries to pair"))
        if not self.allow_self_pairs:
            for label, indices in sorted(members.items()):
                if len(indices) == 1:
                    problems.append(
                        DatalistProblem(
                            section,
                            indices[0],
                            class_key,
                            None,
                            f"class {label} has a single image, so it has no same-class partner (x_j of eq. 4): "
                            "add images of this class, remove it, or allow self pairs (x_j = x_i)",
                        )
                    )
        if problems:
            raise DatalistError(problems, datalist_file)
        self.class_members = {label: np.asarray(indices, dtype=np.int64) for label, indices in members.items()}
        self._position = {int(i): p for indices in self.class_members.values() for p, i in enumerate(indices)}
        Randomizable.set_random_state(self, seed=seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> Randomizable:
        """Seed the partner draws and, with ``seed``, the random transforms of the chain (with ``seed + 1``).

        MONAI's :func:`~monai.data.utils.set_rnd` stops at an object that has ``set_random_state``, so this method
        passes the worker seed on to the transforms itself, as :class:`monai.transforms.Compose` does.

        Args:
            seed: an integer seed.
            state: a ``RandomState`` to use for the partner draws (the transforms are left as they are).

        Returns:
            this dataset.
        """
        super().set_random_state(seed=seed, state=state)
        if seed is not None and self.transform is not None:
            set_rnd(self.transform, seed=(int(seed) + 1) % MAX_SEED)
        return self

    def randomize(self, data: int) -> int:
        """Draw the partner of entry ``data``.

        Args:
            data: the index of ``x_i``.

        Returns:
            the index of ``x_j``: uniform among the other entries of the class of ``x_i`` (``data`` itself only for
            a one-image class with ``allow_self_pairs``).
        """
        members = self.class_members[int(self.data[data][self.class_key])]
        if len(members) == 1:
            return int(members[0])
        draw = int(self.R.randint(len(members) - 1))  # among the n - 1 others: skip the position of x_i
        return int(members[draw + (draw >= self._position[data])])

    def pair_item(self, index: int, partner: int) -> dict[str, Any]:
        """The untransformed item of entries ``index`` (``x_i``) and ``partner`` (``x_j``)."""
        entry, other = self.data[index], self.data[partner]
        item: dict[str, Any] = {
            self.image_key: entry[self.image_key],
            self.pair_key: other[self.image_key],
            self.class_key: int(entry[self.class_key]),
        }
        for key, source in ((self.image_key, entry[self.image_key]), (self.pair_key, other[self.image_key])):
            path = _source(source)
            if path is not None:
                item[f"{key}_source"] = path
        return item

    def _transform(self, index: int) -> Any:
        index = range(len(self.data))[index]  # a negative index counts from the end; out of range: IndexError
        item = self.pair_item(index, self.randomize(index))
        return self.transform(item)
