"""AGGAN's attention (total variation) and pixel losses against hand-computed values."""

import pytest
import torch
from common.losses import attention_tv_loss, pixel_loss


def test_tv_loss_equals_the_hand_sum_in_2d_and_3d():
    # one 2x3 mask: horizontal |0.5-0|+|1-0.5| + |0.2-0.2|+|0.2-0.2| = 1.0; vertical |0.2-0|+|0.2-0.5|+|0.2-1| = 1.3
    mask = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.2, 0.2]]).view(1, 1, 2, 3)
    assert attention_tv_loss(mask).item() == pytest.approx(2.3, abs=1e-6)
    # summed per image, averaged over the batch: a constant mask adds 0, so the mean over two images is 1.15
    batch = torch.cat([mask, torch.full_like(mask, 0.7)])
    assert attention_tv_loss(batch).item() == pytest.approx(1.15, abs=1e-6)
    # 3D: a single 1 in the centre of 3x3x3 zeros has 6 neighbours, each difference |1 - 0| = 1
    volume = torch.zeros(1, 1, 3, 3, 3)
    volume[0, 0, 1, 1, 1] = 1.0
    assert attention_tv_loss(volume).item() == pytest.approx(6.0)
    # bf16 input: computed in float32
    assert attention_tv_loss(mask.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        attention_tv_loss(torch.zeros(3, 4))


def test_pixel_loss_is_the_mean_absolute_change():
    x = torch.tensor([0.0, 1.0, -1.0, 0.5]).view(1, 1, 2, 2)
    y = torch.tensor([0.5, 1.0, 0.0, -0.5]).view(1, 1, 2, 2)
    assert pixel_loss(x, y).item() == pytest.approx((0.5 + 0.0 + 1.0 + 1.0) / 4)
    assert pixel_loss(x, x).item() == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        pixel_loss(x, y.view(1, 1, 4, 1))
