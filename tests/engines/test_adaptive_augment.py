"""Tests of the adaptive discriminator augmentation (ADA, Karras et al. 2020): the adjustment of ``p`` by the sign
heuristic, its clamping and checkpointed state, and the 2D/3D pipeline (identity at ``p = 0``, each transformation's
effect, differentiability)."""

import math

import numpy as np
import pytest
import torch
from common.engines import ADA_TRANSFORMS, AdaptiveAugment


def test_p_rises_with_positive_signs_falls_with_negative_and_clamps():
    ada = AdaptiveAugment(target=0.6, speed_kimg=10.0)  # 1000 images move p by 0.1
    ada.accumulate(torch.ones(8, 1))
    assert ada.update(batch_images=1000) == 1.0
    assert ada.p.item() == pytest.approx(0.1)
    assert ada.sign_sum.item() == 0 and ada.sign_count.item() == 0  # reset after each adjustment
    ada.accumulate(torch.tensor([[1.0], [1.0], [1.0], [-1.0]]))  # r_t = 0.5 < 0.6: p falls
    assert ada.update(batch_images=500) == 0.5
    assert ada.p.item() == pytest.approx(0.05)
    ada.adjust(0.9, 20_000)
    assert ada.p.item() == 1.0  # clamped above
    ada.accumulate(-torch.ones(4, 1))
    ada.update(batch_images=50_000)
    assert ada.p.item() == 0.0  # clamped below
    assert ada.update(batch_images=1000) is None and ada.p.item() == 0.0  # nothing accumulated: no change


def test_state_dict_round_trip_restores_p_and_the_sign_accumulator():
    ada = AdaptiveAugment(speed_kimg=1.0)
    ada.adjust(1.0, 300)
    ada.accumulate(torch.tensor([1.0, -1.0, 1.0]))
    restored = AdaptiveAugment(speed_kimg=1.0)
    restored.load_state_dict(ada.state_dict())
    assert restored.p.item() == pytest.approx(0.3)
    assert restored.sign_sum.item() == 1.0 and restored.sign_count.item() == 3.0
    with pytest.raises(ValueError, match="unknown ADA transforms"):
        AdaptiveAugment(transforms=("cutout",))


@pytest.mark.parametrize("shape", [(6, 2, 8, 8), (4, 1, 8, 8, 6)])
def test_p_zero_is_identity_and_p_one_changes_every_batch(shape):
    torch.manual_seed(0)
    x = torch.rand(shape) * 2 - 1
    assert AdaptiveAugment()(x) is x
    out = AdaptiveAugment(initial_p=1.0)(x)
    assert out.shape == x.shape and not torch.allclose(out, x)


@pytest.mark.parametrize("shape", [(3, 2, 8, 8), (2, 2, 8, 8, 4)])
@pytest.mark.parametrize("transform", ADA_TRANSFORMS)
def test_every_transform_is_differentiable(shape, transform):
    torch.manual_seed(1)
    x = (torch.rand(shape) * 2 - 1).requires_grad_(True)
    weights = torch.rand(shape)
    (AdaptiveAugment(transforms=(transform,), initial_p=1.0)(x) * weights).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_blit_transforms_are_flips_rotations_and_reflected_shifts():
    torch.manual_seed(2)
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(32, 1, 1, 1)
    out = AdaptiveAugment(transforms=("xflip", "rotate90"), initial_p=1.0)(x)
    candidates = [torch.rot90(v, k, dims=(2, 3)) for v in (x[:1], x[:1].flip(2)) for k in range(4)]
    kinds = {next(i for i, c in enumerate(candidates) if torch.equal(o[None], c)) for o in out}
    assert len(kinds) > 4  # every output is one of the 8 symmetries, and they vary
    # integer translation: a reflected shift along each axis by up to round(0.125 * 16) = 2 voxels
    ramp = torch.arange(16.0)[None, None, :, None].repeat(64, 1, 1, 2)
    shifted = AdaptiveAugment(transforms=("xint",), initial_p=1.0)(ramp)
    reflected = np.pad(np.arange(16.0), 2, mode="reflect")
    allowed = {tuple(reflected[2 - t : 18 - t]) for t in range(-2, 3)}
    profiles = {tuple(s[0, :, 0].tolist()) for s in shifted}
    assert profiles <= allowed and len(profiles) > 2


def test_warp_rotates_in_the_axial_plane_and_scales_about_the_centre():
    torch.manual_seed(3)
    x = torch.rand(2, 1, 6, 6, 3)
    quarter = AdaptiveAugment.warp(x, torch.ones(2), torch.full((2,), math.pi / 2))
    torch.testing.assert_close(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    half = AdaptiveAugment.warp(x[..., 0], torch.ones(2), torch.full((2,), math.pi))  # 2D, non-trivial angle
    torch.testing.assert_close(half, x[..., 0].flip(2, 3), atol=1e-5, rtol=0)
    constant = AdaptiveAugment.warp(torch.full((2, 1, 5, 7), 0.3), torch.tensor([1.3, 0.7]), torch.tensor([0.4, -2.0]))
    torch.testing.assert_close(constant, torch.full_like(constant, 0.3))  # reflection padding: nothing new comes in
    # scale 2 about the centre: output pixel centres -1.5, -0.5, 0.5, 1.5 read the input at -0.75, -0.25, 0.25, 0.75
    # (pixel units from the centre), so the centre square of a 4x4 image spreads to 0.75, 1, 1, 0.75 per axis
    image = torch.zeros(1, 1, 4, 4)
    image[..., 1:3, 1:3] = 1.0
    profile = torch.tensor([0.75, 1.0, 1.0, 0.75])
    scaled = AdaptiveAugment.warp(image, torch.tensor([2.0]), torch.zeros(1))
    torch.testing.assert_close(scaled[0, 0], profile[:, None] * profile[None, :])


def test_color_is_an_affine_change_of_the_image_channels_only():
    torch.manual_seed(4)
    x = torch.rand(16, 3, 4, 4) * 2 - 1
    out = AdaptiveAugment(transforms=("brightness", "contrast"), initial_p=1.0)(x, color_channels=2)
    torch.testing.assert_close(out[:, 2:], x[:, 2:])
    # per sample out = c * (x + b): the ratio of differences is the same constant c across pixels and channels
    diff_out, diff_in = out[:, :2].flatten(1) - out[:, :1, :1, :1].flatten(1), x[:, :2].flatten(1) - x[
        :, :1, :1, :1
    ].flatten(1)
    ratio = diff_out[:, 1:] / diff_in[:, 1:]
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4, rtol=1e-4)
    assert ratio[:, 0].std() > 0.05  # contrasts vary between samples
    # no image channels (M-SG's masks): nothing is coloured
    torch.testing.assert_close(AdaptiveAugment(transforms=("brightness",), initial_p=1.0)(x, color_channels=0), x)


def test_non_square_axial_plane_keeps_its_shape():
    torch.manual_seed(5)
    x = torch.rand(8, 1, 6, 4, 2)
    out = AdaptiveAugment(transforms=("rotate90",), initial_p=1.0)(x)
    assert out.shape == x.shape
    assert all(torch.equal(o, v) or torch.equal(o, v.flip(1, 2)) for o, v in zip(out, x))  # 0 or 180 degrees


def test_forward_reads_p_from_the_buffer_only_after_it_changed(monkeypatch):
    ada = AdaptiveAugment(initial_p=0.5)
    reads = []
    original = AdaptiveAugment._read_p
    monkeypatch.setattr(AdaptiveAugment, "_read_p", lambda self: reads.append(1) or original(self))
    x = torch.rand(2, 1, 8, 8)
    for _ in range(3):
        ada(x)
    assert len(reads) == 1 and ada.probability() == 0.5
    ada.adjust(real_sign_mean=1.0, batch_images=50_000)  # +0.1
    ada(x)
    assert len(reads) == 2 and ada.probability() == pytest.approx(0.6)
    ada.p.fill_(0.0)  # a direct write is seen too
    assert ada(x) is x and len(reads) == 3
    ada.load_state_dict({**ada.state_dict(), "p": torch.tensor(0.25)})
    assert ada.probability() == 0.25 and len(reads) == 4
    ada.probability()
    assert len(reads) == 4
