"""Tests of the 3D MCGAN nodule transforms (Han thesis, sec. 6.2.1): VOI crop, noise box, conditions, paste-back."""

import numpy as np
import pytest
import torch
from common.transforms import (
    ConditionAugmentd,
    NoduleVOId,
    NoiseBoxd,
    PasteNoduled,
    TileConditionsd,
    augment_box,
    condition_vector,
    hu_to_unit,
    lung_mask,
    nodule_entries,
    nodule_region,
    paste_nodule,
    sample_lung_box,
    unit_to_hu,
)
from monai.data import MetaTensor
from scipy import ndimage


def _volume_with_cube(shape=(40, 40, 40), box=(10, 14, 12, 16, 20, 18)):
    vol = np.full((1, *shape), -850.0, dtype=np.float32)
    vol[0, box[0] : box[3], box[1] : box[4], box[2] : box[5]] = 40.0
    return vol, list(box)


def test_voi_crop_centred_on_nodule():
    vol, box = _volume_with_cube()
    out = NoduleVOId("image", voi_size=32, nodule_size=16, margin=0)({"image": vol, "box": box})
    voi = out["image"][0]
    assert voi.shape == (32, 32, 32)
    bright = torch.nonzero(voi > -400).float()
    # the 6^3 box is the central 16^3 of the VOI: its centroid is the VOI centre and it fills the central box
    assert torch.allclose(bright.mean(0), torch.full((3,), 15.5), atol=0.6)
    assert voi[10:22, 10:22, 10:22].min() > 0.0 and voi[:6].max() < -800 and voi[:, :, 26:].max() < -800
    np.testing.assert_array_equal(out["nodule_region"], [[10, 14, 12], [16, 20, 18]])


def test_voi_pads_at_border_and_region_even():
    vol, box = _volume_with_cube(box=(0, 0, 30, 5, 5, 40))
    out = NoduleVOId("image", voi_size=32, nodule_size=16, margin=1, pad_value=-1000.0)({"image": vol, "box": box})
    region = out["nodule_region"]
    assert np.all((region[1] - region[0]) % 2 == 0) and np.all(region[1] - region[0] >= np.array([7, 7, 12]))
    assert out["image"].min() == pytest.approx(-1000.0)  # padded air outside the volume
    with pytest.raises(ValueError, match="one box"):
        NoduleVOId("image")({"image": vol, "box": [box, box]})


def test_noise_box_exactly_at_the_box():
    voi = torch.full((1, 32, 32, 32), 0.8)
    out = NoiseBoxd("image", nodule_size=16).set_random_state(0)({"image": voi})
    x, target = out["image"][0], out["target"][0]
    inner = x[8:24, 8:24, 8:24]
    assert inner.min() >= -0.5 and inner.max() <= 0.5 and inner.std() > 0.2
    outside = x.clone()
    outside[8:24, 8:24, 8:24] = 0.8
    assert torch.equal(outside, torch.full_like(outside, 0.8))  # nothing changed outside the box
    assert torch.equal(target, voi[0])  # the real VOI is kept as target


def test_condition_channels_one_hot_and_constant():
    voi = torch.zeros(1, 16, 16, 16)
    out = TileConditionsd("image")({"image": voi, "size": "medium", "attenuation": "ground-glass"})
    x = out["image"]
    assert x.shape == (7, 16, 16, 16)
    expected = [0, 1, 0, 0, 0, 1]
    for c, v in enumerate(expected):
        assert torch.all(x[1 + c] == v)
    assert out["condition"].tolist() == expected and out["condition"].sum() == 2
    with pytest.raises(ValueError, match="size"):
        condition_vector("huge", "solid")


def test_paste_back_keeps_affine_range_and_outside():
    rng = np.random.default_rng(0)
    affine = torch.tensor([[0.7, 0, 0, -10.0], [0, 0.7, 0, 5.0], [0, 0, 1.2, 3.0], [0, 0, 0, 1.0]], dtype=torch.float64)
    arr = rng.uniform(-1000, 300, size=(1, 40, 36, 30)).astype(np.float32)
    volume = MetaTensor(torch.from_numpy(arr), affine=affine)
    box = [12, 10, 8, 20, 17, 15]
    region = nodule_region(box, margin=1)
    generated = torch.rand(1, 32, 32, 32) * 2.4 - 1.2  # also outside [-1, 1]: clipped by the mapping
    out = PasteNoduled("image", nodule_key="pred", nodule_size=16, blend_width=1)(
        {"image": volume, "pred": generated, "nodule_region": region}
    )["image"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine)
    assert out.min() >= arr.min() and out.max() <= arr.max()
    inside = np.zeros(arr.shape[1:], dtype=bool)
    inside[tuple(slice(a, b) for a, b in zip(*region))] = True
    neighbourhood = ndimage.binary_dilation(inside, iterations=1)
    np.testing.assert_array_equal(out.numpy()[0][~neighbourhood], arr[0][~neighbourhood])
    assert np.abs(out.numpy()[0][inside] - arr[0][inside]).mean() > 50.0  # the box itself did change
    # hard paste: the centre of the generated box appears as its HU value
    hard = paste_nodule(volume, torch.zeros(1, 16, 16, 16), region, nodule_size=16, blend_width=0)
    np.testing.assert_allclose(
        hard[0][tuple(slice(a, b) for a, b in zip(*region))].numpy(), unit_to_hu(np.float64(0.0)), atol=1e-3
    )


def test_hu_mapping_round_trip():
    hu = torch.tensor([-1000.0, -850.0, -600.0, 40.0, 500.0])
    assert torch.allclose(unit_to_hu(hu_to_unit(hu)), hu, atol=1e-3)
    assert hu_to_unit(torch.tensor([2000.0])).item() == 1.0


def test_condition_augmentation_within_ten_percent():
    rng = np.random.RandomState(0)
    box = [100, 50, 20, 140, 70, 80]
    extent, centre = np.array([40, 20, 60]), np.array([120, 60, 50])
    seen_shift, seen_zoom = 0.0, 0.0
    for _ in range(300):
        b = np.array(augment_box(box, rng, 0.1, 0.1))
        new_extent, new_centre = b[3:] - b[:3], (b[:3] + b[3:]) / 2
        assert np.all(new_extent >= np.floor(0.9 * extent)) and np.all(new_extent <= np.ceil(1.1 * extent))
        assert np.all(np.abs(new_centre - centre) <= 0.1 * extent + 1.0)
        seen_shift = max(seen_shift, np.max(np.abs(new_centre - centre) / extent))
        seen_zoom = max(seen_zoom, np.max(np.abs(new_extent / extent - 1)))
    assert seen_shift > 0.07 and seen_zoom > 0.07  # the augmentation does use its range
    out = ConditionAugmentd("box").set_random_state(1)({"box": [box, box]})
    assert len(out["box"]) == 2 and out["box"][0] != out["box"][1]


def test_lung_mask_and_placement():
    vol = np.full((48, 48, 24), -1000.0, dtype=np.float32)  # outside air touches the in-plane border
    vol[4:44, 4:44] = 40.0  # body
    vol[8:22, 10:38] = -850.0  # one lung
    vol[14, 20, 10] = 40.0  # a vessel voxel inside it
    lung = lung_mask(vol)
    assert lung[8:22, 10:38].all() and not lung[:4].any() and not lung[26:40].any()
    rng = np.random.RandomState(0)
    occupied = [[8, 10, 0, 15, 24, 24]]
    for _ in range(20):
        b = sample_lung_box(lung, [4, 5, 6], rng, occupied, gap=2)
        assert b is not None and lung[b[0] : b[3], b[1] : b[4], b[2] : b[5]].all()
        assert b[3] - b[0] == 4 and b[4] - b[1] == 5 and b[5] - b[2] == 6
        assert b[0] >= 15 + 2 or b[1] >= 24 + 2  # away from the occupied box
    assert sample_lung_box(lung, [30, 5, 5], rng) is None


def test_nodule_entries():
    entries = [
        {
            "image": "a.nii.gz",
            "box": [[0, 0, 0, 2, 2, 2], [3, 3, 3, 5, 5, 5]],
            "size": ["small", "large"],
            "attenuation": ["solid", "ground-glass"],
            "patient": "p",
        }
    ]
    out = nodule_entries(entries)
    assert [e["size"] for e in out] == ["small", "large"] and out[1]["box"] == [3, 3, 3, 5, 5, 5]
    with pytest.raises(ValueError, match="sizes"):
        nodule_entries([{"image": "a", "box": [[0, 0, 0, 1, 1, 1]], "size": [], "attenuation": []}])


def test_nodule_entries_leave_out_unknown_conditions(caplog):
    entries = [
        {"image": "a", "box": [[0, 0, 0, 2, 2, 2], [3, 3, 3, 5, 5, 5]], "size": ["small", "small"],
         "attenuation": ["unknown", "solid"]},
        {"image": "b", "box": [[0, 0, 0, 2, 2, 2]], "size": ["tiny"], "attenuation": ["unknown"]},
    ]  # fmt: skip
    with caplog.at_level("WARNING"):
        out = nodule_entries(entries)
    assert [(e["image"], e["nodule_index"]) for e in out] == [("a", 1)]
    assert "1 nodules kept" in caplog.text and "2 with attenuation 'unknown'" in caplog.text
    assert "1 with size 'tiny'" in caplog.text
    assert len(nodule_entries(entries, known_only=False)) == 3
    with pytest.raises(ValueError, match="no nodule has a known size and attenuation"):
        nodule_entries(entries[1:])
