"""A bundle trains on converted data: bundles/segmentation (tiny variant, one epoch) through MONAI's bundle runner,
with only ``dataset_dir`` and ``phantom_kind`` overridden to a BraTS conversion."""

import json
import shutil

from common.data.converters import convert
from common.engines import latest_checkpoint

from tests.bundles.helpers import REPO, configs, run_workflow


def test_segmentation_trains_on_converted_brats(brats2020_release, tmp_path):
    data = tmp_path / "brats_2d"
    convert("brats", brats2020_release, data, spatial_dims=2, slices="1:7", progress=False)
    root = tmp_path / "segmentation"
    shutil.copytree(REPO / "bundles" / "segmentation", root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    workflow, _ = run_workflow(
        configs(root, "train.yaml", "tiny.yaml"), "training", dataset_dir=str(data), phantom_kind="none"
    )
    trainer = workflow.parser.get_parsed_content("train#trainer")
    split = json.loads((root / "eval" / "datalist_full.json").read_text())
    converted = json.loads((data / "datalist.json").read_text())
    assert len(split["training"]) == len(converted["training"]) > 0
    assert {e["patient"] for e in split["training"]} == {e["patient"] for e in converted["training"]}
    assert trainer.state.iteration == len(converted["training"]) // 2  # one epoch, batch 2, every converted slice
    assert latest_checkpoint(str(root / "models")) is not None
    assert not (root / "data").exists()  # no phantom was generated
