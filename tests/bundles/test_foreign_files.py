"""Every 2D bundle trains on files written by other tools, not by the phantom generator.

- (H, W, 1) NIfTI slices with a flipped, offset, anisotropic affine, as ITK-SNAP or SimpleITK write a 2D image:
  the 2D phantom sets rewritten with plain nibabel, then one training iteration of every 2D bundle's tiny variant.
- DICOM written with ITK's GDCM writer: single-file slices train the classification bundle (2D), series folders the
  detection bundle (3D); the loading chain of each keeps the geometry written into the files (spacing, and the origin
  up to the LPS -> RAS flip of MONAI's ITKReader).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data import REAL_DOMAIN, prepare_phantom
from common.engines import latest_checkpoint
from common.transforms import SqueezeToSpatialDimsd
from helpers import REPO, configs, run_workflow
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged

from tests.data.converters.test_generic_csv_converter import RAS_AFFINE, SPACING, _write_dicom_series

#: the bundle whose tiny variant's ``phantom_args`` give the set of each phantom kind.
TINY_PHANTOM_OF = {"brain_mr_2d": "segmentation", "brain_metastases": "cpggan", "chest_ct": "detection"}
#: voxel-to-RAS affine of a 2D image written by ITK to NIfTI: 0.9375 x 0.8 mm pixels, a 5 mm slice, x and y flipped
#: from ITK's LPS, an origin off the corner.
SLICE_AFFINE = np.array(
    [[-0.9375, 0.0, 0.0, 14.5], [0.0, -0.8, 0.0, 12.0], [0.0, 0.0, 5.0, -37.5], [0.0, 0.0, 0.0, 1.0]]
)
#: every 2D bundle (test id -> bundle, its 2D variants before tiny, its phantom kind, the id of the entries its trainer
#: iterates over); detection is 3D unless merged with its 2d.yaml.
BUNDLES_2D = {
    "cda_gan": ("cda_gan", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
    "classification": ("classification", ("tiny.yaml",), "brain_mr_2d", "train#entries"),
    "cpggan": ("cpggan", ("tiny.yaml",), "brain_metastases", "train#datalist"),
    "dcgan_wgan": ("dcgan_wgan", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
    "ga_unet": ("ga_unet", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
    "detection-2d": ("detection", ("2d.yaml", "tiny_2d.yaml"), "brain_metastases", "train#datalist"),
    "munit": ("munit", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
    "pggan": ("pggan", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
    "pix2pix": ("pix2pix", ("tiny.yaml",), "brain_metastases", "train#datalist"),
    "segmentation": ("segmentation", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
    "simgan": ("simgan", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
    "stylegan2": ("stylegan2", ("tiny.yaml",), "brain_mr_2d", "train#datalist"),
}
#: one iteration of one epoch, whatever the bundle's own schedule.
ONE_ITERATION = {"max_epochs": 1, "train#trainer#epoch_length": 1}


def _files(entry: dict) -> list[str]:
    """The image and label paths of a datalist entry (an image may be a list of channel files)."""
    values = [entry[k] for k in ("image", "label") if k in entry]
    return [f for v in values for f in ([v] if isinstance(v, str) else v)]


def _foreign_set(
    kind: str, tmp_path_factory, write: Callable[[np.ndarray, Path, str], str], keys: tuple[str, ...]
) -> Path:
    """The tiny phantom set ``kind`` with every file of ``keys`` rewritten by ``write`` (other file keys dropped).

    Args:
        kind: a phantom kind of :data:`TINY_PHANTOM_OF`.
        tmp_path_factory: pytest's factory of temporary folders.
        write: ``write(array, folder, name)`` writes the array of one phantom file (as nibabel loads it) into the
            new set's ``folder`` after the phantom file's relative path ``name`` and returns the relative path that
            the new datalist names.
        keys: the entry keys whose files are rewritten (``"image"``, ``"label"``).

    Returns:
        the new set's folder, with its ``datalist.json``: every section of the phantom's datalist, and the phantom's
        folder as ``rewritten_from``.
    """
    tiny = REPO / "bundles" / TINY_PHANTOM_OF[kind] / "configs" / "variants" / "tiny.yaml"
    phantom_args = ConfigParser.load_config_file(str(tiny))["phantom_args"]
    source = Path(prepare_phantom(tmp_path_factory.mktemp("phantom") / kind, kind, **phantom_args)).parent
    data = json.loads((source / "datalist.json").read_text())
    target = tmp_path_factory.mktemp("foreign") / kind
    for section in ("training", "validation", "test"):
        for entry in data[section]:
            for key in ("image", "label"):
                if key not in entry:
                    continue
                if key not in keys:
                    del entry[key]
                    continue
                names = [entry[key]] if isinstance(entry[key], str) else entry[key]
                written = []
                for name in names:
                    (target / name).parent.mkdir(parents=True, exist_ok=True)
                    written.append(write(np.asanyarray(nib.load(source / name).dataobj), target, name))
                entry[key] = written[0] if isinstance(entry[key], str) else written
    data["rewritten_from"] = str(source)
    (target / "datalist.json").write_text(json.dumps(data))
    return target


def _write_slice(array: np.ndarray, folder: Path, name: str) -> str:
    """A native ``(H, W)`` phantom slice as an ``(H, W, 1)`` NIfTI with :data:`SLICE_AFFINE`, written by nibabel."""
    assert array.ndim == 2
    nib.save(nib.Nifti1Image(array[..., None], SLICE_AFFINE), str(folder / name))
    return name


def _write_dicom(array: np.ndarray, folder: Path, name: str, scale: float) -> str:
    """A phantom slice as one DICOM file, a phantom volume as a DICOM series folder (int16 of ``array * scale``).

    The geometry is that of ``tests/data/converters/test_generic_csv_converter.py``'s ITK files (:data:`SPACING`,
    its origin). Returns the file (2D) or the folder (3D), relative to ``folder``.
    """
    series = folder / name.removesuffix(".nii.gz")
    values = np.round(array * scale).astype(np.int16)
    _write_dicom_series(series, values[..., None] if array.ndim == 2 else values)
    files = sorted(series.glob("*.dcm"))
    assert len(files) == (values.shape[2] if array.ndim == 3 else 1)  # one file per slice
    return str((files[0] if array.ndim == 2 else series).relative_to(folder))


@pytest.fixture(scope="module")
def slice_sets(tmp_path_factory) -> dict[str, Path]:
    """Phantom kind -> the tiny 2D phantom set of that kind with (H, W, 1) NIfTI images and labels; read-only."""
    return {
        kind: _foreign_set(kind, tmp_path_factory, _write_slice, ("image", "label"))
        for kind in ("brain_mr_2d", "brain_metastases")
    }


def _bundle_copy(name: str, tmp_path: Path) -> Path:
    """``bundles/<name>`` copied to ``tmp_path/<name>`` without its models, outputs and phantom data."""
    root = tmp_path / name
    shutil.copytree(REPO / "bundles" / name, root, ignore=shutil.ignore_patterns("models", "eval", "data", "runs"))
    return root


def _check_trained(workflow: ConfigWorkflow, root: Path, entries_id: str, data: Path) -> list[str]:
    """The trainer ran its one iteration over the files of ``data`` and wrote a checkpoint; returns those files."""
    entries = workflow.parser.get_parsed_content(entries_id)
    files = [f for e in entries if e.get("domain", REAL_DOMAIN) == REAL_DOMAIN for f in _files(e)]
    assert files and all(Path(f).is_relative_to(data) for f in files)
    assert workflow.parser.get_parsed_content("train#trainer").state.iteration == 1
    assert latest_checkpoint(str(root / "models")) is not None
    assert not (root / "data").exists()  # no phantom was generated
    return files


def _loaded(workflow: ConfigWorkflow, chain_id: str, entry: dict) -> MetaTensor:
    """``entry``'s image as the bundle's chain ``chain_id`` loads it: its ``LoadImaged`` and the squeeze after it."""
    chain = [
        t for t in workflow.parser.get_parsed_content(chain_id) if isinstance(t, (LoadImaged, SqueezeToSpatialDimsd))
    ]
    assert len(chain) == 2
    return Compose(chain)({"image": entry["image"]})["image"]


@pytest.mark.parametrize("case", sorted(BUNDLES_2D))
def test_2d_bundle_trains_on_hw1_nifti(case: str, slice_sets: dict[str, Path], tmp_path: Path) -> None:
    name, variants, kind, entries_id = BUNDLES_2D[case]
    root = _bundle_copy(name, tmp_path)
    override = {"dataset_dir": str(slice_sets[kind]), "phantom_kind": "none", **ONE_ITERATION}
    if name in ("munit", "simgan"):  # their stand-in synthetic domain, degraded from the datalist: in the copy
        override["default_synthetic_datalist"] = str(root / "synthetic" / "datalist.json")
    if name == "dcgan_wgan":  # the end-of-run FID/KID (seconds) reads through the training chain again
        override["summary_metrics"] = False
    workflow, _ = run_workflow(configs(root, "train.yaml", *variants), "training", **override)
    assert workflow.parser.get_parsed_content("spatial_dims") == 2
    files = _check_trained(workflow, root, entries_id, slice_sets[kind])
    assert all(nib.load(f).shape[2:] == (1,) for f in files)


@pytest.fixture(scope="module")
def dicom_slices(tmp_path_factory) -> Path:
    """The tiny 2D brain MR phantom set with every channel file a single DICOM file (no labels); read-only."""
    return _foreign_set("brain_mr_2d", tmp_path_factory, partial(_write_dicom, scale=1000.0), ("image",))


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory) -> Path:
    """The tiny chest CT phantom set with every volume a DICOM series folder in HU, the voxel boxes kept; read-only."""
    return _foreign_set("chest_ct", tmp_path_factory, partial(_write_dicom, scale=1.0), ("image",))


def test_classification_trains_on_dicom_slices(dicom_slices: Path, tmp_path: Path) -> None:
    root = _bundle_copy("classification", tmp_path)
    override = {"dataset_dir": str(dicom_slices), "phantom_kind": "none", **ONE_ITERATION}
    workflow, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training", **override)
    files = _check_trained(workflow, root, "train#entries", dicom_slices)
    assert all(f.endswith(".dcm") for f in files)
    image = _loaded(workflow, "load_transforms", workflow.parser.get_parsed_content("train#entries")[0])
    assert image.shape == (4, 32, 32)  # T1, T1c, T2, FLAIR files of one slice
    expected = RAS_AFFINE.copy()
    expected[2, 2] = 1.0  # a single file has no slice spacing: ITK reads 1
    assert np.allclose(image.affine.numpy(), expected)
    assert np.allclose(image.pixdim[:2].numpy(), SPACING[:2])


def test_detection_trains_on_a_dicom_series(dicom_series: Path, tmp_path: Path) -> None:
    root = _bundle_copy("detection", tmp_path)
    override = {"dataset_dir": str(dicom_series), "phantom_kind": "none", **ONE_ITERATION}
    workflow, _ = run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training", **override)
    folders = _check_trained(workflow, root, "train#datalist", dicom_series)
    assert all(Path(f).is_dir() for f in folders)
    entry = workflow.parser.get_parsed_content("train#datalist")[0]
    image = _loaded(workflow, "train#load", entry)
    assert np.allclose(image.affine.numpy(), RAS_AFFINE)  # spacing, and the LPS origin flipped to RAS
    assert np.allclose(image.pixdim.numpy(), SPACING)
    # the voxels in the phantom's order, so its voxel boxes still frame its nodules
    source = Path(json.loads((dicom_series / "datalist.json").read_text())["rewritten_from"])
    phantom = nib.load(source / f"{Path(entry['image']).relative_to(dicom_series)}.nii.gz").get_fdata()
    assert np.array_equal(image[0].numpy(), np.round(phantom)) and len(entry["box"]) > 0
