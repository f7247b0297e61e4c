"""Adaptive discriminator augmentation, ADA (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data"), in 2D and 3D.

Every image the discriminator sees, real or generated, in the discriminator's and in the generator's update, goes
through a pipeline of random transformations, each applied to a sample with probability ``p`` (sec. 2). As long as
``p`` stays below about 0.8 the transformations do not "leak" into the generated images (sec. 2.3). ``p`` is tuned
during training from an overfitting heuristic (sec. 3): ``r_t = E[sign(D_train)]``, the mean sign of the
discriminator's outputs on the (augmented) real training images, is compared with a target (0.6); every few
iterations ``p`` moves by ``sign(r_t - target) * N / (speed_kimg * 1000)`` with ``N`` the number of images shown
since the last adjustment, so that it can rise from 0 to 1 within ``speed_kimg`` (500) thousand images.

The pipeline here is a documented subset of ADA's, the transformations that have a meaning in 2D and in 3D medical
images, in ADA's order and with ADA's distributions:

1. **x-flip** (``"xflip"``): with probability ``p`` the sample is mirrored along the first spatial axis with
   probability 1/2 (the left-right axis of the project's arrays, the horizontal axis of the sample grids);
2. **90-degree rotations** (``"rotate90"``): with probability ``p``, a rotation by ``k * 90`` degrees, ``k`` uniform in
   ``{0, 1, 2, 3}``, in the axial plane (the first two spatial axes; ``k`` in ``{0, 2}`` when that plane is not
   square);
3. **integer translation** (``"xint"``, ADA's pixel blitting): with probability ``p``, a shift by a whole number of
   pixels (voxels) along every spatial axis, uniform in ``[-0.125, 0.125]`` of the axis' size, the uncovered border
   filled by reflection (ADA's padding);
4. **isotropic scaling** (``"scale"``): with probability ``p``, a scale ``2^N(0, 0.2^2)`` about the image centre;
5. **arbitrary rotation** (``"rotate"``): with probability ``p``, a rotation by an angle uniform in ``[-pi, pi]`` in
   the axial plane (ADA rotates twice, before and after its anisotropic scaling, each with probability
   ``1 - sqrt(1 - p)``; without that scaling the two compose into one rotation applied with probability ``p``);
   scaling and rotation are resampled together, bilinearly with reflection padding (``affine_grid`` and
   ``grid_sample``, 2D or 3D), without ADA's anti-aliasing filters;
6. **brightness** (``"brightness"``): with probability ``p``, ``x + b``, ``b ~ N(0, 0.2^2)``;
7. **contrast** (``"contrast"``): with probability ``p``, ``x * c``, ``c = 2^N(0, 0.5^2)`` (about 0, the middle of
   the ``[-1, 1]`` intensity range, as ADA's colour matrix).

Not included: ADA's anisotropic scaling, fractional translation, luma flip, hue and saturation (colour-image
transformations), and its image-space filtering and corruptions. All transformations are differentiable with
respect to the images, so the generator is trained through them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from common.utils import get_world_size

__all__ = ["ADA_TRANSFORMS", "AdaptiveAugment"]

ADA_TRANSFORMS = ("xflip", "rotate90", "xint", "scale", "rotate", "brightness", "contrast")
"""The implemented transformations, in the order they are applied."""

XINT_MAX = 0.125
SCALE_STD = 0.2
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map integer positions to ``[0, size)`` by reflection about the edge voxels (``numpy.pad(mode="reflect")``)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index < size, index, period - index)


class AdaptiveAugment(nn.Module):
    """The ADA pipeline with its adaptive probability ``p`` and the sign statistics that tune it.

    Args:
        target: the target of the overfitting heuristic ``r_t`` (0.6 in ADA).
        speed_kimg: thousands of images over which ``p`` can move from 0 to 1 (500 in ADA).
        transforms: which transformations of :data:`ADA_TRANSFORMS` to apply (default: all); e.g. the geometric
            ones only for label masks.
        initial_p: ``p`` at the start (0 in ADA; fixed augmentation = a constant ``p`` that is never adjusted).

    Attributes:
        p: buffer, the current probability (scalar).
        sign_sum: buffer, the sum of ``sign(D(real))`` since the last adjustment.
        sign_count: buffer, how many outputs ``sign_sum`` holds.

    Shapes:
        ``forward``: input ``(B, C, *spatial)`` with 2 or 3 spatial dims; output the same shape. Each sample draws
        its own transformations; all channels of a sample share them.
    """

    p: torch.Tensor
    sign_sum: torch.Tensor
    sign_count: torch.Tensor

    def __init__(
        self,
        target: float = 0.6,
        speed_kimg: float = 500.0,
        transforms: Sequence[str] = ADA_TRANSFORMS,
        initial_p: float = 0.0,
    ) -> None:
        super().__init__()
        transforms = (transforms,) if isinstance(transforms, str) else tuple(transforms)
        unknown = [t for t in transforms if t not in ADA_TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown ADA transforms {unknown}; implemented: {list(ADA_TRANSFORMS)}.")
        if speed_kimg <= 0:
            raise ValueError(f"speed_kimg must be > 0, got {speed_kimg}.")
        if not 0.0 <= initial_p <= 1.0:
            raise ValueError(f"initial_p must be in [0, 1], got {initial_p}.")
        self.target = float(target)
        self.speed_kimg = float(speed_kimg)
        self.transforms = tuple(t for t in ADA_TRANSFORMS if t in transforms)
        self.register_buffer("p", torch.tensor(float(initial_p)))
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("sign_count", torch.zeros((), dtype=torch.float64))
        # host copy of ``p`` and the (storage, version) of the buffer it was read from: ``forward`` reads the buffer
        # (a device-to-host copy, a sync on a GPU) only after ``p`` changed, not on every call
        self._p_read: tuple[int, int, float] | None = None

    # ----------------------------------------------------------------- the adaptive probability
    @torch.no_grad()
    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add the signs of the discriminator's outputs on real images to the statistics of ``r_t``."""
        self.sign_sum += torch.sign(real_logits.detach().double()).sum()
        self.sign_count += real_logits.numel()

    @torch.no_grad()
    def adjust(self, real_sign_mean: float, batch_images: int) -> None:
        """Move ``p`` by ``sign(r_t - target) * batch_images / (speed_kimg * 1000)``, clamped to ``[0, 1]``.

        Args:
            real_sign_mean: ``r_t = E[sign(D(real))]`` over the images since the last adjustment.
            batch_images: how many real images (over all ranks) were shown since the last adjustment.
        """
        step = math.copysign(1.0, real_sign_mean - self.target) if real_sign_mean != self.target else 0.0
        self.p.copy_((self.p + step * batch_images / (self.speed_kimg * 1000.0)).clamp(0.0, 1.0))

    @torch.no_grad()
    def update(self, batch_images: int) -> float | None:
        """Adjust ``p`` from the accumulated signs (summed over ranks when distributed) and reset them.

        Args:
            batch_images: how many real images (over all ranks) were shown since the last adjustment.

        Returns:
            ``r_t``, or ``None`` (and ``p`` unchanged) when no sign was accumulated.
        """
        stats = torch.stack([self.sign_sum, self.sign_count])
        if get_world_size() > 1:
            dist.all_reduce(stats, op=dist.ReduceOp.SUM)
        self.sign_sum.zero_()
        self.sign_count.zero_()
        if stats[1] == 0:
            return None
        r_t = float(stats[0] / stats[1])
        self.adjust(r_t, batch_images)
        return r_t

    def probability(self) -> float:
        """The current ``p`` as a Python float, read from the buffer only when it changed since the last read.

        Any in-place change of the buffer (``adjust``, ``load_state_dict``, ``p.fill_``) bumps its version counter,
        and a move to another device gives it new storage; either makes the next call read it again.
        """
        key = (self.p.data_ptr(), self.p._version)
        if self._p_read is None or self._p_read[:2] != key:
            self._p_read = (*key, self._read_p())
        return self._p_read[2]

    def _read_p(self) -> float:
        return float(self.p)

    # ----------------------------------------------------------------- the pipeline
    @staticmethod
    def _chosen(batch: int, p: float) -> torch.Tensor:
        """Per-sample booleans ``(B,)`` on the CPU, each true with probability ``p`` (drawn on the CPU: the same
        draws on every device)."""
        return torch.rand(batch) < p

    @staticmethod
    def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` values shaped ``(B, 1, ..., 1)`` to broadcast over ``x`` (booleans stay booleans)."""
        values = values.to(x.device) if values.dtype == torch.bool else values.to(x.device, x.dtype)
        return values.reshape((-1,) + (1,) * (x.ndim - 1))

    def _xflip(self, x: torch.Tensor, p: float) -> torch.Tensor:
        flip = self._chosen(x.shape[0], p) & (torch.rand(x.shape[0]) < 0.5)
        if not flip.any():
            return x
        return torch.where(self._per_sample(flip, x), x.flip(2), x)

    def _rotate90(self, x: torch.Tensor, p: float) -> torch.Tensor:
        square = x.shape[2] == x.shape[3]
        k = torch.randint(0, 4, (x.shape[0],)) if square else 2 * torch.randint(0, 2, (x.shape[0],))
        k = torch.where(self._chosen(x.shape[0], p), k, torch.zeros_like(k))
        out = x
        for turns in (1, 2, 3):
            mask = k == turns
            if mask.any():
                out = torch.where(self._per_sample(mask, x), torch.rot90(x, turns, dims=(2, 3)), out)
        return out

    def _xint(self, x: torch.Tensor, p: float) -> torch.Tensor:
        chosen = self._chosen(x.shape[0], p)
        if not chosen.any():
            return x
        batch, spatial = x.shape[0], x.shape[2:]
        for axis, size in enumerate(spatial):
            shift = ((torch.rand(batch) * 2 - 1) * XINT_MAX * size).round().long()
            shift = torch.where(chosen, shift, torch.zeros_like(shift))
            # output voxel j shows input voxel j - shift, reflected at the borders
            index = _reflect(torch.arange(size)[None, :] - shift[:, None], size).to(x.device)
            shape = [batch] + [1] * (x.ndim - 1)
            shape[axis + 2] = size
            x = torch.gather(x, axis + 2, index.reshape(shape).expand_as(x))
        return x

    def _scale_rotate(self, x: torch.Tensor, p: float) -> torch.Tensor:
        batch = x.shape[0]
        scale, angle = torch.ones(batch), torch.zeros(batch)
        if "scale" in self.transforms:
            scale = torch.where(self._chosen(batch, p), 2 ** (torch.randn(batch) * SCALE_STD), scale)
        if "rotate" in self.transforms:
            angle = torch.where(self._chosen(batch, p), (torch.rand(batch) * 2 - 1) * math.pi, angle)
        moved = (scale != 1) | (angle != 0)
        if not moved.any():
            return x
        return torch.where(self._per_sample(moved, x), self.warp(x, scale, angle), x)

    @staticmethod
    def warp(x: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Scale every sample about its centre and rotate it in the axial plane, bilinearly, reflection padding.

        Args:
            x: images ``(B, C, *spatial)``, 2 or 3 spatial dims.
            scale: ``(B,)`` isotropic scale factors (> 1 enlarges).
            angle: ``(B,)`` rotation angles in radians in the plane of the first two spatial axes (``pi / 2`` turns
                the first axis onto the second, as ``torch.rot90(x, 1, dims=(2, 3))``).

        Returns:
            The resampled images, same shape.
        """
        batch, spatial = x.shape[0], list(x.shape[2:])
        n = len(spatial)
        # the inverse map (output -> input position) in voxel units about the centre: R(-angle) / scale
        inverse = torch.eye(n).repeat(batch, 1, 1)
        cos, sin = torch.cos(angle).float(), torch.sin(angle).float()
        inverse[:, 0, 0], inverse[:, 0, 1], inverse[:, 1, 0], inverse[:, 1, 1] = cos, sin, -sin, cos
        inverse = inverse / scale.float()[:, None, None]
        # normalised coordinates (align_corners=False): u = position / (size / 2), per axis
        sizes = torch.tensor(spatial, dtype=torch.float32)
        normalised = inverse * sizes[None, None, :] / sizes[None, :, None]
        # affine_grid orders the coordinates from the last spatial axis to the first
        theta = torch.cat([normalised.flip(1, 2), torch.zeros(batch, n, 1)], 2).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _color(self, x: torch.Tensor, p: float) -> torch.Tensor:
        batch = x.shape[0]
        if "brightness" in self.transforms:
            b = torch.where(self._chosen(batch, p), torch.randn(batch) * BRIGHTNESS_STD, 0.0)
            x = x + self._per_sample(b, x)
        if "contrast" in self.transforms:
            c = torch.where(self._chosen(batch, p), 2 ** (torch.randn(batch) * CONTRAST_STD), 1.0)
            x = x * self._per_sample(c, x)
        return x

    def forward(self, x: torch.Tensor, color_channels: int | None = None) -> torch.Tensor:
        """Augment a batch with the current ``p``.

        Args:
            x: images ``(B, C, *spatial)``, 2 or 3 spatial dims, intensities in about ``[-1, 1]``.
            color_channels: the colour transformations (brightness, contrast) change only the first
                ``color_channels`` channels (e.g. the image, not a condition mask concatenated after it); default all.

        Returns:
            The augmented images, same shape; ``x`` itself when ``p`` is 0.
        """
        if x.ndim not in (4, 5):
            raise ValueError(f"expected a (B, C, *spatial) batch with 2 or 3 spatial dims, got shape {tuple(x.shape)}.")
        p = self.probability()
        if p <= 0.0:
            return x
        if "xflip" in self.transforms:
            x = self._xflip(x, p)
        if "rotate90" in self.transforms:
            x = self._rotate90(x, p)
        if "xint" in self.transforms:
            x = self._xint(x, p)
        if "scale" in self.transforms or "rotate" in self.transforms:
            x = self._scale_rotate(x, p)
        if "brightness" in self.transforms or "contrast" in self.transforms:
            channels = x.shape[1] if color_channels is None else int(color_channels)
            if channels >= x.shape[1]:
                x = self._color(x, p)
            elif channels > 0:  # 0: no image channels (M-SG's masks), nothing to colour
                x = torch.cat([self._color(x[:, :channels], p), x[:, channels:]], 1)
        return x

    def extra_repr(self) -> str:
        return f"target={self.target}, speed_kimg={self.speed_kimg}, transforms={list(self.transforms)}"
