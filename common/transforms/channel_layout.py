"""Synthetic images that hold only some channels of the real images' layout (Han's thesis sec. 4.2: PGGAN, MUNIT
and SimGAN generate and refine the T1c sequence alone, while the real datalists hold T1, T1c, T2 and FLAIR).

:class:`PlaceChannels` puts such an image's channels at their positions of the real layout (the other channels are
zero), so that one channel selection (:class:`common.transforms.SelectChannels`) serves real and synthetic images
alike; an image that already has the real layout passes unchanged. The channels a classifier reads must all be among
the synthetic ones (checked at construction), so the zero filling is never seen by the network.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = ["PlaceChannels", "PlaceChannelsd"]


class PlaceChannels(Transform):
    """Map a ``(len(channels), *spatial)`` image onto the ``(num_channels, *spatial)`` real layout.

    Args:
        num_channels: channels of the real layout.
        channels: positions in the real layout of the channels of the partial images; ``None``: every image must
            already have ``num_channels`` channels (identity).
        required: channels of the real layout that are read afterwards; each must be in ``channels``.

    Raises:
        ValueError: at construction for positions out of range or required channels the partial images lack; at
            call time for an image with neither ``num_channels`` nor ``len(channels)`` channels.
    """

    def __init__(
        self, num_channels: int, channels: Sequence[int] | None = None, required: Sequence[int] | None = None
    ) -> None:
        self.num_channels = int(num_channels)
        self.channels = None if channels is None else [int(c) for c in channels]
        if self.channels is not None:
            bad = [c for c in self.channels if not 0 <= c < self.num_channels]
            if bad or not self.channels or len(set(self.channels)) != len(self.channels):
                raise ValueError(
                    f"synthetic channels {self.channels} must be distinct positions in [0, {self.num_channels})."
                )
            lacking = [
                int(c) % self.num_channels for c in (required or []) if int(c) % self.num_channels not in self.channels
            ]
            if lacking:
                raise ValueError(
                    f"the classifier reads channels {list(required or [])} but the synthetic images hold only "
                    f"{self.channels} of the real layout (missing {lacking})."
                )

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` ``(C, *spatial)`` -> ``(num_channels, *spatial)``."""
        n = img.shape[0]
        if n == self.num_channels:
            return img
        if self.channels is None or n != len(self.channels):
            expected = [self.num_channels] + ([] if self.channels is None else [len(self.channels)])
            raise ValueError(f"an image with {n} channels; expected {' or '.join(map(str, expected))}.")
        out = img.new_zeros((self.num_channels, *img.shape[1:]))
        out[self.channels] = img
        return out


class PlaceChannelsd(MapTransform):
    """Dictionary version of :class:`PlaceChannels`."""

    def __init__(
        self,
        keys: KeysCollection,
        num_channels: int,
        channels: Sequence[int] | None = None,
        required: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.placer = PlaceChannels(num_channels, channels, required)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.placer(d[key])
        return d
