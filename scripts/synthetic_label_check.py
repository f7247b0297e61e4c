"""Does a classifier trained on real images see, in a generator's synthetic images, the class they were made for?

A synthetic datalist gives each image the class it was generated for (``class``). This script runs the inference
workflow of a trained classification run of a grid (``scripts/run_experiment.py``: its ``run.json`` names the config
files; ``configs/train.yaml`` is swapped for ``configs/inference.yaml``, the run's variants and overrides are kept)
on that datalist and reports, per intended class, the number of images, the mean class-1 probability and the share
predicted as the intended class, and the AUC of the class-1 probability against the intended class. A classifier
that tells the real test images apart (its test AUC) but not the synthetic ones says that the synthetic images do
not show what their labels claim: added to a training set, they are label noise.

Example (after scripts/experiments/phantom_ga_unet_calibrated.yaml ran)::

    G=outputs/experiments/phantom_ga_unet_calibrated
    python scripts/synthetic_label_check.py $G/runs/calibrated_phantom_8_patients/resnet-18_w_o/seed* \\
        --synthetic_datalist $G/generators/ga_unet/calibrated_phantom_8_patients/eval/synthetic/datalist.json \\
        --output check.json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import fire
import torch
from common.experiments import recorded_config_files
from monai.data import load_decathlon_datalist
from monai.metrics import compute_roc_auc


def label_agreement(
    predictions: list[dict[str, Any]], entries: list[dict[str, Any]], class_key: str = "class"
) -> dict[str, Any]:
    """Per intended class: count, mean class-1 probability, share predicted as that class; and the AUC.

    Args:
        predictions: the classification bundle's ``predictions.json`` list (``image``, ``probabilities``, ``pred``),
            in the order of ``entries``.
        entries: the datalist entries the predictions were made for, each with its intended class.
        class_key: key of the intended class in the entries.

    Returns:
        ``{"per_class": {c: {"count", "mean_p1", "agreement"}}, "agreement", "auc", "num_images"}``; ``auc`` is
        ``None`` when the entries hold a single class.
    """
    if len(predictions) != len(entries):
        raise ValueError(f"{len(predictions)} predictions for {len(entries)} datalist entries.")
    for p, e in zip(predictions, entries):
        image = e["image"][0] if isinstance(e["image"], (list, tuple)) else e["image"]
        if Path(str(p["image"])).name != Path(str(image)).name:
            raise ValueError(f"prediction for {p['image']} where the datalist has {image}: not the same order.")
    labels = torch.tensor([int(e[class_key]) for e in entries])
    probs = torch.tensor([float(p["probabilities"][1]) for p in predictions])
    preds = torch.tensor([int(p["pred"]) for p in predictions])
    per_class = {
        int(c): {
            "count": int((labels == c).sum()),
            "mean_p1": float(probs[labels == c].mean()),
            "agreement": float((preds[labels == c] == c).float().mean()),
        }
        for c in labels.unique().tolist()
    }
    auc = float(compute_roc_auc(probs, labels)) if len(per_class) > 1 else None
    return {
        "per_class": per_class,
        "agreement": float((preds == labels).float().mean()),
        "auc": auc,
        "num_images": len(entries),
    }


def inference_files(run_dir: str | Path) -> list[str]:
    """The config files of a grid run's ``training`` command, with the bundle's ``inference.yaml`` in place of its
    ``train.yaml``."""
    files = recorded_config_files(run_dir, "training")
    if not files or not str(files[0]).endswith("train.yaml"):
        raise ValueError(f"{run_dir}: the first config file of its training command is not a train.yaml: {files}.")
    if any(Path(f).name == "svm.yaml" for f in files):
        raise ValueError(f"{run_dir}: an SVM run has no network for the inference workflow.")
    return [str(Path(files[0]).with_name("inference.yaml")), *files[1:]]


def check(run_dir: str, synthetic_datalist: str, section: str = "training") -> dict[str, Any]:
    """Runs the run's classifier on the section of the synthetic datalist; returns :func:`label_agreement`'s result
    with the run and the datalist named.

    Args:
        run_dir: a classification run of a grid (with ``run.json`` and ``models/model.pt``).
        synthetic_datalist: the generator's datalist, entries with ``class``.
        section: its section to check.
    """
    from monai.bundle import ConfigWorkflow

    files = inference_files(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        workflow = ConfigWorkflow(
            config_file=files,
            workflow_type="inference",
            logging_file=False,
            ckpt_dir=str(Path(run_dir) / "models"),
            output_dir=tmp,
            datalist=str(synthetic_datalist),
            inference_section=section,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        predictions = json.loads((Path(tmp) / "predictions.json").read_text())["predictions"]
    entries = load_decathlon_datalist(str(synthetic_datalist), True, section)
    return {
        "run_dir": str(run_dir),
        "synthetic_datalist": str(synthetic_datalist),
        "section": section,
        **label_agreement(predictions, entries),
    }


def main(*run_dirs: str, synthetic_datalist: str, section: str = "training", output: str | None = None) -> None:
    """Checks each run and prints (and with ``output`` writes) the JSON list of results.

    Args:
        run_dirs: classification runs of a grid (each with ``run.json`` and ``models/model.pt``).
        synthetic_datalist: the generator's datalist, entries with ``class``.
        section: its section to check.
        output: also write the JSON here.
    """
    text = json.dumps([check(r, synthetic_datalist, section) for r in run_dirs], indent=2)
    print(text)
    if output:
        Path(output).write_text(text + "\n")


if __name__ == "__main__":
    fire.Fire(main)
