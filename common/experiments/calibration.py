"""Calibration of the brain MR phantom's difficulty by measurement.

For one difficulty setting (:py:mod:`common.data.phantoms.difficulty`), :py:func:`calibrate` trains a downstream
bundle's no-augmentation baseline twice on the same phantom set: in a limited-data regime (``1 / ratio`` of the
training and validation patients: the bundles' ``small`` split mode) and with all of them (``ratio`` times more
training patients: the upper bound), with the same number of training iterations, and scores both on the same
held-out test patients with the bundle's own ``evaluating`` workflow (test AUC for ``bundles/classification``, test
Dice for ``bundles/segmentation``). The runs go through MONAI's ``ConfigWorkflow`` in this process, with overrides
of the bundle's own configs only. With ``spatial_dims=3`` the bundle's ``variants/3d.yaml`` is merged after its
configs (volumes of the 3D phantom, one per patient, and the bundle's 3D network, made small by the family's
run size in :py:data:`FAMILIES_3D`).

:py:func:`linear_proxies` is the cheap stand-in the band tests use (seconds instead of minutes): linear models on
fixed features, whose test AUC and Dice tell an easy phantom (close to 1) from a calibrated one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from common.data.phantoms.difficulty import resolve_difficulty
from common.experiments.runner import read_metrics
from common.utils import atomic_write_text
from monai.bundle import ConfigWorkflow
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

__all__ = ["FAMILIES", "FAMILIES_3D", "calibrate", "linear_proxies", "run_bundle_workflow"]

_REPOSITORY = Path(__file__).resolve().parents[2]  # the bundles' folders of FAMILIES are relative to it

PROXY_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))
"""Intensity thresholds of the classification proxy's features."""

FAMILIES: dict[str, dict[str, Any]] = {
    "classification": {
        "bundle": "bundles/classification",
        "metric": "auc",
        "preset": "calibrated_classification",
        "batch_size": 8,
        "iterations": 300,
        "overrides": {"widen_factor": 0.25},
    },
    "segmentation": {
        "bundle": "bundles/segmentation",
        "metric": "dice",
        "preset": "calibrated_segmentation",
        "batch_size": 4,
        "iterations": 600,
        # the model card's short-CPU-run U-Net and learning rate (docs/README.md, "Results on the phantom")
        "overrides": {"learning_rate": 0.003, "unet_channels": [8, 16, 32], "unet_strides": [2, 2], "num_res_units": 1},
    },
}
"""Downstream families calibrated here: bundle folder, test metric, calibrated preset of
:py:data:`common.data.phantoms.BRAIN_MR_PRESETS`, and the default run size (batch size, training iterations and
overrides of the bundle's own configs for a short CPU run). A family that can also be calibrated in 3D has an entry
in :py:data:`FAMILIES_3D` with its own preset, image size and run size."""

FAMILIES_3D: dict[str, dict[str, Any]] = {
    "classification": {
        "preset": "calibrated_classification",  # the 2D preset puts the 3D baseline in its band too
        "image_size": 32,
        "batch_size": 4,
        "iterations": 300,
        "overrides": {"widen_factor": 0.125},
    },
    "segmentation": {
        "preset": "calibrated_segmentation_3d",
        "image_size": 32,
        "batch_size": 4,  # batch 2 let one seed of four collapse to "no tumour" (common/data/phantoms/difficulty.py)
        "iterations": 600,
        # variants/3d.yaml's 3D U-Net made small: the 2D short-CPU-run U-Net's channels in 3D
        "overrides": {"learning_rate": 0.003, "unet_channels": [8, 16, 32], "unet_strides": [2, 2], "num_res_units": 1},
    },
}
"""3D run size of the families of :py:data:`FAMILIES` (``calibrate(..., spatial_dims=3)``): calibrated 3D preset,
volume size (voxels per side), batch size, training iterations and overrides on top of the bundle's
``variants/3d.yaml`` for a short CPU run."""


def run_bundle_workflow(bundle: Path, files: list[str], run_id: str, overrides: Mapping[str, Any]) -> None:
    """Run ``run_id`` of a config list through ``ConfigWorkflow`` (as ``python -m monai.bundle run`` does)."""
    paths = [str(bundle / "configs" / f) for f in files]
    workflow = ConfigWorkflow(config_file=paths, workflow_type=None, run_id=run_id, logging_file=False, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def _family_overrides(
    family: str, regime: str, ratio: int, run_dir: Path, num_train: int, batch_size: int, iterations: int
) -> dict[str, Any]:
    """Overrides of one run: the split regime, the iteration budget as epochs, and its folders."""
    epochs = max(1, math.ceil(iterations / max(1, num_train // batch_size)))
    overrides: dict[str, Any] = {
        "ckpt_dir": str(run_dir / "models"),
        "output_dir": str(run_dir / "eval"),
        "batch_size": batch_size,
        "max_epochs": epochs,
        "val_interval": max(1, epochs // 5),
    }
    small = regime == "baseline"
    if family == "classification":
        overrides["split_mode"] = "small" if small else "full"
        overrides["split_args"] = {"fraction": 1.0 / ratio} if small else {}
    else:
        mode = f"mode='small', fraction={1.0 / ratio!r}" if small else "mode='full'"
        overrides["split_datalist"] = (
            f"$common.data.make_split_datalist(@datalist, os.path.join(@output_dir, 'datalist_{regime}.json'), "
            f"{mode}, seed=@split_seed)"
        )
    return overrides


def calibrate(
    family: str,
    output_dir: str | os.PathLike,
    difficulty: str | Mapping[str, Any] | None = "calibrated",
    num_small_patients: int = 8,
    ratio: int = 10,
    num_val_patients: int = 10,
    num_test_patients: int = 40,
    cases_per_patient: int | None = None,
    image_size: int | None = None,
    iterations: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    phantom_seed: int = 0,
    extra_overrides: Mapping[str, Any] | None = None,
    spatial_dims: int = 2,
    variants: Sequence[str] = (),
) -> dict[str, Any]:
    """Train and test a bundle's baseline with few and with ``ratio`` times more phantom training patients.

    Args:
        family: ``"classification"`` or ``"segmentation"`` (:py:data:`FAMILIES`).
        output_dir: folder of the phantom set, the runs and ``calibration.json``.
        difficulty: the phantom's difficulty: ``"calibrated"`` for the family's calibrated preset
            (:py:data:`FAMILIES`, in 3D :py:data:`FAMILIES_3D`), another preset name, a mapping of knobs, or ``None``
            for the default phantom.
        num_small_patients: training patients of the limited-data baseline.
        ratio: the upper bound trains on ``ratio * num_small_patients`` patients.
        num_val_patients: validation patients of the upper bound (the baseline keeps ``1 / ratio`` of them, at
            least one per class).
        num_test_patients: held-out test patients, the same for both runs.
        cases_per_patient: slices (2D) or volumes (3D) per patient; ``None``: 4 slices in 2D, 1 volume in 3D.
        image_size: phantom and network input size (pixels or voxels per side); ``None``: 64 in 2D, the family's
            in 3D (:py:data:`FAMILIES_3D`).
        iterations: training iterations of each run (epochs are rounded up to reach them); ``None``: the family's.
        batch_size: training batch size; ``None``: the family's.
        seed: training seed of the bundle.
        phantom_seed: seed of the phantom set.
        extra_overrides: further overrides of both runs, on top of the family's (e.g. ``{"widen_factor": 0.5}``).
        spatial_dims: 2 for slices of the 2D phantom, 3 for volumes of the 3D phantom with the bundle's
            ``variants/3d.yaml``.
        variants: further config files of the bundle's ``configs`` folder merged after ``train.yaml`` (and
            ``evaluate.yaml``) in both runs, e.g. ``["variants/thesis.yaml"]`` for the thesis's ResNet-50. The run
            size (image size, batch size, epochs) and ``extra_overrides`` still override what they set.

    Returns:
        ``{"family", "metric", "difficulty", "baseline", "upper_bound", "settings"}``; ``baseline`` and
        ``upper_bound`` hold the test metric, the number of training cases and the wall time of each run. The same
        is written to ``<output_dir>/calibration.json``.

    Raises:
        ValueError: for an unknown family, a family without a 3D run size in 3D, or ``spatial_dims`` not 2 or 3.
        FileNotFoundError: for a variant that is not in the bundle's ``configs`` folder.
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; expected one of {sorted(FAMILIES)}.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    if spatial_dims == 3 and family not in FAMILIES_3D:
        raise ValueError(f"Family {family!r} has no 3D calibration; 3D families: {sorted(FAMILIES_3D)}.")
    family_defaults = {**FAMILIES[family], **(FAMILIES_3D[family] if spatial_dims == 3 else {})}
    if difficulty == "calibrated":
        difficulty = family_defaults["preset"]
    resolve_difficulty(difficulty)  # fail early on a bad setting
    iterations = family_defaults["iterations"] if iterations is None else int(iterations)
    batch_size = family_defaults["batch_size"] if batch_size is None else int(batch_size)
    cases_per_patient = (4 if spatial_dims == 2 else 1) if cases_per_patient is None else int(cases_per_patient)
    image_size = family_defaults.get("image_size", 64) if image_size is None else int(image_size)
    extra_overrides = {**family_defaults["overrides"], **dict(extra_overrides or {})}
    bundle = _REPOSITORY / FAMILIES[family]["bundle"]
    metric = FAMILIES[family]["metric"]
    variants = [variants] if isinstance(variants, str) else list(variants)  # one name from the command line
    for name in variants:
        if not (bundle / "configs" / name).is_file():
            raise FileNotFoundError(f"Variant {name!r} not found in {bundle / 'configs'}.")
    config_files = [*(["variants/3d.yaml"] if spatial_dims == 3 else []), *variants]
    output_dir = Path(output_dir).absolute()
    num_big = num_small_patients * ratio
    total = num_big + num_val_patients + num_test_patients
    phantom_args = {
        "num_patients": total,
        "cases_per_patient": cases_per_patient,
        "image_size": image_size,
        "positive_fraction": 0.5,
        "seed": phantom_seed,
        "split_fractions": [num_big / total, num_val_patients / total, num_test_patients / total],
        "difficulty": difficulty,
    }
    if spatial_dims == 3:
        phantom_args["spatial_dims"] = 3  # recorded in the overrides: the 3D phantom kind requires it anyway
    common_overrides = {
        "dataset_dir": str(output_dir / "data"),
        "phantom_args": phantom_args,
        "image_size": image_size,
        "seed": seed,
        **extra_overrides,
    }
    results: dict[str, Any] = {"family": family, "metric": metric, "difficulty": difficulty}
    for regime in ("baseline", "upper_bound"):
        run_dir = output_dir / regime
        num_train = (num_small_patients if regime == "baseline" else num_big) * cases_per_patient
        overrides = {
            **common_overrides,
            **_family_overrides(family, regime, ratio, run_dir, num_train, batch_size, iterations),
        }
        start = time.perf_counter()
        run_bundle_workflow(bundle, ["train.yaml", *config_files], "training", overrides)
        run_bundle_workflow(bundle, ["train.yaml", "evaluate.yaml", *config_files], "evaluating", overrides)
        metrics = read_metrics(run_dir / "eval" / "metrics.json")
        results[regime] = {
            metric: metrics[metric],
            "training_cases": num_train,
            "max_epochs": overrides["max_epochs"],
            "wall_s": round(time.perf_counter() - start, 1),
        }
    results["settings"] = {
        "spatial_dims": spatial_dims,
        "num_small_patients": num_small_patients,
        "ratio": ratio,
        "num_val_patients": num_val_patients,
        "num_test_patients": num_test_patients,
        "cases_per_patient": cases_per_patient,
        "image_size": image_size,
        "iterations": iterations,
        "batch_size": batch_size,
        "seed": seed,
        "phantom_seed": phantom_seed,
        "overrides": extra_overrides,
        "variants": variants,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(results, indent=2) + "\n", output_dir / "calibration.json")
    return results


def _load_section(datalist: Path, section: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, C, *S), binary tumour masks (N, *S) and classes (N,) of a phantom datalist section.

    ``S`` is (H, W) for a 2D set and (H, W, D) for a 3D one.
    """
    entries = json.loads(datalist.read_text(encoding="utf-8"))[section]
    images = [np.stack([np.asarray(nib.load(datalist.parent / f).dataobj) for f in e["image"]]) for e in entries]
    masks = [np.asarray(nib.load(datalist.parent / e["label"]).dataobj) > 0 for e in entries]
    return np.stack(images).astype(np.float32), np.stack(masks), np.array([int(e["class"]) for e in entries])


def _histogram_features(images: np.ndarray) -> np.ndarray:
    """Per channel, the fraction of head pixels (voxels) above each of :py:data:`PROXY_THRESHOLDS`: (N, C * 19).

    Args:
        images: (N, C, *S) images, 2D or 3D.
    """
    head = images.sum(1) > 0
    features = [
        [(image[c][inside] > t).mean() for c in range(image.shape[0]) for t in PROXY_THRESHOLDS]
        for image, inside in zip(images, head)
    ]
    return np.asarray(features, dtype=np.float64)


def _pixel_features(images: np.ndarray) -> np.ndarray:
    """Per pixel (voxel), each channel's intensity and its Gaussian-smoothed values (sigma 1 and 2 px).

    Args:
        images: (N, C, *S) images, 2D or 3D.

    Returns:
        (N * prod(S), 3C) features.
    """
    spatial = images.ndim - 2
    features = [images] + [ndimage.gaussian_filter(images, (0, 0) + (s,) * spatial) for s in (1.0, 2.0)]
    stacked = np.concatenate(features, axis=1)
    return np.moveaxis(stacked, 1, -1).reshape(-1, stacked.shape[1])


def _mean_dice(probabilities: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    """Mean Dice of ``probabilities > threshold`` over the images (N, *S) whose mask has foreground."""
    positive = masks.reshape(len(masks), -1).any(1)
    predicted = (probabilities[positive] > threshold).reshape(int(positive.sum()), -1)
    truth = masks[positive].reshape(len(predicted), -1)
    overlap = (predicted & truth).sum(1)
    return float(np.mean(2.0 * overlap / (predicted.sum(1) + truth.sum(1))))


def linear_proxies(datalist: str | os.PathLike) -> dict[str, float]:
    """Test AUC and Dice of linear models fitted on the training section of a 2D or 3D brain MR phantom set.

    Classification: logistic regression on the per-channel histogram features of :py:func:`_histogram_features`
    (position-free: "how much of the head is bright in FLAIR"), test AUC. Segmentation: per-pixel logistic
    regression on the four intensities and their smoothed values (:py:func:`_pixel_features`), with the probability
    threshold that maximises the training images' Dice; mean Dice over the test images with a tumour. In 3D the same
    on volumes (per voxel, smoothed in 3D). On the default phantom both are close to 1 (a linear model solves it); a
    calibrated preset must leave them well below.

    Args:
        datalist: datalist of a 2D or 3D :py:func:`common.data.phantoms.make_brain_mr` set with ``training`` and
            ``test`` sections holding both classes.

    Returns:
        ``{"auc": ..., "dice": ...}``.
    """
    datalist = Path(datalist)
    train_images, train_masks, train_classes = _load_section(datalist, "training")
    test_images, test_masks, test_classes = _load_section(datalist, "test")
    classifier = LogisticRegression(max_iter=2000).fit(_histogram_features(train_images), train_classes)
    scores = classifier.predict_proba(_histogram_features(test_images))[:, 1]
    segmenter = LogisticRegression(max_iter=500).fit(_pixel_features(train_images), train_masks.reshape(-1))
    train_probabilities = segmenter.predict_proba(_pixel_features(train_images))[:, 1].reshape(train_masks.shape)
    threshold = max(np.linspace(0.05, 0.95, 19), key=lambda t: _mean_dice(train_probabilities, train_masks, t))
    test_probabilities = segmenter.predict_proba(_pixel_features(test_images))[:, 1].reshape(test_masks.shape)
    return {
        "auc": float(roc_auc_score(test_classes, scores)),
        "dice": _mean_dice(test_probabilities, test_masks, float(threshold)),
    }
