"""RandShiftFractiond: the shift range follows each image's own size."""

import numpy as np
import pytest
import torch
from common.transforms import RandShiftFractiond


@pytest.mark.parametrize("shape", [(16, 24), (12, 40, 20)])
def test_shift_range_follows_the_image_size(shape):
    t = RandShiftFractiond(["image", "mask"], fraction=0.25, prob=1.0, mode=["bilinear", "nearest"])
    t.set_random_state(0)
    image = torch.zeros((1, *shape))
    centre = tuple(s // 2 for s in shape)
    image[(0, *centre)] = 1.0
    offsets = []
    for _ in range(40):
        out = t({"image": image, "mask": image.clone()})
        assert out["image"].shape == image.shape
        peak = np.unravel_index(int(torch.argmax(out["mask"])), shape)
        offsets.append([p - c for p, c in zip(peak, centre)])
        assert torch.equal(torch.nonzero(out["mask"][0] > 0.5)[0], torch.as_tensor(peak))  # moved together
    offsets = np.abs(np.asarray(offsets))
    limits = np.asarray(shape) * 0.25
    assert (offsets <= np.ceil(limits)).all()
    assert (offsets.max(axis=0) >= 0.5 * limits).all()  # the range is used along every axis, long ones too


def test_translate_range_is_refused():
    with pytest.raises(ValueError, match="translate_range"):
        RandShiftFractiond("image", fraction=0.1, translate_range=(2, 2))
