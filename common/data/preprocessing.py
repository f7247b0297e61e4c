"""Preprocessing of real volumes: bias field, geometry, size, lung mask and intensity, for converters and configs.

- :func:`n4_bias_field_correction`: N4ITK bias-field correction (Tustison et al. 2010), which Vu et al. (paper 004,
  sec. 4.4) apply to BraTS20 before the z-score normalisation. The dictionary transform for bundle configs is
  :class:`common.transforms.N4BiasFieldCorrectiond`.
- :func:`lung_mask`: a CT lung mask by HU threshold, the region in which the MCGAN synthesis places nodules (Han's
  thesis, sec. 6.2.1, places them "naturally on lung CT"); :func:`common.transforms.lung_mask` is this function.
- :func:`normalize_intensity`: z-score (paper 004 sec. 4.4: "standardized to zero-mean and unit variance"),
  percentile scaling, a CT HU window, or a min-max range (paper 004: D-SPLEEN "rescaled to [-1, 1]").
- :class:`VolumePreprocessing`: the chain the converters of :py:mod:`common.data.converters` apply to each case
  before writing it: N4, reorientation (MONAI ``Orientation``), resampling to a target spacing (``Spacing``), the
  in-plane size (``Resize`` or ``ResizeWithPadOrCrop``; papers 002 and 004 use 256 x 256 slices), the lung mask, then
  the intensity normalisation. Each step is a MONAI transform on a ``MetaTensor``, so the affine follows the
  geometry and the written files stay in world coordinates.

ITK is imported inside the functions, so ``import common`` stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    NormalizeIntensity,
    Orientationd,
    Resized,
    ResizeWithPadOrCrop,
    ScaleIntensity,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacingd,
)
from scipy import ndimage

__all__ = [
    "INTENSITY_MODES",
    "SIZE_MODES",
    "PreprocessedVolume",
    "VolumePreprocessing",
    "axial_axis",
    "lung_mask",
    "n4_bias_field_correction",
    "normalize_intensity",
    "parse_intensity",
]

INTENSITY_MODES: tuple[str, ...] = ("zscore", "percentile", "window", "range")
"""Intensity normalisations of :func:`normalize_intensity` (``mode`` or ``mode:a:b``)."""
SIZE_MODES: tuple[str, ...] = ("resize", "crop_pad")
"""How :class:`VolumePreprocessing` reaches its in-plane ``size``: interpolate, or centre crop / pad."""

logger = logging.getLogger(__name__)


def _itk_image(array: np.ndarray, spacing: Sequence[float]) -> Any:
    """An ITK image over a copy of ``array`` (numpy axis order, i.e. ``(z, y, x)``) with ``spacing`` in numpy order."""
    import itk

    image = itk.image_from_array(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in reversed(spacing)])  # ITK orders spacing x, y, z
    return image


def _interp_axis(values: np.ndarray, centres: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` along ``axis`` from samples at index positions ``centres`` onto the
    indices ``0 .. size - 1`` (constant beyond the first and last sample)."""
    target = np.clip(np.arange(size, dtype=np.float64), centres[0], centres[-1])
    right = np.clip(np.searchsorted(centres, target, side="right"), 1, len(centres) - 1) if len(centres) > 1 else None
    if right is None:
        return np.repeat(values, size, axis=axis)
    left = right - 1
    weight = (target - centres[left]) / (centres[right] - centres[left])
    shape = [1] * values.ndim
    shape[axis] = size
    weight = weight.reshape(shape)
    return np.take(values, left, axis=axis) * (1 - weight) + np.take(values, right, axis=axis) * weight


def n4_bias_field_correction(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    shrink_factor: int = 2,
    num_iterations: Sequence[int] = (50, 50, 30),
    convergence_threshold: float = 1e-3,
    num_control_points: int | Sequence[int] = 4,
    spline_order: int = 3,
    num_histogram_bins: int = 200,
    bias_field_fwhm: float = 0.15,
    wiener_filter_noise: float = 0.01,
) -> np.ndarray:
    """N4 bias-field correction of one 2D or 3D image (Tustison et al. 2010; Vu et al., paper 004, sec. 4.4).

    N4 models the image as ``v = u * b`` with a smooth multiplicative bias field ``b`` (a B-spline fitted in log space
    over ``len(num_iterations)`` levels of increasing resolution) and returns ``u = v / b``. The field is fitted on
    the image shrunk by ``shrink_factor`` (the usual speed-up), then its log is interpolated linearly back to the
    full grid and the whole image is divided by it.

    Only voxels that are positive and inside the mask drive the fit (the model is multiplicative, i.e. additive in
    ``log v``). Voxels outside the mask are divided by the same field, so the background stays where it was up to
    the field's scale. N4 fixes the field only up to a constant factor, so the corrected intensities have an
    arbitrary scale: normalise afterwards (paper 004 standardises to zero mean and unit variance).

    Args:
        image: the image, ``(H, W)`` or ``(D, H, W)`` (no channel axis), any real dtype.
        mask: foreground of the same shape (nonzero = inside). ``None``: Otsu's threshold of the image
            (``itk.OtsuThresholdImageFilter``), or ``image > 0`` when Otsu finds no foreground.
        spacing: voxel spacing in the array's axis order (default 1 on every axis), the ITK images' geometry. The
            B-spline lattice spans the image's extent with ``num_control_points`` per axis whatever the spacing, so
            the field is the same in voxel terms; on anisotropic images, raise the control points along long axes.
        shrink_factor: the fit runs on the image shrunk by this factor on every axis (1 = full resolution).
        num_iterations: maximum iterations per fitting level; its length is the number of levels.
        convergence_threshold: stop a level when the change of the field's coefficient of variation falls below it.
        num_control_points: B-spline control points at the first level, one number or one per axis (array order),
            each at least ``spline_order + 1``.
        spline_order: order of the B-spline.
        num_histogram_bins: histogram bins of the log intensities used in the sharpening step.
        bias_field_fwhm: full width at half maximum of the Gaussian that models the bias field's blurring of the
            intensity histogram.
        wiener_filter_noise: noise term of the Wiener deconvolution of the histogram.

    Returns:
        The corrected image, float32, same shape as ``image``.

    Raises:
        ValueError: the image is not 2D or 3D, the mask's shape differs, ``spacing`` or ``num_control_points`` has the
            wrong length,
            ``shrink_factor < 1``, ``num_iterations`` is empty, or no voxel is positive inside the mask.
    """
    import itk

    array = np.asarray(image, dtype=np.float32)
    ndim = array.ndim
    if ndim not in (2, 3):
        raise ValueError(f"N4 needs a 2D or 3D image without a channel axis, got shape {array.shape}.")
    spacing = (1.0,) * ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} values for a {ndim}D image.")
    if int(shrink_factor) < 1:
        raise ValueError(f"shrink_factor must be >= 1, got {shrink_factor}.")
    if len(num_iterations) == 0:
        raise ValueError("num_iterations needs at least one fitting level.")
    positive = array > 0

    float_type = itk.Image[itk.F, ndim]
    mask_type = itk.Image[itk.UC, ndim]
    # N4 takes the log of the input: non-positive voxels get a stand-in value 1 and are kept out of the mask.
    work = _itk_image(np.where(positive, array, np.float32(1.0)), spacing)

    if mask is None:
        otsu = itk.OtsuThresholdImageFilter[float_type, mask_type].New(
            Input=_itk_image(array, spacing), InsideValue=0, OutsideValue=1
        )
        otsu.Update()
        fg = itk.array_from_image(otsu.GetOutput()).astype(bool)
        if not (fg & positive).any():
            fg = positive
    else:
        fg = np.asarray(mask).astype(bool)
        if fg.shape != array.shape:
            raise ValueError(f"mask shape {fg.shape} differs from image shape {array.shape}.")
    fg &= positive
    if not fg.any():
        raise ValueError("no positive voxel inside the mask: N4 has nothing to fit.")
    mask_image = _itk_image(fg.astype(np.uint8), spacing)

    factor = int(shrink_factor)
    if factor > 1:
        fit_input = itk.ShrinkImageFilter[float_type, float_type].New(Input=work, ShrinkFactors=factor)
        fit_mask = itk.ShrinkImageFilter[mask_type, mask_type].New(Input=mask_image, ShrinkFactors=factor)
        fit_input.Update()
        fit_mask.Update()
        fit_input, fit_mask = fit_input.GetOutput(), fit_mask.GetOutput()
        if not itk.array_from_image(fit_mask).any():
            logger.warning("the mask vanishes when shrunk by %d; fitting N4 at full resolution.", factor)
            fit_input, fit_mask, factor = work, mask_image, 1
    else:
        fit_input, fit_mask = work, mask_image

    n4 = itk.N4BiasFieldCorrectionImageFilter[float_type, mask_type, float_type].New()
    n4.SetInput(fit_input)
    n4.SetMaskImage(fit_mask)
    n4.SetMaskLabel(1)
    n4.SetMaximumNumberOfIterations([int(n) for n in num_iterations])
    n4.SetNumberOfFittingLevels(len(num_iterations))
    n4.SetConvergenceThreshold(float(convergence_threshold))
    points = [int(num_control_points)] * ndim if np.isscalar(num_control_points) else list(num_control_points)
    if len(points) != ndim:
        raise ValueError(f"num_control_points {num_control_points} has {len(points)} values for a {ndim}D image.")
    n4.SetNumberOfControlPoints([int(p) for p in reversed(points)])
    n4.SetSplineOrder(int(spline_order))
    n4.SetNumberOfHistogramBins(int(num_histogram_bins))
    n4.SetBiasFieldFullWidthAtHalfMaximum(float(bias_field_fwhm))
    n4.SetWienerFilterNoise(float(wiener_filter_noise))
    n4.Update()
    corrected_fit = itk.array_from_image(n4.GetOutput())
    # the whole fitted grid is divided by the field, so input / output is the field everywhere (all inputs > 0)
    log_bias = np.log(itk.array_from_image(fit_input).astype(np.float64)) - np.log(
        np.maximum(corrected_fit.astype(np.float64), np.finfo(np.float32).tiny)
    )
    if factor > 1:
        # the shrunk grid's voxel centres in full-resolution index units, per numpy axis
        origin_full = np.asarray(work.GetOrigin(), dtype=np.float64)[::-1]
        origin_fit = np.asarray(fit_input.GetOrigin(), dtype=np.float64)[::-1]
        spacing_fit = np.asarray(fit_input.GetSpacing(), dtype=np.float64)[::-1]
        for axis in range(ndim):
            centres = origin_fit[axis] - origin_full[axis] + spacing_fit[axis] * np.arange(log_bias.shape[axis])
            log_bias = _interp_axis(log_bias, centres / spacing[axis], array.shape[axis], axis)
    logger.debug("N4: %d levels, %d voxels in the mask, shrink %d.", len(num_iterations), int(fg.sum()), factor)
    return (array / np.exp(log_bias)).astype(np.float32)


def lung_mask(
    volume_hu: np.ndarray, threshold: float = -500.0, closing: int = 2, axial_axis: int | None = None
) -> np.ndarray:
    """A lung mask of a CT volume by HU threshold: low-HU components not touching the in-plane borders, closed.

    Air outside the body touches the in-plane borders and is dropped; the lungs and the trachea may reach the
    cranio-caudal ends of a scan and are kept. Vessels and nodules inside the lungs are filled by a binary closing
    and hole filling. The MCGAN synthesis (:py:mod:`common.evaluation.mcgan`) places nodules inside this mask.

    Args:
        volume_hu: ``(*spatial)`` HU array, 2D or 3D (a leading channel of size 1 is dropped).
        threshold: HU below which a voxel is air-like (lung parenchyma is about -850 HU).
        closing: iterations of the binary closing.
        axial_axis: 3D: the cranio-caudal voxel axis, whose end faces do not count as border (default: the last).

    Returns:
        boolean mask of the volume's spatial shape.
    """
    v = np.asarray(volume_hu)
    if v.ndim in (3, 4) and v.shape[0] == 1:
        v = v[0]
    low = v < threshold
    labels, num = ndimage.label(low)
    border: set[int] = set()
    axial = None if v.ndim == 2 else (v.ndim - 1 if axial_axis is None else int(axial_axis) % v.ndim)
    for axis in range(v.ndim):
        if axis == axial:
            continue
        for index in (0, -1):
            border.update(np.unique(np.take(labels, index, axis=axis)).tolist())
    keep = [i for i in range(1, num + 1) if i not in border]
    mask = np.isin(labels, keep)
    if closing > 0:  # on an edge-padded copy, so that a lung reaching the volume border is not eroded there
        padded = ndimage.binary_closing(np.pad(mask, closing, mode="edge"), iterations=closing)
        mask = padded[tuple(slice(closing, -closing) for _ in range(mask.ndim))]
    return ndimage.binary_fill_holes(mask)


def parse_intensity(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"zscore"``, ``"percentile:LOW:HIGH"``, ``"window:LOW:HIGH"`` or ``"range:A:B"`` -> ``(mode, numbers)``.

    ``percentile`` defaults to ``0.5:99.5``, ``range`` to ``-1:1``; ``window`` needs its two HU bounds.

    Raises:
        ValueError: an unknown mode, wrong numbers, or bounds not increasing.
    """
    parts = [p.strip() for p in str(spec).split(":")]
    mode = parts[0].lower()
    if mode not in INTENSITY_MODES:
        raise ValueError(f"intensity {spec!r}: unknown mode {mode!r}; expected one of {list(INTENSITY_MODES)}.")
    try:
        numbers = tuple(float(p) for p in parts[1:])
    except ValueError:
        raise ValueError(f"intensity {spec!r}: the bounds after {mode!r} must be numbers.") from None
    defaults = {"zscore": (), "percentile": (0.5, 99.5), "window": None, "range": (-1.0, 1.0)}
    if not numbers:
        numbers = defaults[mode]
        if numbers is None:
            raise ValueError(f"intensity {spec!r}: a window needs its bounds, e.g. window:-1000:400 (HU).")
    expected = 0 if mode == "zscore" else 2
    if len(numbers) != expected:
        raise ValueError(f"intensity {spec!r}: {mode} takes {expected} numbers, got {len(numbers)}.")
    if expected and not numbers[0] < numbers[1]:
        raise ValueError(f"intensity {spec!r}: the lower bound must be below the upper bound.")
    if mode == "percentile" and not (0 <= numbers[0] and numbers[1] <= 100):
        raise ValueError(f"intensity {spec!r}: percentiles lie in [0, 100].")
    return mode, numbers


def normalize_intensity(image: np.ndarray, spec: str) -> np.ndarray:
    """Normalise the intensities of a channel-first image, each channel on its own, with MONAI's transforms.

    - ``zscore``: zero mean and unit variance over the nonzero voxels, zeros (the skull-stripped background) kept
      (``NormalizeIntensity(nonzero=True, channel_wise=True)``; paper 004 sec. 4.4);
    - ``percentile:LOW:HIGH``: the LOW and HIGH percentiles map to 0 and 1, clipped (``ScaleIntensityRangePercentiles``);
    - ``window:LOW:HIGH``: a fixed window (CT: HU) maps to [0, 1], clipped (``ScaleIntensityRange``);
    - ``range:A:B``: each channel's minimum and maximum map to A and B (``ScaleIntensity``; paper 004 rescales
      D-SPLEEN to [-1, 1]).

    Args:
        image: ``(C, *spatial)``.
        spec: see :func:`parse_intensity`.

    Returns:
        float32 array of the same shape.
    """
    mode, numbers = parse_intensity(spec)
    array = np.asarray(image, dtype=np.float32)
    if mode == "zscore":
        transform: Any = NormalizeIntensity(nonzero=True, channel_wise=True)
    elif mode == "percentile":
        transform = ScaleIntensityRangePercentiles(numbers[0], numbers[1], 0.0, 1.0, clip=True, channel_wise=True)
    elif mode == "window":
        transform = ScaleIntensityRange(numbers[0], numbers[1], 0.0, 1.0, clip=True)
    else:
        transform = ScaleIntensity(minv=numbers[0], maxv=numbers[1], channel_wise=True)
    return np.asarray(transform(array), dtype=np.float32)


def axial_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to the world's inferior-superior direction (nibabel's axis codes S or I)."""
    codes = nib.aff2axcodes(affine)
    for axis, code in enumerate(codes):
        if code in ("S", "I"):
            return axis
    return 2


@dataclass
class PreprocessedVolume:
    """A case's arrays after :class:`VolumePreprocessing`.

    Attributes:
        channels: one ``(X, Y, Z)`` array per channel.
        label: the integer label ``(X, Y, Z)``, in the input's dtype.
        affine: the 4x4 voxel-to-world affine of the new grid.
        masks: extra boolean masks on the same grid, by name (``"lung"``).
    """

    channels: list[np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    masks: dict[str, np.ndarray]


@dataclass(frozen=True)
class VolumePreprocessing:
    """What the converters do to a case's 3D volume before writing it; every step is off by default.

    Steps, in order: N4 bias-field correction of every channel on the release's grid (paper 004 sec. 4.4, BraTS20),
    reorientation, resampling to ``spacing``, the in-plane ``size``, the ``lung`` mask (HU of channel 0, before any
    intensity change), and the intensity normalisation. Images are interpolated linearly (with anti-aliasing when
    shrunk), labels and masks by nearest neighbour; crop/pad pads images with each channel's minimum (air in CT,
    background in MR) and labels with 0. Integer images keep their dtype (rounded) unless N4 or an intensity step
    runs, whose outputs are float32; labels keep theirs.

    Attributes:
        n4: N4 bias-field correction (:func:`n4_bias_field_correction`, fitted at 1/``n4_shrink`` resolution).
        n4_shrink: shrink factor of the N4 fit (4 corrects a 240 x 240 x 155 BraTS volume in about 3 s).
        orientation: axis codes of the output, e.g. ``"RAS"`` (MONAI ``Orientation``); ``None`` keeps the release's.
        spacing: voxel spacing in mm per voxel axis (MONAI ``Spacing``); ``None`` keeps it.
        size: the two in-plane sizes (the axes other than the slice axis, in voxel axis order); ``None`` keeps them.
        size_mode: ``"resize"`` (interpolate; the field of view is kept, the spacing changes) or ``"crop_pad"``
            (centre crop / pad; the spacing is kept).
        lung: compute a CT lung mask (:func:`lung_mask`, HU threshold ``lung_threshold``).
        lung_threshold: HU threshold of the lung mask.
        intensity: :func:`normalize_intensity` spec, or ``None`` to keep the release's intensities.
    """

    n4: bool = False
    n4_shrink: int = 4
    orientation: str | None = None
    spacing: tuple[float, ...] | None = None
    size: tuple[int, int] | None = None
    size_mode: str = "resize"
    lung: bool = False
    lung_threshold: float = -500.0
    intensity: str | None = None

    def __post_init__(self) -> None:
        if self.orientation is not None:
            codes = str(self.orientation).upper()
            pairs = ({"L", "R"}, {"A", "P"}, {"S", "I"})
            if len(codes) != 3 or any(sum(c in pair for c in codes) != 1 for pair in pairs):
                raise ValueError(f"orientation {self.orientation!r}: expected 3 axis codes such as RAS or LPS.")
            object.__setattr__(self, "orientation", codes)
        if self.spacing is not None:
            spacing = tuple(float(s) for s in self.spacing)
            if len(spacing) != 3 or min(spacing) <= 0:
                raise ValueError(f"spacing {self.spacing!r}: expected 3 positive numbers (mm per voxel axis).")
            object.__setattr__(self, "spacing", spacing)
        if self.size is not None:
            if any(float(s) != int(s) for s in self.size):
                raise ValueError(f"size {self.size!r}: expected whole numbers of voxels, e.g. 256,256.")
            size = tuple(int(s) for s in self.size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size {self.size!r}: expected 2 positive in-plane sizes, e.g. 256,256.")
            object.__setattr__(self, "size", size)
        if self.size_mode not in SIZE_MODES:
            raise ValueError(f"size_mode {self.size_mode!r}: expected one of {list(SIZE_MODES)}.")
        if int(self.n4_shrink) < 1:
            raise ValueError(f"n4_shrink must be >= 1, got {self.n4_shrink!r}.")
        if self.intensity is not None:
            parse_intensity(self.intensity)

    @property
    def is_identity(self) -> bool:
        """True when no step is on."""
        return not (self.n4 or self.orientation or self.spacing or self.size or self.lung or self.intensity)

    def as_dict(self) -> dict[str, Any]:
        """The steps that are on, JSON-ready (recorded with a conversion; a re-run must agree)."""
        out: dict[str, Any] = {}
        if self.n4:
            out.update(n4=True, n4_shrink=int(self.n4_shrink))
        if self.orientation:
            out["orientation"] = self.orientation
        if self.spacing:
            out["spacing"] = list(self.spacing)
        if self.size:
            out.update(size=list(self.size), size_mode=self.size_mode)
        if self.lung:
            out.update(lung=True, lung_threshold=float(self.lung_threshold))
        if self.intensity:
            out["intensity"] = self.intensity
        return out

    def __call__(
        self, channels: Sequence[np.ndarray], label: np.ndarray, affine: np.ndarray, slice_axis: int | None = None
    ) -> PreprocessedVolume:
        """Preprocess one case.

        Args:
            channels: one ``(X, Y, Z)`` array per channel, on one grid.
            label: integer label ``(X, Y, Z)``.
            affine: 4x4 voxel-to-world affine of that grid.
            slice_axis: the voxel axis (after reorientation) that is not in-plane for ``size``; ``None`` for the
                axial axis of the (reoriented) affine.

        Returns:
            the new arrays, affine and masks; unchanged inputs (no copy) when no step is on.

        Raises:
            ValueError: a step cannot run on this case (e.g. N4 on a channel without positive voxels).
        """
        channels = [np.asarray(c) for c in channels]
        label = np.asarray(label)
        if self.is_identity:
            return PreprocessedVolume(channels, label, np.asarray(affine, dtype=np.float64), {})
        dtypes = [c.dtype for c in channels]
        if self.n4:
            spacing = tuple(float(s) for s in nib.affines.voxel_sizes(affine))
            channels = [
                n4_bias_field_correction(c, spacing=spacing, shrink_factor=int(self.n4_shrink)) for c in channels
            ]
            dtypes = [np.dtype(np.float32)] * len(channels)  # N4's output has an arbitrary scale: never rounded
        data: dict[str, Any] = {
            "image": MetaTensor(torch.as_tensor(np.stack([c.astype(np.float32) for c in channels])), affine=affine),
            "label": MetaTensor(torch.as_tensor(label[None].astype(np.float32)), affine=affine),
        }
        keys = ["image", "label"]
        if self.orientation:
            data = Orientationd(keys, axcodes=self.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))(data)
        if self.spacing:
            data = Spacingd(keys, pixdim=self.spacing, mode=("bilinear", "nearest"))(data)
        if self.size:
            data = self._resize(data, slice_axis)
        image = data["image"].numpy()
        new_affine = np.asarray(data["image"].affine, dtype=np.float64)
        masks: dict[str, np.ndarray] = {}
        if self.lung:
            axial = axial_axis(new_affine) if slice_axis is None else slice_axis
            masks["lung"] = lung_mask(image[0], self.lung_threshold, axial_axis=axial)
        if self.intensity:
            image = normalize_intensity(image, self.intensity)
            out = [image[i] for i in range(image.shape[0])]
        else:
            out = [_like(image[i], dtype) for i, dtype in enumerate(dtypes)]
        new_label = np.rint(data["label"].numpy()[0]).astype(label.dtype)
        return PreprocessedVolume(out, new_label, new_affine, masks)

    def _resize(self, data: dict[str, Any], slice_axis: int | None) -> dict[str, Any]:
        """Bring the two in-plane axes to ``size`` (the slice axis keeps its length)."""
        axis = axial_axis(np.asarray(data["image"].affine)) if slice_axis is None else int(slice_axis)
        in_plane = iter(self.size or ())
        target = tuple(-1 if a == axis else next(in_plane) for a in range(3))
        if self.size_mode == "resize":
            return Resized(["image", "label"], target, mode=("bilinear", "nearest"), anti_aliasing=(True, False))(data)
        shape = data["image"].shape[1:]
        target = tuple(shape[a] if t == -1 else t for a, t in enumerate(target))
        image = data["image"]
        minimum = image.reshape(image.shape[0], -1).amin(dim=1)
        shifted = image - minimum.view(-1, 1, 1, 1)  # pad with each channel's minimum: pad zeros, shift back
        data = dict(data, image=ResizeWithPadOrCrop(target)(shifted) + minimum.view(-1, 1, 1, 1))
        data["label"] = ResizeWithPadOrCrop(target)(data["label"])
        return data


def _like(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` (float) back in an integer input ``dtype`` (rounded, clipped to its range); floats as float32."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return np.asarray(array, dtype=np.float32)
