"""Does a detector trained on real images find, in a generator's synthetic images, the lesions that their boxes claim?

A synthetic detection datalist (``bundles/cpggan``, ``bundles/pix2pix``, ``bundles/mcgan_3d``) gives each image the
boxes it was generated for. This script runs the ``evaluating`` workflow of a finished detection run of a grid
(``scripts/run_experiment.py``: its ``run.json`` names the config files; the run's variants and overrides are kept)
on a section of that datalist instead of the real test set, and reports the CPM and sensitivities there beside the
same detector's on the real test set (the run's own ``eval/metrics.json``). A detector that finds the real test
lesions but not the synthetic ones says that the synthetic images do not show lesions where their boxes are: added
to a training set, those boxes teach a detector to call background a lesion.

Example (after scripts/experiments/cpggan_detection_calibrated_table4.yaml ran)::

    G=outputs/experiments/cpggan_detection_calibrated_table4
    python scripts/synthetic_box_check.py $G/runs/calibrated_phantom_8_patients/real_only_classic_da/seed* \\
        --synthetic_datalist $G/generators/cpggan_1x/calibrated_phantom_8_patients/eval/synthetic/datalist.json \\
        --output check.json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import fire
import numpy as np
from common.experiments import read_metrics, recorded_config_files
from monai.data import load_decathlon_datalist

#: the metrics compared, where the detection bundle's evaluation writes them
KEYS = ("cpm", "sens@1", "sensitivity_iou0.25", "fp_per_image_iou0.25", "sensitivity_iou0.5", "fp_per_image_iou0.5")


def check(run_dir: str, synthetic_datalist: str, section: str = "training") -> dict[str, Any]:
    """Runs the run's detector on a section of a synthetic datalist and scores it against the datalist's boxes.

    Args:
        run_dir: a detection run of a grid (with ``run.json``, ``models/`` and ``eval/metrics.json``).
        synthetic_datalist: the generator's detection datalist (``image``, ``box``, ``box_label``).
        section: its section to check.

    Returns:
        ``{"run_dir", "synthetic_datalist", "section", "num_images", "num_boxes", "synthetic": {...}, "real_test":
        {...}}``, the last two holding the :data:`KEYS` that the evaluation wrote.
    """
    from monai.bundle import ConfigWorkflow

    files = recorded_config_files(run_dir, "evaluating")
    real = read_metrics(Path(run_dir) / "eval" / "metrics.json")
    with tempfile.TemporaryDirectory() as tmp:
        workflow = ConfigWorkflow(
            config_file=files,
            workflow_type=None,
            run_id="evaluating",
            logging_file=False,
            ckpt_dir=str(Path(run_dir) / "models"),
            output_dir=tmp,
            datalist=str(Path(synthetic_datalist).absolute()),
            section=section,
            n_bootstrap=0,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        synthetic = read_metrics(Path(tmp) / "metrics.json")
    entries = load_decathlon_datalist(str(synthetic_datalist), True, section)
    return {
        "run_dir": str(run_dir),
        "synthetic_datalist": str(synthetic_datalist),
        "section": section,
        "num_images": len(entries),
        "num_boxes": sum(len(e.get("box") or []) for e in entries),
        "synthetic": {k: synthetic[k] for k in KEYS if k in synthetic},
        "real_test": {k: real[k] for k in KEYS if k in real},
    }


def main(*run_dirs: str, synthetic_datalist: str, section: str = "training", output: str | None = None) -> None:
    """Checks each run; prints (and with ``output`` writes) the results and their means over the runs.

    Args:
        run_dirs: detection runs of a grid (e.g. the seeds of one method).
        synthetic_datalist: the generator's detection datalist.
        section: its section to check.
        output: also write the JSON here.
    """
    results = [check(r, synthetic_datalist, section) for r in run_dirs]
    means = {
        where: {k: float(np.mean([r[where][k] for r in results])) for k in results[0][where]}
        for where in ("synthetic", "real_test")
    }
    text = json.dumps({"runs": results, "mean": means}, indent=2)
    print(text)
    if output:
        Path(output).write_text(text + "\n")


if __name__ == "__main__":
    fire.Fire(main)
