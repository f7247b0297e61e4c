"""N4BiasFieldCorrectiond corrects each channel as n4_bias_field_correction does."""

import numpy as np
import pytest
import torch
from common.data.preprocessing import n4_bias_field_correction
from common.transforms import N4BiasFieldCorrectiond
from monai.data import MetaTensor

from tests.data.test_preprocessing import biased_phantom, cv


def test_transform_matches_the_function_per_channel():
    a, _, region = biased_phantom((32, 32), seed=0)
    b, _, _ = biased_phantom((32, 32), seed=1)
    b = b[:, ::-1].copy() * 2.0  # the ramp the other way and another scale
    affine = torch.diag(torch.tensor([0.5, 1.5, 1.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.from_numpy(np.stack([a, b])), affine=affine)
    mask = np.zeros((1, 32, 32), np.float32)
    mask[(0, *region)] = 1
    kwargs = {"shrink_factor": 1, "num_iterations": (20, 20)}
    out = N4BiasFieldCorrectiond(keys="image", mask_key="mask", **kwargs)({"image": image, "mask": mask})["image"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, image.affine)
    assert out.shape == (2, 32, 32) and out.dtype == torch.float32
    for c, channel in enumerate((a, b)):
        expected = n4_bias_field_correction(channel, mask=mask[0], spacing=(0.5, 1.5), **kwargs)
        np.testing.assert_allclose(out[c].numpy(), expected, rtol=1e-5, atol=1e-4)
        assert cv(out[c].numpy()[region]) < 0.5 * cv(channel[region])
    out.meta["filename_or_obj"] = "changed"  # the output's metadata is a copy
    assert image.meta.get("filename_or_obj") != "changed"
    # a numpy item stays numpy, with the same values
    out_np = N4BiasFieldCorrectiond(keys="image", mask_key="mask", spacing=(0.5, 1.5), **kwargs)(
        {"image": image.numpy(), "mask": mask}
    )["image"]
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    np.testing.assert_allclose(out_np, out.numpy(), rtol=1e-5, atol=1e-4)


def test_transform_rejects_a_mask_of_another_size():
    image = torch.ones(1, 16, 16)
    with pytest.raises(ValueError, match="does not fit"):
        N4BiasFieldCorrectiond(keys="image", mask_key="mask")({"image": image, "mask": np.ones((1, 8, 8))})
