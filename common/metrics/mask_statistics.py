"""Mask realism statistics: how the label maps of a synthetic image+mask set compare with real ones (class areas
and connected components, synthetic vs real).

For integer label maps with classes ``0 .. K-1`` (2D or 3D), every mask gives two numbers per class:

- the **area fraction**: the share of the mask's pixels/voxels that carry the class (so masks of different grid
  sizes compare);
- the **number of connected components** of the class, from :func:`scipy.ndimage.label` with the structuring
  element :func:`scipy.ndimage.generate_binary_structure` ``(spatial_dims, connectivity)``: ``connectivity=1``
  (the default) joins pixels that share a face (4-neighbourhood in 2D, 6-neighbourhood in 3D), ``connectivity =
  spatial_dims`` joins every touching pixel (8 / 26-neighbourhood). A class absent from a mask has 0 components.

:func:`compare_mask_sets` compares the two sets class by class: mean and standard deviation of each statistic in
each set, the 1-D Wasserstein distance between the two sets' distributions of it
(:func:`scipy.stats.wasserstein_distance`, in the statistic's own unit: area fraction, or components), and the
fraction of masks of each set that contain the class, with the classes that only one set has. Its output is a
JSON-friendly dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import convert_to_numpy
from scipy import ndimage
from scipy.stats import wasserstein_distance

__all__ = ["MASK_STATISTICS", "class_area_fractions", "class_component_counts", "compare_mask_sets", "mask_statistics"]

MASK_STATISTICS = ("area_fraction", "components")
"""Names of the per-class statistics of one mask, as keys of :func:`mask_statistics` and :func:`compare_mask_sets`."""


def _label_map(label: np.ndarray | torch.Tensor, num_classes: int, spatial_dims: int) -> np.ndarray:
    """The label map as an ``int64`` array ``(*S)``, checked: ``(*S)`` or ``(1, *S)``, integer values in ``[0, K)``."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    array = np.asarray(convert_to_numpy(label))
    if array.ndim == spatial_dims + 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != spatial_dims:
        raise ValueError(f"expected a {spatial_dims}D label map (*S) or (1, *S), got shape {array.shape}.")
    if array.size == 0:
        raise ValueError("the label map is empty.")
    if not np.issubdtype(array.dtype, np.integer) and not np.array_equal(array, np.round(array)):
        raise ValueError("the label map must hold integer class indices, got non-integer values.")
    labels = array.astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"label values must be in [0, {num_classes}), got values from {low} to {high}.")
    return labels


def class_area_fractions(label: np.ndarray | torch.Tensor, num_classes: int, spatial_dims: int) -> np.ndarray:
    """Share of the mask's pixels/voxels in each class.

    Args:
        label: integer label map ``(*S)`` or ``(1, *S)`` with ``len(S) == spatial_dims``, values in ``[0, K)``
            (a float array with integer values is accepted).
        num_classes: number of classes ``K``, background included.
        spatial_dims: 2 or 3.

    Returns:
        ``(K,)`` float64 fractions summing to 1.

    Raises:
        ValueError: for a label map of another shape, non-integer values or values outside ``[0, K)``.
    """
    labels = _label_map(label, num_classes, spatial_dims)
    return np.bincount(labels.ravel(), minlength=num_classes).astype(np.float64) / labels.size


def class_component_counts(
    label: np.ndarray | torch.Tensor, num_classes: int, spatial_dims: int, connectivity: int = 1
) -> np.ndarray:
    """Number of connected components of each class (see the module docstring for the connectivity).

    Args:
        label: integer label map ``(*S)`` or ``(1, *S)`` with ``len(S) == spatial_dims``, values in ``[0, K)``.
        num_classes: number of classes ``K``, background included.
        spatial_dims: 2 or 3.
        connectivity: 1 (pixels sharing a face) to ``spatial_dims`` (every touching pixel).

    Returns:
        ``(K,)`` int64 counts (0 for a class absent from the mask).

    Raises:
        ValueError: for a bad label map (see :func:`class_area_fractions`) or connectivity.
    """
    labels = _label_map(label, num_classes, spatial_dims)
    if not 1 <= connectivity <= spatial_dims:
        raise ValueError(f"connectivity must be in [1, {spatial_dims}] for {spatial_dims}D masks, got {connectivity}.")
    structure = ndimage.generate_binary_structure(spatial_dims, connectivity)
    present = np.bincount(labels.ravel(), minlength=num_classes) > 0
    counts = np.zeros(num_classes, dtype=np.int64)
    for k in np.flatnonzero(present):
        counts[k] = ndimage.label(labels == k, structure=structure)[1]
    return counts


def mask_statistics(
    labels: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    num_classes: int,
    spatial_dims: int,
    connectivity: int = 1,
) -> dict[str, np.ndarray]:
    """Both per-class statistics of every mask of a set.

    Args:
        labels: ``N`` label maps, a sequence of ``(*S)`` / ``(1, *S)`` arrays (grids may differ) or one array
            ``(N, *S)`` / ``(N, 1, *S)``.
        num_classes: number of classes ``K``, background included.
        spatial_dims: 2 or 3.
        connectivity: see :func:`class_component_counts`.

    Returns:
        ``{"area_fraction": (N, K) float64, "components": (N, K) int64}``.

    Raises:
        ValueError: for an empty set or a bad label map (naming its index in the set).
    """
    if len(labels) == 0:
        raise ValueError("the set of masks is empty.")
    areas, components = [], []
    for i, label in enumerate(labels):
        try:
            areas.append(class_area_fractions(label, num_classes, spatial_dims))
            components.append(class_component_counts(label, num_classes, spatial_dims, connectivity))
        except ValueError as e:
            raise ValueError(f"mask {i}: {e}") from e
    return {"area_fraction": np.stack(areas), "components": np.stack(components)}


def _summary(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    return {
        "real_mean": float(real.mean()),
        "real_std": float(real.std()),
        "synthetic_mean": float(synthetic.mean()),
        "synthetic_std": float(synthetic.std()),
        "wasserstein": float(wasserstein_distance(real, synthetic)),
    }


def compare_mask_sets(
    real: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    synthetic: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    num_classes: int,
    spatial_dims: int,
    connectivity: int = 1,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Class areas and connected components of a synthetic set of masks against a real one.

    For every class and every statistic of :data:`MASK_STATISTICS`, the result holds the mean and standard deviation
    (population, ``ddof=0``) over each set and the 1-D Wasserstein distance between the two sets' values (0 for
    identical sets). ``present_real`` / ``present_synthetic`` are the fractions of masks containing the class;
    ``classes_only_in_synthetic`` lists the classes found in some synthetic mask but in no real one (e.g. a
    generator that invents a class), ``classes_missing_in_synthetic`` the reverse. The ``mean_wasserstein_*``
    entries average the distance over the classes.

    Args:
        real: the real masks (see :func:`mask_statistics` for the forms).
        synthetic: the synthetic masks, same forms.
        num_classes: number of classes ``K``, background included.
        spatial_dims: 2 or 3.
        connectivity: see :func:`class_component_counts`.
        class_names: ``K`` names used as keys of ``classes``; default ``"0"``, ``"1"``, ...

    Returns:
        ``{"num_real", "num_synthetic", "num_classes", "spatial_dims", "connectivity",
        "classes": {name: {"area_fraction": {real_mean, real_std, synthetic_mean, synthetic_std, wasserstein},
        "components": {...}, "present_real", "present_synthetic"}}, "classes_only_in_synthetic": [names],
        "classes_missing_in_synthetic": [names], "mean_wasserstein_area_fraction", "mean_wasserstein_components"}``
        of python numbers, strings and lists.

    Raises:
        ValueError: for an empty set, a bad mask (naming its set and index) or ``class_names`` of another length.
    """
    names = [str(k) for k in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes or len(set(names)) != num_classes:
        raise ValueError(f"class_names must be {num_classes} distinct names, got {list(class_names or [])}.")
    stats = {}
    for which, masks in (("real", real), ("synthetic", synthetic)):
        try:
            stats[which] = mask_statistics(masks, num_classes, spatial_dims, connectivity)
        except ValueError as e:
            raise ValueError(f"{which} set: {e}") from e
    real_stats, synthetic_stats = stats["real"], stats["synthetic"]
    present_real = (real_stats["area_fraction"] > 0).mean(0)
    present_synthetic = (synthetic_stats["area_fraction"] > 0).mean(0)
    classes: dict[str, Any] = {}
    for k, name in enumerate(names):
        entry: dict[str, Any] = {
            stat: _summary(real_stats[stat][:, k].astype(np.float64), synthetic_stats[stat][:, k].astype(np.float64))
            for stat in MASK_STATISTICS
        }
        entry["present_real"] = float(present_real[k])
        entry["present_synthetic"] = float(present_synthetic[k])
        classes[name] = entry
    result: dict[str, Any] = {
        "num_real": int(real_stats["area_fraction"].shape[0]),
        "num_synthetic": int(synthetic_stats["area_fraction"].shape[0]),
        "num_classes": int(num_classes),
        "spatial_dims": int(spatial_dims),
        "connectivity": int(connectivity),
        "classes": classes,
        "classes_only_in_synthetic": [
            n for k, n in enumerate(names) if present_synthetic[k] > 0 and present_real[k] == 0
        ],
        "classes_missing_in_synthetic": [
            n for k, n in enumerate(names) if present_real[k] > 0 and present_synthetic[k] == 0
        ],
    }
    for stat in MASK_STATISTICS:
        result[f"mean_wasserstein_{stat}"] = float(np.mean([classes[n][stat]["wasserstein"] for n in names]))
    return result
