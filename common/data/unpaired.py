"""Unpaired two-domain samples for cycle-consistent translation (CDA-GAN sec. 3.1: positives P, negatives N)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

__all__ = ["UnpairedDataset", "split_by_class"]


def split_by_class(
    entries: Sequence[Mapping[str, Any]], class_key: str = "class", positive: int = 1
) -> tuple[list[dict], list[dict]]:
    """Split datalist entries into positives (``class == positive``) and negatives (every other class).

    Raises:
        ValueError: when either domain is empty (a translation needs both).
    """
    pos = [dict(e) for e in entries if int(e[class_key]) == positive]
    neg = [dict(e) for e in entries if int(e[class_key]) != positive]
    if not pos or not neg:
        raise ValueError(f"both domains need samples: {len(pos)} positives and {len(neg)} negatives.")
    return pos, neg


class UnpairedDataset(Dataset):
    """Unpaired positives and negatives of one datalist; item ``i``: positive ``i mod |P|`` with a random negative.

    This is CycleGAN's unaligned sampling: one epoch visits every positive once, negatives at random. Each item is
    ``{positive_key: ..., negative_key: ..., and the positive's other transformed keys with a "positive_" prefix,
    the negative's with "negative_"}``; e.g. the positive's tumour mask under ``label_key`` becomes ``mask_key``.

    Args:
        data: datalist entries of both domains, split by :func:`split_by_class` on ``class_key``.
        transform_positive: dictionary transform of a positive entry (e.g. loading ``image`` and ``label``).
        transform_negative: dictionary transform of a negative entry.
        image_key: image key of the entries after transformation.
        label_key: key of the positive's mask after transformation (``None``: no mask).
        positive_key / negative_key / mask_key: keys of the output item.
        seed: seed of the negative sampling.
        class_key: key of the class in the entries; positive: the positive class value.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        transform_positive: Callable[[dict], dict],
        transform_negative: Callable[[dict], dict] | None = None,
        image_key: str = "image",
        label_key: str | None = "label",
        positive_key: str = "positive",
        negative_key: str = "negative",
        mask_key: str = "mask",
        seed: int = 0,
        class_key: str = "class",
        positive: int = 1,
    ) -> None:
        self.positives, self.negatives = split_by_class(data, class_key, positive)
        self.transform_positive = transform_positive
        self.transform_negative = transform_negative or transform_positive
        self.image_key, self.label_key = image_key, label_key
        self.positive_key, self.negative_key, self.mask_key = positive_key, negative_key, mask_key
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.positives)

    def __getitem__(self, index: int) -> dict:
        p = self.transform_positive(dict(self.positives[index % len(self.positives)]))
        n = self.transform_negative(dict(self.negatives[int(self.rng.integers(len(self.negatives)))]))
        item = {self.positive_key: p[self.image_key], self.negative_key: n[self.image_key]}
        if self.label_key is not None:
            item[self.mask_key] = p[self.label_key]
        return item
