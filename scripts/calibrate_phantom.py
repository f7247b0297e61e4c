"""Command line front end of :py:mod:`common.experiments.calibration`: measure a phantom difficulty.

``classification`` and ``segmentation`` calibrate the brain MR phantom; ``detection_3d`` / ``detection_2d`` the
detection phantoms (chest CT nodules, brain metastases; :py:func:`common.experiments.detection_calibration.
calibrate_detection`); ``detection_yolov3_2d`` the brain metastases with the thesis's Table 4 detector (YOLOv3).

Trains the bundle's no-augmentation baseline on few phantom training patients and on ``ratio`` times more (the
upper bound), tests both on the same held-out patients, prints and writes ``<output_dir>/calibration.json``.
``--spatial_dims 3`` calibrates the 3D task (volumes of the 3D phantom, one per patient, and the bundle's
``variants/3d.yaml`` network made small; the family's 3D preset for ``--difficulty calibrated``).

Examples (from the repository root; the measured numbers of the ``calibrated`` preset are recorded in
``common/data/phantoms/difficulty.py``)::

    OMP_NUM_THREADS=1 python scripts/calibrate_phantom.py classification outputs/calibration/cls --difficulty calibrated
    OMP_NUM_THREADS=1 python scripts/calibrate_phantom.py segmentation outputs/calibration/seg \\
        --difficulty "{lesion_contrast: 0.3, noise: 0.04}"
    OMP_NUM_THREADS=1 python scripts/calibrate_phantom.py classification outputs/calibration/cls3d --spatial_dims 3
    OMP_NUM_THREADS=1 python scripts/calibrate_phantom.py classification outputs/calibration/thesis \
        --difficulty calibrated --variants '["variants/thesis.yaml"]'   # the thesis's ResNet-50 (Table 2)
"""

from __future__ import annotations

import json

from common.experiments.calibration import calibrate
from common.experiments.detection_calibration import DETECTION_FAMILIES, calibrate_detection
from common.utils.cli import run_fire


def main(
    family: str, output_dir: str, difficulty: object = "calibrated", spatial_dims: int = 2, **kwargs: object
) -> None:
    """Calibrates one difficulty setting for one downstream family and prints the result as JSON.

    Args:
        family: ``classification``, ``segmentation``, ``detection_3d``, ``detection_2d`` or ``detection_yolov3_2d``.
        output_dir: folder of the phantom set, the two runs and ``calibration.json``.
        difficulty: a preset name (``calibrated``, ``default``), ``none`` for the default phantom, or a dict of
            knobs (``lesion_contrast``, ``lesion_radius``, ``texture``, ``noise``, ``anatomy_spread``).
        spatial_dims: classification and segmentation: 2 (slices of the 2D phantom) or 3 (volumes of the 3D phantom,
            the bundle's ``variants/3d.yaml``); the detection families name their dimension.
        kwargs: further arguments of :py:func:`common.experiments.calibration.calibrate` (``num_small_patients``,
            ``ratio``, ``num_test_patients``, ``iterations``, ``batch_size``, ``seed``, ``extra_overrides``,
            ``variants``...) or, for the detection families, of
            :py:func:`common.experiments.detection_calibration.calibrate_detection` (also ``upper_bound_iterations``).
    """
    if family in DETECTION_FAMILIES:  # detection_3d / detection_2d: the detection phantoms' calibration
        no_preset = isinstance(difficulty, str) and difficulty.lower() in ("none", "null", "")
        result = calibrate_detection(family, output_dir, None if no_preset else difficulty, **kwargs)  # type: ignore
        print(json.dumps(result, indent=2))
        return
    if isinstance(difficulty, str) and difficulty.lower() in ("none", "null", ""):
        difficulty = None
    dims = int(spatial_dims)
    result = calibrate(family, output_dir, difficulty=difficulty, spatial_dims=dims, **kwargs)  # type: ignore[arg-type]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_fire(main)  # `--help` and one-letter flags would otherwise land in **kwargs
