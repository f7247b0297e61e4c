"""N4 bias-field correction as a dictionary transform for bundle configs (Vu et al., paper 004, sec. 4.4: N4ITK on
BraTS20 before the z-score normalisation). The ITK work is :func:`common.data.preprocessing.n4_bias_field_correction`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from common.data.preprocessing import n4_bias_field_correction
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

__all__ = ["N4BiasFieldCorrectiond"]


class N4BiasFieldCorrectiond(MapTransform):
    """N4 bias-field correction of channel-first images ``(C, *spatial)``, 2D or 3D, each channel on its own.

    The output has the input's shape and type (a ``MetaTensor`` keeps its metadata, a tensor its device), dtype
    float32. The spacing comes from a ``MetaTensor``'s ``pixdim`` unless ``spacing`` is given.

    Args:
        keys: the images to correct.
        mask_key: a foreground mask ``(1, *spatial)`` or ``(*spatial)`` used for every channel (nonzero = inside);
            ``None``: each channel's Otsu foreground (see :func:`~common.data.preprocessing.n4_bias_field_correction`).
        spacing: voxel spacing per spatial axis; ``None``: the ``MetaTensor``'s, else 1.
        shrink_factor: the fit runs on the image shrunk by this factor.
        num_iterations: maximum iterations per fitting level (its length is the number of levels).
        allow_missing_keys: skip items that lack a key.
        kwargs: further arguments of :func:`~common.data.preprocessing.n4_bias_field_correction`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = None,
        spacing: Sequence[float] | None = None,
        shrink_factor: int = 2,
        num_iterations: Sequence[int] = (50, 50, 30),
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.kwargs = dict(kwargs, shrink_factor=shrink_factor, num_iterations=tuple(num_iterations))

    def _spacing(self, img: Any, spatial_dims: int) -> tuple[float, ...] | None:
        if self.spacing is not None:
            return self.spacing
        if isinstance(img, MetaTensor):
            return tuple(float(s) for s in img.pixdim[:spatial_dims])
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = None
        if self.mask_key is not None:
            mask = np.asarray(torch.as_tensor(d[self.mask_key]).detach().cpu())
        for key in self.key_iterator(d):
            img = d[key]
            array = np.asarray(torch.as_tensor(img).detach().cpu(), dtype=np.float32)
            spatial_dims = array.ndim - 1
            if spatial_dims not in (2, 3):
                raise ValueError(f"'{key}': expected a channel-first 2D or 3D image, got shape {array.shape}.")
            channel_mask = None
            if mask is not None:
                channel_mask = mask[0] if mask.ndim == array.ndim else mask
                if channel_mask.shape != array.shape[1:]:
                    raise ValueError(f"'{self.mask_key}' {mask.shape} does not fit '{key}' {array.shape}.")
            spacing = self._spacing(img, spatial_dims)
            out = np.stack(
                [n4_bias_field_correction(c, mask=channel_mask, spacing=spacing, **self.kwargs) for c in array]
            )
            d[key] = convert_to_dst_type(
                out, dst=img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32
            )[0]
        return d
