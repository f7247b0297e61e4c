"""Channel selection, e.g. one MR sequence out of the 4-channel T1/T1c/T2/FLAIR input (Han thesis, sec. 3.2.2)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = ["SelectChannels", "SelectChannelsd"]


class SelectChannels(Transform):
    """Keep the channels ``indices`` of a channel-first image ``(C, *spatial)``, in that order.

    Args:
        indices: channel indices to keep; ``None`` keeps all.
    """

    def __init__(self, indices: Sequence[int] | int | None) -> None:
        self.indices = None if indices is None else ([indices] if isinstance(indices, int) else list(indices))

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.indices is None:
            return img
        n = img.shape[0]
        bad = [i for i in self.indices if not -n <= i < n]
        if bad:
            raise ValueError(f"channel indices {bad} out of range for an image with {n} channels.")
        return img[self.indices]


class SelectChannelsd(MapTransform):
    """Dictionary version of :class:`SelectChannels`."""

    def __init__(self, keys: KeysCollection, indices: Sequence[int] | int | None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.selector = SelectChannels(indices)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.selector(d[key])
        return d
