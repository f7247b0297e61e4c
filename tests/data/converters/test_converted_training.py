"""Every bundle trains on converted data through MONAI's bundle runner: a tiny variant, one short epoch, with only
``dataset_dir`` and ``phantom_kind`` overridden (plus the iteration counts a tiny variant leaves long).

2D bundles (segmentation, classification, cda_gan, dcgan_wgan) train on slices of a BraTS 2020 conversion, the
four sequences as four channel files; the 3D bundles (detection, mcgan_3d) on a LUNA16 conversion with the
LIDC-IDRI reader annotations (boxes in voxels, size and attenuation per nodule). Each test checks that the trainer
ran over the converted training entries (the same patients), that a checkpoint was written and that no phantom
was generated.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
from common.data.converters import convert
from common.engines import latest_checkpoint

from tests.bundles.helpers import REPO, check_run_summary, configs, run_workflow


@pytest.fixture(scope="module")
def brats_2d(brats2020_release, tmp_path_factory) -> Path:
    """Axial slices 1-6 of the BraTS 2020 fixture (42 training slices of 7 patients, both classes); read-only."""
    data = tmp_path_factory.mktemp("converted") / "brats_2d"
    convert("brats", brats2020_release, data, spatial_dims=2, slices="1:7", progress=False)
    return data


@pytest.fixture(scope="module")
def luna16_3d(luna16_release, tmp_path_factory) -> Path:
    """The LUNA16 fixture converted with its LIDC-IDRI XML (each nodule's attenuation); read-only."""
    data = tmp_path_factory.mktemp("converted") / "luna16"
    convert("luna16", luna16_release, data, lidc_xml=luna16_release / "LIDC-XML-only", progress=False)
    return data


def bundle_copy(name: str, tmp_path: Path) -> Path:
    """``bundles/<name>`` copied to ``tmp_path/<name>`` without its models, outputs and phantom data."""
    root = tmp_path / name
    shutil.copytree(REPO / "bundles" / name, root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    return root


def training_entries(data: Path) -> list[dict]:
    """The ``training`` section of a conversion's datalist."""
    return json.loads((data / "datalist.json").read_text())["training"]


def patients(entries) -> set[str]:
    return {e["patient"] for e in entries}


def test_segmentation_trains_on_converted_brats(brats_2d, tmp_path):
    root = bundle_copy("segmentation", tmp_path)
    workflow, _ = run_workflow(
        configs(root, "train.yaml", "tiny.yaml"), "training", dataset_dir=str(brats_2d), phantom_kind="none"
    )
    trainer = workflow.parser.get_parsed_content("train#trainer")
    split = json.loads((root / "eval" / "datalist_full.json").read_text())
    converted = training_entries(brats_2d)
    assert len(split["training"]) == len(converted) > 0
    assert patients(split["training"]) == patients(converted)
    assert trainer.state.iteration == len(converted) // 2  # one epoch, batch 2, every converted slice
    assert latest_checkpoint(str(root / "models")) is not None
    assert not (root / "data").exists()  # no phantom was generated


def test_classification_trains_on_converted_brats(brats_2d, tmp_path):
    root = bundle_copy("classification", tmp_path)
    workflow, _ = run_workflow(
        configs(root, "train.yaml", "tiny.yaml"), "training", dataset_dir=str(brats_2d), phantom_kind="none"
    )
    entries = workflow.parser.get_parsed_content("train#entries")
    converted = training_entries(brats_2d)
    assert len(entries) == len(converted) and patients(entries) == patients(converted)
    assert {e["class"] for e in entries} == {0, 1}  # tumour and tumour-free slices, from the converted masks
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == len(converted) // 4  # one epoch, batch 4, the last partial batch dropped
    assert workflow.parser.get_parsed_content("network_def#n_input_channels") == 4  # T1, T1c, T2, FLAIR files
    assert latest_checkpoint(str(root / "models")) is not None and (root / "models" / "model.pt").is_file()
    assert not (root / "data").exists()


def test_cda_gan_trains_on_converted_brats(brats_2d, tmp_path):
    root = bundle_copy("cda_gan", tmp_path)
    # tiny.yaml: one constant and one decaying epoch of batch 1; here a single epoch of batch 4
    workflow, _ = run_workflow(
        configs(root, "train.yaml", "tiny.yaml"),
        "training",
        dataset_dir=str(brats_2d),
        phantom_kind="none",
        n_epochs_decay=0,
        batch_size=4,
    )
    dataset = workflow.parser.get_parsed_content("train#dataset")
    converted = training_entries(brats_2d)
    positives = [e for e in converted if e["class"] == 1]
    assert len(dataset.positives) == len(positives) > 0 and len(dataset.negatives) == len(converted) - len(positives)
    assert patients(dataset.positives + dataset.negatives) == patients(converted)
    item = dataset[0]
    assert item["positive"].shape == item["negative"].shape == (4, 16, 16) and item["mask"].max() > 0
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == math.ceil(len(positives) / 4)  # one epoch visits every positive slice
    assert latest_checkpoint(str(root / "models")) is not None
    assert all((root / "models" / f).is_file() for f in ("model.pt", "gen_p.pt", "attn_n.pt", "attn_p.pt"))
    assert not (root / "data").exists()


def test_dcgan_wgan_trains_on_converted_brats_t1c(brats_2d, tmp_path):
    root = bundle_copy("dcgan_wgan", tmp_path)
    # t1c.yaml: the thesis' single-sequence input (sec. 3.2.2), channel 1 of the converted T1, T1c, T2, FLAIR files
    workflow, _ = run_workflow(
        configs(root, "train.yaml", "t1c.yaml", "tiny.yaml"), "training", dataset_dir=str(brats_2d), phantom_kind="none"
    )
    dataset = workflow.parser.get_parsed_content("train#dataset")
    converted = training_entries(brats_2d)
    assert len(dataset) == len(converted) and patients(dataset.data) == patients(converted)
    assert dataset[0]["image"].shape == (1, 16, 16)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == len(converted) // 4  # one epoch, batch 4, the last partial batch dropped
    summary = check_run_summary(root, sample_grid=True, metrics=True)  # quick metrics against the converted split
    assert summary["iteration"] == trainer.state.iteration
    assert not (root / "data").exists()


def test_detection_trains_on_converted_luna16(luna16_3d, tmp_path):
    root = bundle_copy("detection", tmp_path)
    workflow, _ = run_workflow(
        configs(root, "train.yaml", "tiny.yaml"), "training", dataset_dir=str(luna16_3d), phantom_kind="none"
    )
    datalist = workflow.parser.get_parsed_content("train#datalist")
    converted = training_entries(luna16_3d)
    assert len(datalist) == len(converted) and patients(datalist) == patients(converted)
    assert any(e["box"] for e in converted) and any(not e["box"] for e in converted)  # nodules and negatives
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == len(converted) // 2  # one epoch, batch 2, the last partial batch dropped
    assert latest_checkpoint(str(root / "models")) is not None and (root / "models" / "model.pt").is_file()
    assert not (root / "data").exists()


def test_mcgan_3d_trains_on_converted_luna16(luna16_3d, luna16_release, tmp_path):
    root = bundle_copy("mcgan_3d", tmp_path)
    workflow, _ = run_workflow(
        configs(root, "train.yaml", "tiny.yaml"), "training", dataset_dir=str(luna16_3d), phantom_kind="none"
    )
    nodules = workflow.parser.get_parsed_content("train#datalist")  # one entry per converted training nodule
    converted = training_entries(luna16_3d)
    expected = sorted((e["patient"], s, a) for e in converted for s, a in zip(e["size"], e["attenuation"]))
    assert sorted((n["patient"], n["size"], n["attenuation"]) for n in nodules) == expected and len(expected) > 1
    assert patients(nodules) == patients(e for e in converted if e["box"])
    item = workflow.parser.get_parsed_content("train#dataset")[0]
    assert item["image"].shape == (7, 32, 32, 32)  # the noise-boxed VOI and the 6 size/attenuation conditions
    assert workflow.parser.get_parsed_content("train#trainer").state.iteration == 2  # tiny.yaml's epoch_length
    assert latest_checkpoint(str(root / "models")) is not None and (root / "models" / "model.pt").is_file()
    assert not (root / "data").exists()
    # LUNA16 alone carries no attenuation: the bundle stops before training, naming the missing key
    plain = tmp_path / "luna16_plain"
    convert("luna16", luna16_release, plain, progress=False)
    with pytest.raises(RuntimeError) as error:
        run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training", dataset_dir=str(plain), phantom_kind="none")
    cause = error.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert "attenuation: key is missing" in str(cause) and str(plain / "datalist.json") in str(cause)
