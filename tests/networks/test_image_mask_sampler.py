"""ImageMaskSampler: B-SG decoding and the MC-SG pipeline (paper 004 sec. 3.3) with small stand-in generators."""

import pytest
import torch
from common.networks import ImageMaskSampler


class _Constant(torch.nn.Module):
    """G(z[, condition]) -> a fixed tensor; records its keyword arguments."""

    def __init__(self, out):
        super().__init__()
        self.out, self.calls = out, []

    def forward(self, z, condition=None, **kwargs):
        self.calls.append(dict(kwargs, condition=condition, z=z))
        return self.out[: z.shape[0]]


def test_b_sg_output_is_the_image_and_the_one_hot_argmax_of_its_mask_channels():
    scores = torch.tensor([[[[0.1, 2.0]], [[0.5, -1.0]], [[0.0, 0.0]]]])  # K=3 classes, 1x2 image: classes 1, 0
    image = torch.full((1, 2, 1, 2), 0.3)
    generator = _Constant(torch.cat([image, scores], 1))
    out = ImageMaskSampler(generator, 2, 3, truncation_psi=0.7, noise_mode="const")(torch.zeros(1, 8))
    torch.testing.assert_close(out[:, :2], image)
    expected = torch.tensor([[[[-1.0, 1.0]], [[1.0, -1.0]], [[-1.0, -1.0]]]])
    torch.testing.assert_close(out[:, 2:], expected)
    assert generator.calls[0]["truncation_psi"] == 0.7 and generator.calls[0]["noise_mode"] == "const"


def test_mc_sg_feeds_the_decoded_mask_to_the_image_generator():
    mask_scores = torch.randn(3, 4, 5, 5)
    masks = _Constant(mask_scores)
    images = _Constant(torch.rand(3, 1, 5, 5))
    z = torch.randn(3, 2, 6)
    out = ImageMaskSampler(images, 1, 4, mask_generator=masks)(z)
    condition = images.calls[0]["condition"]
    torch.testing.assert_close(condition.argmax(1), mask_scores.argmax(1))
    assert torch.all(condition.sum(1) == 1)
    torch.testing.assert_close(out[:, 1:], condition * 2 - 1)
    torch.testing.assert_close(masks.calls[0]["z"], z[:, 0])  # one latent per generator
    torch.testing.assert_close(images.calls[0]["z"], z[:, 1])


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="image \\+ mask"):
        ImageMaskSampler(_Constant(torch.zeros(1, 3, 2, 2)), 2, 3)(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="B, 2, latent_dim"):
        ImageMaskSampler(_Constant(torch.zeros(1, 1, 2, 2)), 1, 3, mask_generator=_Constant(torch.zeros(1, 3, 2, 2)))(
            torch.zeros(1, 4)
        )
    with pytest.raises(ValueError, match="noise_mode"):
        ImageMaskSampler(_Constant(torch.zeros(1, 3, 2, 2)), 1, 2, noise_mode="fixed")
