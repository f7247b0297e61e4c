"""SimGAN refiner and local discriminator (Shrivastava et al. 2017), in 2D and 3D.

Han's thesis (sec. 4.2.3) refines PGGAN-generated brain MR slices with SimGAN, "an image-to-image GAN designed for
DA that adopts the self-regularization term/local adversarial loss". The networks follow Shrivastava et al.,
sec. 3.1 (implementation details):

- refiner: a ResNet working at full resolution: a 3x3 convolution to 64 feature maps, 4 ResNet blocks (two 3x3
  convolutions of 64 maps each), and a 1x1 convolution to the image channels; no pooling or striding, so the refined
  image has the size of its input. The paper is silent on the output activation; the images here are scaled to
  ``[-1, 1]``, so ``tanh`` is the default (``output_act=None`` gives the raw 1x1 output);
- local discriminator: ``conv3x3 s2 96 - conv3x3 s2 64 - maxpool3x3 s1 - conv3x3 s1 32 - conv1x1 32 - conv1x1 2 -
  softmax``, i.e. a real/refined probability for every local patch (receptive field of one output: 15 input
  pixels). Here the two-way softmax is written as one logit per patch (``softmax([a, b])`` equals
  ``sigmoid(b - a)``), for the binary cross-entropy of the local adversarial loss (paper eq. 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act, Conv, Pool

__all__ = ["SimGANDiscriminator", "SimGANRefiner"]


class _ResNetBlock(nn.Module):
    """``x + conv3(relu(conv3(x)))`` followed by ReLU (He et al. 2016), at constant resolution."""

    def __init__(self, spatial_dims: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        pad = kernel_size // 2
        self.conv1 = conv(channels, channels, kernel_size, padding=pad)
        self.conv2 = conv(channels, channels, kernel_size, padding=pad)
        self.act = Act[Act.RELU]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class SimGANRefiner(nn.Module):
    """SimGAN refiner: ResNet blocks at full resolution, output of the input's size.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the synthetic image.
        out_channels: channels of the refined image (default ``in_channels``).
        base_channels: feature maps of every convolution (64).
        num_res_blocks: ResNet blocks (4).
        kernel_size: kernel size of the convolutions (3).
        output_act: ``"tanh"`` (default, images in ``[-1, 1]``) or ``None``.

    Shapes:
        ``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)``, any spatial size.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int | None = None,
        base_channels: int = 64,
        num_res_blocks: int = 4,
        kernel_size: int = 3,
        output_act: str | None = "tanh",
    ) -> None:
        super().__init__()
        if output_act not in ("tanh", None):
            raise ValueError(f"output_act must be 'tanh' or None, got {output_act!r}.")
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = [conv(in_channels, base_channels, kernel_size, padding=kernel_size // 2)]
        layers.append(Act[Act.RELU]())
        layers += [_ResNetBlock(spatial_dims, base_channels, kernel_size) for _ in range(num_res_blocks)]
        layers.append(conv(base_channels, out_channels or in_channels, 1))
        if output_act == "tanh":
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SimGANDiscriminator(nn.Module):
    """SimGAN local adversarial discriminator: one real/refined logit per local patch.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        channels: feature maps of the four convolutions (``(96, 64, 32, 32)`` in the paper).

    Shapes:
        ``(B, in_channels, *spatial)`` -> ``(B, 1, *ceil(spatial / 4))`` patch logits (positive: real).
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int] = (96, 64, 32, 32)) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels needs 4 values, got {list(channels)}.")
        conv = Conv[Conv.CONV, spatial_dims]
        c1, c2, c3, c4 = (int(c) for c in channels)
        self.model = nn.Sequential(
            conv(in_channels, c1, 3, stride=2, padding=1),
            Act[Act.RELU](),
            conv(c1, c2, 3, stride=2, padding=1),
            Act[Act.RELU](),
            Pool[Pool.MAX, spatial_dims](3, stride=1, padding=1),
            conv(c2, c3, 3, padding=1),
            Act[Act.RELU](),
            conv(c3, c4, 1),
            Act[Act.RELU](),
            conv(c4, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
