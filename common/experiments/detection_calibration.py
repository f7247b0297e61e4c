"""Calibration of the detection phantoms' difficulty by measurement (chest CT nodules in 3D, metastases in 2D).

The detection counterpart of :py:mod:`common.experiments.calibration`: for one difficulty setting
(:py:mod:`common.data.phantoms.detection_difficulty`), :py:func:`calibrate_detection` generates one phantom set and
trains ``bundles/detection``'s no-augmentation baseline twice with the same number of SGD steps, on a few training
patients (the ``small`` split mode, ``1 / ratio`` of them) and on all of them (``ratio`` times more: the upper
bound), and scores both on the same held-out test patients with the bundle's own ``evaluating`` workflow (the CPM at
IoU 0.25, Han's thesis sec. 6.2.2). The runs go through MONAI's ``ConfigWorkflow`` in this process, with overrides
of the bundle's own configs only; the training datalist of each run is written by
:py:func:`common.data.make_split_datalist` from the phantom's.

:py:func:`blob_detector_cpm` is the cheap stand-in the band tests use (seconds, no network): a hand-made
multi-scale blob detector (a voxel scorer on Laplacian-of-Gaussian and Hessian features fitted on the training
section, connected components as detections) scored with the project's CPM; its CPM tells an easy phantom (high)
from a calibrated one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from common.data.phantoms.detection_difficulty import resolve_brain_metastases_difficulty, resolve_chest_ct_difficulty
from common.data.phantoms.prepare import prepare_phantom
from common.data.splits import make_split_datalist
from common.experiments.calibration import run_bundle_workflow
from common.experiments.runner import read_metrics
from common.metrics.detection import cpm
from common.utils import atomic_write_text
from scipy import ndimage

__all__ = ["DETECTION_FAMILIES", "blob_detector_cpm", "calibrate_detection"]

_REPOSITORY = Path(__file__).resolve().parents[2]

DETECTION_FAMILIES: dict[str, dict[str, Any]] = {
    "detection_3d": {
        "phantom_kind": "chest_ct",
        "variants": [],
        "preset": "calibrated_detection",
        "num_small_patients": 8,
        "num_test_patients": 12,
        "cases_per_patient": 1,
        "image_size": 64,
        "batch_size": 2,
        # 800 steps for the baseline (its CPM hardly moves after that: 0.61-0.62 at 800, 0.60-0.68 at 1,600 on the
        # earlier contrast-0.6 preset) and twice as many for the upper bound, whose ten times more scans are not
        # learnt in 800 steps (0.64-0.75 at 800, 0.79 at 1,600): common/data/phantoms/detection_difficulty.py
        "iterations": 800,
        "upper_bound_steps_factor": 2,
        # the detector of the Table 5 grid (scripts/experiments/mcgan_detection_table5.yaml), no augmentation
        "overrides": {
            "learning_rate": 0.01,
            "backbone_channels": [8, 16, 32],
            "fpn_channels": 16,
            "representation_size": 64,
            "infer_roi_size": [64, 64, 64],
            "augment_prob": 0.0,
        },
    },
    "detection_2d": {
        "phantom_kind": "brain_metastases",
        "variants": ["variants/2d.yaml"],
        "preset": "calibrated_detection",
        "num_small_patients": 8,  # 4 patients gave a baseline that depended on which 4 were drawn (0.387 / 0.154)
        "num_test_patients": 20,
        "cases_per_patient": 2,
        "image_size": 64,
        "batch_size": 4,
        "iterations": 400,  # at 200 the 80-patient upper bound was barely above 8 patients on one seed
        # the model card's 2D phantom run (docs/README.md, "Results on the phantom"), no augmentation
        "overrides": {
            "learning_rate": 0.01,
            "backbone_channels": [8, 16],
            "backbone_layers": [1, 1],
            "fpn_channels": 16,
            "anchor_shapes": [[6, 6], [10, 10]],
            "roi_output_size": 4,
            "representation_size": 64,
            "augment_prob": 0.0,
        },
    },
    # the thesis's Table 4 detector (sec. 5.2.3: YOLOv3, Adam 1e-3) on the same metastasis phantom and regime, with
    # the Darknet of scripts/experiments/cpggan_detection_table4.yaml (8 ... 128 channels, one block per stage) and a
    # network resolution of 256 (the 64x64 slices resized 4x, as YOLOv3 resizes its input to 416/608): at the slices'
    # own 64 (and at 128) its coarse strides miss the calibrated phantom's small lesions (test CPM 0.07 with 8 or 80
    # patients, common/data/phantoms/detection_difficulty.py)
    "detection_yolov3_2d": {
        "phantom_kind": "brain_metastases",
        "variants": ["variants/2d.yaml", "variants/yolov3.yaml"],
        "preset": "calibrated_detection",
        "num_small_patients": 8,
        "num_test_patients": 20,
        "cases_per_patient": 2,
        "image_size": 64,
        "batch_size": 4,
        "iterations": 400,
        "overrides": {
            "yolo_base_channels": 8,
            "yolo_blocks": [1, 1, 1, 1, 1],
            "yolo_input_size": {"training": [256, 256], "testing": [256, 256]},
            "augment_prob": 0.0,
        },
    },
}
"""Detection families calibrated here: phantom kind, variant files merged after the bundle's configs, calibrated
preset, and the default regime and run size (training patients of the baseline, test patients, cases per patient,
image size, batch size, SGD steps and overrides of ``bundles/detection``'s configs for a short CPU run)."""

_BUNDLE = "bundles/detection"


def calibrate_detection(
    family: str,
    output_dir: str | os.PathLike,
    difficulty: str | Mapping[str, Any] | None = "calibrated",
    num_small_patients: int | None = None,
    ratio: int = 10,
    num_test_patients: int | None = None,
    iterations: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    phantom_seed: int = 0,
    extra_overrides: Mapping[str, Any] | None = None,
    upper_bound_iterations: int | None = None,
) -> dict[str, Any]:
    """Train and test the detector's baseline with few and with ``ratio`` times more phantom training patients.

    No validation split: both runs are evaluated at their last step (``models/model.pt``).

    Args:
        family: ``"detection_3d"`` (chest CT nodules), ``"detection_2d"`` (brain metastases, the 2D Faster R-CNN) or
            ``"detection_yolov3_2d"`` (brain metastases, YOLOv3); :py:data:`DETECTION_FAMILIES`.
        output_dir: folder of the phantom set, the runs and ``calibration.json``.
        difficulty: ``"calibrated"`` for the family's calibrated preset, another preset name, a mapping of knobs,
            or ``None`` for the default phantom.
        num_small_patients: training patients of the baseline; ``None``: the family's.
        ratio: the upper bound trains on ``ratio * num_small_patients`` patients.
        num_test_patients: held-out test patients, the same for both runs; ``None``: the family's.
        iterations: SGD steps of the baseline (10 epochs of ``iterations / 10`` steps); ``None``: the family's.
        batch_size: training batch size; ``None``: the family's.
        seed: training seed of the bundle (also the draw of the baseline's patients).
        phantom_seed: seed of the phantom set.
        extra_overrides: further overrides of both runs, on top of the family's.
        upper_bound_iterations: SGD steps of the upper bound; ``None``: ``iterations`` times the family's
            ``upper_bound_steps_factor`` (1 where the family names none).

    Returns:
        ``{"family", "metric": "cpm", "difficulty", "baseline", "upper_bound", "settings"}``; ``baseline`` and
        ``upper_bound`` hold the test CPM, the sensitivity at 1 FP per image, the number of training patients and
        the wall time of each run. The same is written to ``<output_dir>/calibration.json``.

    Raises:
        ValueError: for an unknown family or a bad difficulty.
    """
    if family not in DETECTION_FAMILIES:
        raise ValueError(f"Unknown detection family {family!r}; expected one of {sorted(DETECTION_FAMILIES)}.")
    defaults = DETECTION_FAMILIES[family]
    if difficulty == "calibrated":
        difficulty = defaults["preset"]
    three_d = defaults["phantom_kind"] == "chest_ct"
    (resolve_chest_ct_difficulty if three_d else resolve_brain_metastases_difficulty)(difficulty)  # fail early
    num_small = int(defaults["num_small_patients"] if num_small_patients is None else num_small_patients)
    num_test = int(defaults["num_test_patients"] if num_test_patients is None else num_test_patients)
    iterations = int(defaults["iterations"] if iterations is None else iterations)
    if upper_bound_iterations is None:
        upper_bound_iterations = iterations * int(defaults.get("upper_bound_steps_factor", 1))
    steps = {"baseline": iterations, "upper_bound": int(upper_bound_iterations)}
    if min(steps.values()) < 1:
        raise ValueError(f"iterations and upper_bound_iterations must be positive, got {steps}.")
    batch_size = int(defaults["batch_size"] if batch_size is None else batch_size)
    overrides_ = {**defaults["overrides"], **dict(extra_overrides or {})}
    output_dir = Path(output_dir).absolute()
    num_big = num_small * ratio
    total = num_big + num_test
    fractions = [num_big / total, 0.0, num_test / total]
    if three_d:
        phantom_args: dict[str, Any] = {"num_cases": total, "image_size": defaults["image_size"]}
    else:  # every patient positive: the detection task, not the slice classification
        phantom_args = {
            "num_patients": total,
            "cases_per_patient": defaults["cases_per_patient"],
            "image_size": defaults["image_size"],
            "max_lesions": 3,
            "positive_fraction": 1.0,
        }
    phantom_args.update({"seed": phantom_seed, "split_fractions": fractions, "difficulty": difficulty})
    source = prepare_phantom(output_dir / "data", defaults["phantom_kind"], **phantom_args)
    epochs = 10
    results: dict[str, Any] = {"family": family, "metric": "cpm", "difficulty": difficulty}
    for regime in ("baseline", "upper_bound"):
        run_dir = output_dir / regime
        small = regime == "baseline"
        datalist = make_split_datalist(
            str(source),
            run_dir / "datalist.json",
            mode="small" if small else "full",
            seed=seed,
            check_sections=("training", "test"),
            **({"fraction": 1.0 / ratio} if small else {}),
        )
        overrides = {
            "phantom_kind": "none",
            "datalist": str(datalist),
            "ckpt_dir": str(run_dir / "models"),
            "output_dir": str(run_dir / "eval"),
            "batch_size": batch_size,
            "max_epochs": epochs,
            "epoch_length": max(1, math.ceil(steps[regime] / epochs)),
            "val_interval": 0,
            "save_interval": epochs,
            "n_bootstrap": 0,
            "seed": seed,
            **overrides_,
        }
        files = ["train.yaml", *defaults["variants"]]
        start = time.perf_counter()
        run_bundle_workflow(_REPOSITORY / _BUNDLE, files, "training", overrides)
        run_bundle_workflow(
            _REPOSITORY / _BUNDLE, ["train.yaml", "evaluate.yaml", *defaults["variants"]], "evaluating", overrides
        )
        metrics = read_metrics(run_dir / "eval" / "metrics.json")
        patients = {e["patient"] for e in json.loads(Path(datalist).read_text(encoding="utf-8"))["training"]}
        results[regime] = {
            "cpm": metrics["cpm"],
            "sens@1": metrics.get("sens@1"),
            "training_patients": len(patients),
            "wall_s": round(time.perf_counter() - start, 1),
        }
    results["settings"] = {
        "num_small_patients": num_small,
        "ratio": ratio,
        "num_test_patients": num_test,
        "phantom_args": phantom_args,
        "iterations": iterations,
        "upper_bound_iterations": steps["upper_bound"],
        "batch_size": batch_size,
        "seed": seed,
        "overrides": overrides_,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    atomic_write_text(json.dumps(results, indent=2) + "\n", output_dir / "calibration.json")
    return results


_PROXY_SETTINGS: dict[str, dict[str, Any]] = {
    # CT: the lung window [-1000, 200] HU to [0, 1]; scales in voxels at 64^3 (nodules 3-8 voxels across); the
    # organ: where the mean of a 15^3 neighbourhood is lung-like (below -500 HU), except the air around the body
    "chest_ct": {"clip": (-1000.0, 200.0), "unit": 64.0, "sigmas": (1.0, 1.5, 2.5, 4.0)},
    # brain slices in [0, 1]; scales as fractions of the half-width (lesion radii 0.05-0.09); the organ: the head
    "brain_metastases": {"clip": (0.0, 1.0), "unit": 2.0, "sigmas": (0.02, 0.04, 0.06, 0.1)},
}


def _voxel_features(image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel features of a blob detector and the organ mask where it looks for lesions.

    Args:
        image: (X, Y[, Z]) intensities as stored (HU or [0, 1]).
        kind: ``"chest_ct"`` or ``"brain_metastases"``.

    Returns:
        features (N, F) of the N organ voxels (the windowed intensity; at each scale of :py:data:`_PROXY_SETTINGS`
        the Gaussian-smoothed intensity and the scale-normalised negative Laplacian of Gaussian; at the middle two
        scales the sorted eigenvalues of the scale-normalised negative Hessian: all large for a bright blob, one
        about 0 for a tube) and the boolean organ mask of the image's shape.
    """
    settings = _PROXY_SETTINGS[kind]
    low, high = settings["clip"]
    x = (np.clip(image.astype(np.float32), low, high) - low) / (high - low)
    unit = min(x.shape) / settings["unit"]
    sigmas = [s * unit for s in settings["sigmas"]]
    if kind == "chest_ct":
        lung_like = ndimage.uniform_filter(x, int(2 * round(7 * unit) + 1)) < (-500.0 - low) / (high - low)
        organ = lung_like & (ndimage.gaussian_filter(x, 1.0) > (-980.0 - low) / (high - low))  # not outside air
    else:
        organ = ndimage.binary_erosion(x > 0.02, iterations=2)
    at = np.nonzero(organ)
    features = [x[at]]
    for sigma in sigmas:
        features.append(ndimage.gaussian_filter(x, sigma)[at])
        features.append(-(sigma**2) * ndimage.gaussian_laplace(x, sigma)[at])
    for sigma in sigmas[1:3]:
        gradients = np.gradient(ndimage.gaussian_filter(x, sigma))
        hessian = np.empty((len(at[0]), x.ndim, x.ndim), dtype=np.float32)
        for i in range(x.ndim):
            for j, second in enumerate(np.gradient(gradients[i])):
                hessian[:, i, j] = second[at]
        features.extend(np.linalg.eigvalsh(-(sigma**2) * 0.5 * (hessian + np.swapaxes(hessian, 1, 2))).T)
    return np.stack(features, axis=1), organ


def _load_section(datalist: Path, section: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Images, lesion masks (boolean) and boxes (G, 2d) of a detection phantom datalist section."""
    out = []
    for entry in json.loads(datalist.read_text(encoding="utf-8"))[section]:
        image = np.asarray(nib.load(datalist.parent / entry["image"]).dataobj, dtype=np.float32)
        mask = np.asarray(nib.load(datalist.parent / entry["label"]).dataobj) > 0
        out.append((image, mask, np.asarray(entry["box"], dtype=np.float64).reshape(-1, 2 * image.ndim)))
    return out


def blob_detector_cpm(
    datalist: str | os.PathLike, iou_threshold: float = 0.25, max_detections: int = 20, seed: int = 0
) -> dict[str, float]:
    """Test CPM of a hand-made blob detector whose voxel scorer is fitted on the training section of a phantom set.

    Voxel scorer: gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``, 100 iterations) on the
    multi-scale blob features of :py:func:`_voxel_features`, fitted on the training section's lesion voxels and
    20 times as many organ voxels drawn at random. Detections: the connected components of the test voxels scored
    above 0.5, each boxed by its bounding box and scored by its highest voxel score, the ``max_detections`` best per
    image. Scored with :py:func:`common.metrics.detection.cpm` (LUNA16 rule) at ``iou_threshold``, as the bundle's
    evaluation. On the default phantoms it is high (chest CT about 0.75, brain metastases about 0.98 at the band
    test's sizes); a calibrated preset must leave it well below.

    Args:
        datalist: datalist of a :py:func:`~common.data.phantoms.make_chest_ct` or
            :py:func:`~common.data.phantoms.make_brain_metastases` set with ``training`` and ``test`` sections.
        iou_threshold: IoU of a hit.
        max_detections: detections per test image.
        seed: seed of the draw of the training organ voxels and of the trees.

    Returns:
        ``{"cpm": ..., "sens@1": ...}`` on the test section.

    Raises:
        ValueError: for a datalist of another phantom or without lesions in its training section.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    datalist = Path(datalist)
    name = str(json.loads(datalist.read_text(encoding="utf-8")).get("name", ""))
    kind = {"phantom_chest_ct": "chest_ct", "phantom_brain_metastases": "brain_metastases"}.get(name)
    if kind is None:
        raise ValueError(f"{datalist}: not a chest CT or brain metastasis phantom set (name {name!r}).")
    rng = np.random.default_rng(seed)
    samples, labels = [], []
    for image, mask, _ in _load_section(datalist, "training"):
        features, organ = _voxel_features(image, kind)
        lesion = mask[organ]
        negatives = np.flatnonzero(~lesion)
        negatives = rng.choice(negatives, min(len(negatives), 20 * max(int(lesion.sum()), 50)), replace=False)
        samples.append(features[np.r_[np.flatnonzero(lesion), negatives]])
        labels.append(np.r_[np.ones(int(lesion.sum())), np.zeros(len(negatives))])
    if not any(label.any() for label in labels):
        raise ValueError(f"{datalist}: the training section has no lesion voxels to fit the blob detector on.")
    scorer = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    scorer.fit(np.concatenate(samples), np.concatenate(labels))
    images = []
    for image, _, gt in _load_section(datalist, "test"):
        features, organ = _voxel_features(image, kind)
        probability = np.zeros(image.shape, dtype=np.float64)
        probability[organ] = scorer.predict_proba(features)[:, 1]
        components, count = ndimage.label(probability > 0.5)
        boxes = np.array(
            [[s.start for s in o] + [s.stop for s in o] for o in ndimage.find_objects(components)], dtype=np.float64
        ).reshape(-1, 2 * image.ndim)
        scores = np.asarray(ndimage.maximum(probability, components, np.arange(1, count + 1))).reshape(-1)
        best = np.argsort(-scores, kind="stable")[:max_detections]
        images.append({"pred_boxes": boxes[best], "pred_scores": scores[best], "gt_boxes": gt})
    result = cpm(images, iou_threshold)
    return {"cpm": result["cpm"], "sens@1": result["sensitivities"][1.0]}
