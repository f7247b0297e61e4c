"""Intensity preprocessing of real images through ITK.

- :func:`n4_bias_field_correction`: N4ITK bias-field correction (Tustison et al. 2010), which Vu et al. (paper 004,
  sec. 4.4) apply to BraTS20 before the z-score normalisation. The dictionary transform for bundle configs is
  :class:`common.transforms.N4BiasFieldCorrectiond`.

ITK is imported inside the functions, so ``import common`` stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["n4_bias_field_correction"]

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
