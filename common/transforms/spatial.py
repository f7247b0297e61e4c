"""Dropping the trailing singleton axes of a 2D slice stored as a 3D file, e.g. an ``(H, W, 1)`` NIfTI.

Most tools write a 2D slice as a NIfTI (or a single DICOM file, read by ITK as a one-slice volume) of shape
``(H, W, 1)``; ``LoadImaged(ensure_channel_first=True)`` then gives ``(1, H, W, 1)``, which 2D transforms such as
``Resized`` refuse. :class:`SqueezeToSpatialDims` removes such axes with MONAI's ``SqueezeDim``. The affine keeps
its 4x4 form (``update_meta=False``): it maps voxel ``(i, j, 0)`` to the same world point as before, and it is the
form a native ``(H, W)`` NIfTI is loaded with, so files of either kind in one entry share one convention. The
``spatial_shape`` metadata is cut to the kept axes; the inverse puts the axes back (for ``Invertd``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from common.utils.errors import UserInputError
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, SqueezeDim
from monai.utils import TraceKeys

__all__ = ["SpatialAxesError", "SqueezeToSpatialDims", "SqueezeToSpatialDimsd"]


class SpatialAxesError(UserInputError, ValueError):
    """Raised when an image has more spatial axes than ``spatial_dims`` and the extra ones are not singleton."""


class SqueezeToSpatialDims(InvertibleTransform):
    """Drop the singleton axes after the first ``spatial_dims`` spatial axes of a channel-first image.

    ``(C, H, W, 1)`` becomes ``(C, H, W)`` when ``spatial_dims`` is 2; an image with ``spatial_dims`` spatial axes or
    fewer is returned unchanged (so the transform is a no-op in 3D bundles).

    Args:
        spatial_dims: number of spatial axes the image must end with (2 or 3).
    """

    backend = SqueezeDim.backend

    def __init__(self, spatial_dims: int) -> None:
        if int(spatial_dims) < 1:
            raise ValueError(f"spatial_dims must be at least 1, got {spatial_dims}.")
        self.spatial_dims = int(spatial_dims)
        self.squeeze = SqueezeDim(dim=-1, update_meta=False)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Squeeze the trailing axes.

        Args:
            img: channel-first image ``(C, *spatial, *extra)`` whose ``extra`` axes all have size 1.

        Returns:
            ``(C, *spatial)``; a MetaTensor keeps its affine and its ``spatial_shape`` metadata is cut to ``spatial``.

        Raises:
            SpatialAxesError: when an extra axis is not singleton (the file then holds a volume, not a slice).
        """
        extra = tuple(int(s) for s in img.shape[1 + self.spatial_dims :])
        if any(s != 1 for s in extra):
            source = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
            name = f"'{source}' " if source else ""
            raise SpatialAxesError(
                f"image {name}of shape {tuple(img.shape[1:])} (channel first: {tuple(img.shape)}) has axes "
                f"{extra} beyond its {self.spatial_dims} spatial axes; only singleton axes can be dropped "
                f"(a {self.spatial_dims}D slice stored as {('H', 'W', 'D')[: self.spatial_dims] + ('1',)}). "
                f"Check spatial_dims, or store a channels-last image with its channels in the 5th NIfTI dim."
            )
        for _ in extra:
            img = self.squeeze(img)
        if isinstance(img, MetaTensor):  # pushed even when nothing was squeezed, so that `inverse` pops its own
            info = {"num_squeezed": len(extra)}
            shape = img.meta.get("spatial_shape")
            if shape is not None and len(shape) > self.spatial_dims:
                info["spatial_shape"] = shape
                img.meta["spatial_shape"] = shape[: self.spatial_dims]
            self.push_transform(img, extra_info=info)
        return img

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Put the dropped singleton axes back (and the original ``spatial_shape`` metadata).

        Args:
            data: ``(C, *spatial)`` MetaTensor whose last applied operation is this transform's.

        Returns:
            ``(C, *spatial, 1, ...)``.
        """
        transform = self.pop_transform(data)
        info = transform[TraceKeys.EXTRA_INFO]
        for _ in range(int(info["num_squeezed"])):
            data = data.unsqueeze(-1)
        if "spatial_shape" in info:
            data.meta["spatial_shape"] = info["spatial_shape"]
        return data


class SqueezeToSpatialDimsd(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`SqueezeToSpatialDims`, to put right after ``LoadImaged``.

    Args:
        keys: keys of the channel-first images.
        spatial_dims: number of spatial axes (``'@spatial_dims'`` in a bundle config).
        allow_missing_keys: don't raise when a key is missing.
    """

    backend = SqueezeToSpatialDims.backend

    def __init__(self, keys: KeysCollection, spatial_dims: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.squeezer = SqueezeToSpatialDims(spatial_dims)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.squeezer(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.squeezer.inverse(d[key])
        return d
