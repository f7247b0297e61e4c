"""(H, W, 1) slices and single DICOM files through :class:`SqueezeToSpatialDimsd` and the 2D bundles' chains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import itk
import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import validate_datalist
from common.transforms import SpatialAxesError, SqueezeToSpatialDims, SqueezeToSpatialDimsd
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged

REPO = Path(__file__).resolve().parents[2]
AFFINE = np.array([[0.5, 0, 0, 1.0], [0, 0.7, 0, 2.0], [0, 0, 2.0, 3.0], [0, 0, 0, 1]])


def _nifti(path: Path, shape: tuple[int, ...], value: float | None = None) -> str:
    data = np.random.default_rng(0).random(shape, dtype=np.float32) if value is None else np.full(shape, value)
    nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), str(path))
    return str(path)


def test_squeeze_keeps_affine_and_inverts(tmp_path: Path) -> None:
    load = LoadImaged("image", image_only=True, ensure_channel_first=True)
    slice_ = load({"image": _nifti(tmp_path / "hw1.nii.gz", (6, 5, 1))})["image"]
    native = load({"image": _nifti(tmp_path / "hw.nii.gz", (6, 5))})["image"]
    assert slice_.shape == (1, 6, 5, 1)
    squeeze = SqueezeToSpatialDimsd("image", spatial_dims=2)
    out = squeeze({"image": slice_})["image"]
    assert isinstance(out, MetaTensor) and out.shape == native.shape == (1, 6, 5)
    assert torch.equal(out.affine, native.affine)  # the 4x4 affine of a native (H, W) NIfTI
    assert list(out.meta["spatial_shape"]) == [6, 5]
    back = squeeze.inverse({"image": out})["image"]
    assert back.shape == (1, 6, 5, 1) and list(back.meta["spatial_shape"]) == [6, 5, 1]
    assert not back.applied_operations


def test_squeeze_is_a_noop_at_spatial_dims_and_raises_on_volumes() -> None:
    img = MetaTensor(torch.zeros(2, 4, 4, 4))
    squeeze = SqueezeToSpatialDims(3)
    out = squeeze(img)
    assert out.shape == (2, 4, 4, 4) and squeeze.inverse(out).shape == (2, 4, 4, 4)
    assert SqueezeToSpatialDims(2)(torch.zeros(1, 4, 4, 1, 1)).shape == (1, 4, 4)  # plain tensors too
    img.meta["filename_or_obj"] = "/data/case_1.nii.gz"
    with pytest.raises(SpatialAxesError, match=r"'/data/case_1.nii.gz' of shape \(4, 4, 4\).*axes \(4,\) beyond"):
        SqueezeToSpatialDims(2)(img)


#: 2D-capable bundles, with the variant that makes detection 2D.
BUNDLES_2D = {
    "cda_gan": [],
    "classification": [],
    "cpggan": [],
    "dcgan_wgan": [],
    "msg_gan": [],
    "munit": [],
    "pggan": [],
    "pix2pix": [],
    "segmentation": [],
    "simgan": [],
    "detection": ["variants/2d.yaml"],
}


def _load_lists(config: Any, path: str = "") -> list[str]:
    """The ids of the transform lists that hold a ``LoadImaged``."""
    found = []
    if isinstance(config, dict):
        for k, v in config.items():
            found += _load_lists(v, f"{path}#{k}" if path else str(k))
    elif isinstance(config, list):
        if any(isinstance(t, dict) and t.get("_target_") == "LoadImaged" for t in config):
            found.append(path)
        for i, v in enumerate(config):
            found += _load_lists(v, f"{path}#{i}")
    return found


def test_slices_through_the_2d_chains(tmp_path: Path) -> None:
    """Every chain that loads images in the 2D bundles' train/inference/evaluate configs takes (H, W, 1) files."""
    channels = [_nifti(tmp_path / f"c{c}.nii.gz", (24, 20, 1)) for c in range(4)]  # one file per channel
    label = _nifti(tmp_path / "seg.nii.gz", (24, 20, 1), value=1.0)
    checked = []
    for bundle, variants in BUNDLES_2D.items():
        cfg = REPO / "bundles" / bundle / "configs"
        for workflow in ("train.yaml", "inference.yaml", "evaluate.yaml"):
            files = [cfg / "train.yaml", cfg / workflow] if workflow == "evaluate.yaml" else [cfg / workflow]
            parser = ConfigParser()
            parser.read_config([str(f) for f in files + [cfg / v for v in variants]])
            parser["bundle_root"] = str(tmp_path)
            assert parser["spatial_dims"] == 2, bundle
            for list_id in _load_lists(parser.get()):
                chain = Compose(parser.get_parsed_content(list_id))
                entry = {"image": channels, "label": label, "box": [[2, 2, 5, 5]], "box_label": [0], "class": 1}
                out = chain(entry)
                spatial = tuple(out["image"].shape[-2:])
                assert out["image"].ndim == 3 and min(spatial) > 1, (bundle, workflow, list_id, out["image"].shape)
                checked.append(f"{bundle}/{workflow}:{list_id}")
    assert len(checked) == 44, checked


def test_single_dicom_slice_validates_and_loads(tmp_path: Path) -> None:
    """ITK reads a single DICOM file as a one-slice volume: validation and the chain both take it as 2D."""
    image = itk.image_from_array(np.arange(30, dtype=np.int16).reshape(1, 5, 6))
    image.SetSpacing((0.5, 0.7, 1.0))
    path = tmp_path / "slice.dcm"
    itk.imwrite(image, str(path))
    datalist = tmp_path / "datalist.json"
    datalist.write_text('{"training": [{"image": "slice.dcm"}]}')
    summary = validate_datalist(datalist, spatial_dims=2, num_channels=1)
    assert summary["spatial_dims"] == [2] and summary["num_channels"] == [1]
    chain = Compose(
        [
            LoadImaged("image", image_only=True, ensure_channel_first=True),
            SqueezeToSpatialDimsd("image", spatial_dims=2),
        ]
    )
    out = chain({"image": str(path)})["image"]
    assert out.shape == (1, 6, 5)
    assert np.allclose(np.abs(np.diag(out.affine.numpy()))[:2], [0.5, 0.7])  # pixel spacing kept
