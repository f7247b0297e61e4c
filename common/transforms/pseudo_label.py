"""The pseudo-label transform of CDA-GAN's baseline (Xu et al. 2023, sec. 5.2, Table 3 "Pseudo-label method"):
synthetic tumour images ``G_P(x)`` made from real negatives ``x`` get the label ``mean_c |G_P(x) - x| > threshold``.
The datalist operations that bring these images into the training set are in :mod:`common.data.enhancement`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["DifferencePseudoLabeld"]


class DifferencePseudoLabeld(MapTransform):
    """Threshold a difference map into a binary label (CDA-GAN sec. 5.2, the pseudo-label baseline).

    With one key the item is the difference map itself; with two keys ``(a, b)`` it is ``|a - b|``. The channel
    mean is thresholded: ``label = mean_c d > threshold``, shape ``(1, *spatial)``. Items lacking a key are left
    unchanged when ``allow_missing_keys`` is set, so real entries (with a label) and synthetic ones (with a source)
    can share one pipeline.

    Args:
        keys: one key (a difference map) or two keys (two images of the same size and intensity range).
        threshold: the threshold on the channel-mean absolute difference.
        output_key: where the label is written.
        allow_missing_keys: skip items that lack a key.
    """

    def __init__(
        self, keys: KeysCollection, threshold: float = 0.1, output_key: str = "label", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) not in (1, 2):
            raise ValueError(f"give one key (a difference map) or two (two images), got {self.keys}.")
        self.threshold = threshold
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if len(present) != len(self.keys):
            return d  # allow_missing_keys: not a pseudo-labelled item
        items = [d[k] for k in present]
        if len(items) == 2 and tuple(items[0].shape) != tuple(items[1].shape):
            raise ValueError(
                f"'{present[0]}' {tuple(items[0].shape)} and '{present[1]}' {tuple(items[1].shape)} differ."
            )
        diff = (items[0] - items[1]).abs() if len(items) == 2 else torch.as_tensor(items[0]).abs()
        label = (diff.float().mean(dim=0, keepdim=True) > self.threshold).float()
        d[self.output_key] = label
        return d
