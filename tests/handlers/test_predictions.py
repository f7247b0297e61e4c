"""PredictionWriter: each mask keeps its source image's grid and NIfTI geometry header."""

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from common.handlers.predictions import PredictionWriter
from monai.data import MetaTensor


@pytest.mark.parametrize("codes", [(2, 4), (1, 0), (0, 3)])
def test_mask_keeps_the_source_geometry_header(tmp_path, codes):
    """sform/qform codes (e.g. 2 aligned, 4 MNI; 0 unset) and units of the source image, not a fixed code 1."""
    qform_code, sform_code = codes
    affine = np.array([[0.0, -0.8, 0, 10], [0.9, 0, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    source = nib.Nifti1Image(np.random.default_rng(0).random((6, 5, 4)).astype(np.float32), affine)
    source.set_qform(affine if qform_code else None, code=qform_code)
    source.set_sform(affine if sform_code else None, code=sform_code)
    source.header.set_xyzt_units("micron", "msec")
    path = tmp_path / "case.nii.gz"
    nib.save(source, str(path))
    pred = MetaTensor(torch.zeros(1, 6, 5, 4), meta={"filename_or_obj": str(path)})
    pred[0, 1:3, 2, 1] = 1
    writer = PredictionWriter([{"image": str(path)}], tmp_path / "out", tmp_path / "pred.json")
    writer._write(SimpleNamespace(state=SimpleNamespace(output=[{"pred": pred}])))
    out = nib.load(str(writer.written[0]["mask"]))
    ref = nib.load(str(path))
    assert int(out.header["qform_code"]) == qform_code and int(out.header["sform_code"]) == sform_code
    np.testing.assert_allclose(out.affine, ref.affine)
    for get in ("get_qform", "get_sform"):
        mine, theirs = getattr(out.header, get)(coded=True), getattr(ref.header, get)(coded=True)
        assert mine[1] == theirs[1] and (mine[0] is None) == (theirs[0] is None)
        if mine[0] is not None:
            np.testing.assert_allclose(mine[0], theirs[0])
    assert out.header.get_xyzt_units() == ("micron", "msec")
    np.testing.assert_array_equal(np.asarray(out.dataobj), pred[0].numpy().astype(np.uint8))


def test_mask_of_an_itk_image_overlays_it(tmp_path):
    """An MHA source (rotated direction, LPS) gives a NIfTI mask in the RAS affine that LoadImaged loaded it with."""
    import itk
    from monai.transforms import LoadImaged

    image = itk.image_from_array(np.zeros((4, 5, 6), dtype=np.float32))  # (z, y, x) -> MONAI (6, 5, 4)
    image.SetSpacing((0.5, 0.7, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    image.SetDirection(itk.matrix_from_array(rotation))
    path = tmp_path / "scan.mha"
    itk.imwrite(image, str(path))
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = rotation @ np.diag([0.5, 0.7, 2.0]), [1.0, 2.0, 3.0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    pred = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(path)})["image"]
    pred[0, 2, 1, 3] = 1
    writer = PredictionWriter([{"image": str(path)}], tmp_path / "out", tmp_path / "pred.json")
    writer._write(SimpleNamespace(state=SimpleNamespace(output=[{"pred": pred}])))
    out = nib.load(str(writer.written[0]["mask"]))
    assert writer.written[0]["mask"].name == "scan_seg.nii.gz" and out.shape == (6, 5, 4)
    np.testing.assert_allclose(out.affine, ras, atol=1e-6)
    assert np.asarray(out.dataobj)[2, 1, 3] == 1 and np.asarray(out.dataobj).sum() == 1
