"""PlaceChannels: one-channel (T1c) synthetic images into the 4-channel real layout (Han sec. 4.2)."""

import pytest
import torch
from common.transforms import PlaceChannels, PlaceChannelsd, SelectChannels


def test_partial_images_are_placed_and_full_ones_pass():
    placer = PlaceChannels(num_channels=4, channels=[1], required=[1])
    t1c = torch.rand(1, 5, 6)
    out = placer(t1c)
    assert out.shape == (4, 5, 6) and torch.equal(out[1], t1c[0]) and out[[0, 2, 3]].abs().sum() == 0
    assert torch.equal(SelectChannels([1])(out), t1c)
    real = torch.rand(4, 5, 6)
    assert placer(real) is real
    with pytest.raises(ValueError, match="3 channels"):
        placer(torch.rand(3, 5, 6))
    d = PlaceChannelsd("image", num_channels=4, channels=[2, 0])({"image": torch.rand(2, 3, 3), "class": 1})
    assert d["image"].shape == (4, 3, 3) and d["class"] == 1


def test_identity_without_channels_and_construction_errors():
    ident = PlaceChannels(num_channels=4)
    x = torch.rand(4, 2, 2)
    assert ident(x) is x
    with pytest.raises(ValueError, match="expected 4"):
        ident(torch.rand(1, 2, 2))
    with pytest.raises(ValueError, match="missing"):
        PlaceChannels(num_channels=4, channels=[1], required=[0, 1])
    with pytest.raises(ValueError, match="distinct"):
        PlaceChannels(num_channels=4, channels=[4])
