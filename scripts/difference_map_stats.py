"""How strongly the difference maps of Algorithm 3 (CDA-GAN sec. 3.2) mark the tumours, per rule and class.

Information enhancement trains a segmenter on images with the difference maps ``|x - G_N(x)|`` of a trained
generator as extra channels: training images get the train rule's maps (positives through G_N, zeros for
negatives), validation and test images the test rule's (every image through G_N). A segmenter can only use maps
that look alike at training and at test time. This script reads the ``enhanced_datalist.json`` files of a grid's
generators and reports, per generator and file, the mean map value (averaged over the map channels) inside the
tumour mask and outside it on positive images, and over the whole image on negative images.

Example (after ``scripts/run_experiment.py`` ran scripts/experiments/phantom_segmentation_calibrated_gan.yaml)::

    python scripts/difference_map_stats.py outputs/experiments/phantom_segmentation_calibrated_gan \\
        --output difference_maps.md
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fire
import nibabel as nib
import numpy as np

RULE_FILES = {
    "training images": "cross_domain/enhanced_datalist.json",
    "validation and test images": "cross_domain_test/enhanced_datalist.json",
    "training images (ablation)": "cross_domain_train_test_rule/enhanced_datalist.json",
}
"""Where a grid generator's ``eval`` folder holds the enhanced datalist of each set of images (those present)."""


def _load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32).squeeze()


def map_statistics(datalist_file: str | Path) -> dict[str, Any]:
    """Mean difference-map values of one enhanced datalist (every list of entries in it).

    Args:
        datalist_file: an ``enhanced_datalist.json`` whose entries have ``difference`` (map files), ``label`` (the
            tumour mask, > 0 inside) and ``class`` (1 positive, 0 negative).

    Returns:
        ``rule`` (the file's ``difference_rule``), ``positives`` and ``negatives`` (counts), ``inside`` and
        ``outside`` (mean map value inside/outside the mask of positive images, each image weighted alike),
        ``negative`` (mean map value of negative images); None where there is no such image.
    """
    data = json.loads(Path(datalist_file).read_text())
    entries = [e for value in data.values() if isinstance(value, list) for e in value if isinstance(e, dict)]
    inside, outside, negative = [], [], []
    for entry in entries:
        files = entry["difference"] if isinstance(entry["difference"], list) else [entry["difference"]]
        dmap = np.mean([_load(f) for f in files], axis=0)
        if int(entry["class"]) == 1:
            mask = _load(entry["label"]) > 0
            if mask.any() and (~mask).any():
                inside.append(float(dmap[mask].mean()))
                outside.append(float(dmap[~mask].mean()))
        else:
            negative.append(float(dmap.mean()))

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "rule": data.get("difference_rule"),
        "positives": len(inside),
        "negatives": len(negative),
        "inside": mean(inside),
        "outside": mean(outside),
        "negative": mean(negative),
    }


def main(grid_dir: str, output: str | None = None) -> str:
    """Statistics of every generator of a grid (``<grid_dir>/generators/<name>/<data set>/eval``) as a markdown table.

    Args:
        grid_dir: the grid's output folder.
        output: also write the table to this file.

    Returns:
        The markdown table.
    """
    rows = [
        "| generator | data set | images | rule | positives | inside the tumour | outside | negatives | negative images |"
    ]
    rows.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for eval_dir in sorted(Path(grid_dir).glob("generators/*/*/eval")):
        for images, relative in RULE_FILES.items():
            if (eval_dir / relative).is_file():
                s = map_statistics(eval_dir / relative)
                rows.append(
                    f"| {eval_dir.parent.parent.name} | {eval_dir.parent.name} | {images} | {s['rule'] or '-'} "
                    f"| {s['positives']} | {fmt(s['inside'])} | {fmt(s['outside'])} | {s['negatives']} "
                    f"| {fmt(s['negative'])} |"
                )
    table = "\n".join(rows) + "\n"
    if output:
        Path(output).write_text(table)
    return table


if __name__ == "__main__":
    fire.Fire(main)
