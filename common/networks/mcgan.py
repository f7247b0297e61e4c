"""3D Multi-Conditional GAN (MCGAN) networks: U-Net-like generator, context and nodule discriminators.

Han, "Pathology-Aware Generative Adversarial Networks for Medical Image Augmentation" (thesis), sec. 6.2.1 and
Fig. 17. The generator translates a ``64^3`` volume of interest (VOI) whose central ``32^3`` nodule box is filled
with uniform noise, concatenated with 6 tiled size/attenuation conditions (``64^3 x 7`` input), into a VOI with a
nodule in the box. Two pix2pix-like discriminators judge it:

- the *context discriminator* (LSGAN) classifies real vs synthetic (noise-boxed VOI, VOI) pairs, i.e. the nodule
  with its surroundings (:class:`MCGANContextDiscriminator`);
- the *nodule discriminator* (WGAN-GP) classifies real vs synthetic ``32^3`` nodules concatenated with the tiled
  size/attenuation conditions (:class:`MCGANNoduleDiscriminator`).

The thesis gives: "4 convolutional layers in encoders and 4 deconvolutional layers in decoders with skip
connections", "batch normalization is applied to both convolution (using LeakyReLU) and deconvolution (using
ReLU)", "we apply dropout to inject randomness". It is silent on kernel sizes, widths, the dropout rate and place and
the output activation; the choices below follow pix2pix (Isola et al. 2017), the thesis's reference [53]:
4x4(x4) kernels with stride 2, widths ``base, 2 base, 4 base, 8 base`` (``base=64``), no batch norm on the first
encoder layer and on the output layer, dropout 0.5 in the first decoder layers, ``tanh`` output (images in
``[-1, 1]``). All networks take ``spatial_dims`` (2 or 3): the 2D version is the same method on slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Act
from monai.networks.utils import normal_init

from .patchgan import PatchGANDiscriminator

__all__ = [
    "MCGAN_NUM_CONDITIONS",
    "MCGANContextDiscriminator",
    "MCGANGenerator",
    "MCGANNoduleDiscriminator",
    "tile_conditions",
]

MCGAN_NUM_CONDITIONS = 6
"""Size (small, medium, large) and attenuation (solid, part-solid, ground-glass) one-hot conditions (sec. 6.2.1)."""


def tile_conditions(condition: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Tile condition vectors ``(B, K)`` to constant channels ``(B, K, *spatial_shape)``."""
    if condition.ndim != 2:
        raise ValueError(f"condition must be (B, K), got shape {tuple(condition.shape)}.")
    view = condition.reshape(*condition.shape, *([1] * len(spatial_shape)))
    return view.expand(*condition.shape, *spatial_shape)


class MCGANGenerator(nn.Module):
    """U-Net-like MCGAN generator: 4 strided convolutions down, 4 transposed convolutions up, with skips.

    Encoder layer ``i`` (i = 1..4): conv ``k4 s2 p1`` -> batch norm (not on layer 1) -> LeakyReLU(0.2); widths
    ``base * (1, 2, 4, 8)``. Decoder layer ``j`` (j = 1..3): transposed conv ``k4 s2 p1`` -> batch norm -> ReLU ->
    dropout (``dropout`` on the first ``num_dropout`` decoder layers), and its output is concatenated with the
    encoder feature of the same resolution; decoder layer 4: transposed conv to ``out_channels`` and ``tanh``.
    A ``64^3`` input goes down to ``4^3`` and back.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels: 1 noise-boxed VOI + 6 conditions = 7 (sec. 6.2.1).
        out_channels: output channels (1, the VOI with the generated nodule).
        base_channels: channels of the first encoder layer (64 as in pix2pix; the thesis does not say).
        dropout: dropout probability of the first ``num_dropout`` decoder layers (0.5 as in pix2pix).
        num_dropout: number of decoder layers with dropout (0 to 3).
        negative_slope: LeakyReLU slope of the encoder.

    Shapes:
        input ``(B, in_channels, *spatial)`` with every spatial size divisible by 16; output
        ``(B, out_channels, *spatial)`` in ``[-1, 1]``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1 + MCGAN_NUM_CONDITIONS,
        out_channels: int = 1,
        base_channels: int = 64,
        dropout: float = 0.5,
        num_dropout: int = 3,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if not 0 <= num_dropout <= 3:
            raise ValueError(f"num_dropout must be in [0, 3], got {num_dropout}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        widths = [base_channels * m for m in (1, 2, 4, 8)]
        leaky = (Act.LEAKYRELU, {"negative_slope": negative_slope})
        encoders = []
        previous = in_channels
        for i, width in enumerate(widths):
            encoders.append(
                Convolution(
                    spatial_dims,
                    previous,
                    width,
                    strides=2,
                    kernel_size=4,
                    padding=1,
                    adn_ordering="NA",
                    act=leaky,
                    norm=None if i == 0 else "batch",
                    bias=i == 0,
                )
            )
            previous = width
        self.encoders = nn.ModuleList(encoders)
        decoders = []
        # decoder j maps widths[3 - j] (+ skip) to widths[2 - j]
        skip_widths = [widths[2], widths[1], widths[0]]
        previous = widths[3]
        for j, width in enumerate(skip_widths):
            decoders.append(
                Convolution(
                    spatial_dims,
                    previous,
                    width,
                    strides=2,
                    kernel_size=4,
                    padding=1,
                    output_padding=0,
                    is_transposed=True,
                    adn_ordering="NAD",
                    act="relu",
                    norm="batch",
                    dropout=dropout if j < num_dropout and dropout > 0 else None,
                    bias=False,
                )
            )
            previous = width * 2  # concatenated with the encoder feature of this resolution
        self.decoders = nn.ModuleList(decoders)
        self.output = Convolution(
            spatial_dims,
            previous,
            out_channels,
            strides=2,
            kernel_size=4,
            padding=1,
            output_padding=0,
            is_transposed=True,
            conv_only=True,
        )
        self.apply(normal_init)  # pix2pix initialisation: weights N(0, 0.02), batch-norm scales N(1, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(B, in_channels, *spatial)``, spatial sizes divisible by 16.

        Returns:
            ``(B, out_channels, *spatial)`` in ``[-1, 1]``.
        """
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}.")
        for size in x.shape[2:]:
            if size % 16 != 0:
                raise ValueError(f"spatial sizes must be divisible by 16, got {size}.")
        skips: list[torch.Tensor] = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        for j, decoder in enumerate(self.decoders):
            x = torch.cat([decoder(x), skips[2 - j]], dim=1)
        return torch.tanh(self.output(x))


class MCGANContextDiscriminator(nn.Module):
    """Context discriminator (sec. 6.2.1): a pix2pix PatchGAN on the (noise-boxed VOI, VOI) pair, trained with LSGAN.

    As in pix2pix, the discriminator is conditional: it sees the generator input (the VOI with the noise box)
    concatenated with the real or synthetic VOI, so it judges whether the nodule fits its surroundings. Batch norm
    as in pix2pix (LSGAN has no gradient penalty that batch norm would break).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of one VOI (1); the network sees ``2 * in_channels``.
        base_channels: channels of the first convolution.
        num_layers: strided normalised convolutions (3: a 70^3 receptive field, larger than a 64^3 VOI).
        norm: MONAI norm name (``"batch"`` as in pix2pix).

    Shapes:
        ``forward(condition, voi)`` with both ``(B, in_channels, *spatial)``; output patch map ``(B, 1, *patches)``
        (``(B, 1, 6, 6, 6)`` for ``64^3``).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str | tuple | None = "batch",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patchgan = PatchGANDiscriminator(
            spatial_dims, 2 * in_channels, base_channels=base_channels, num_layers=num_layers, norm=norm
        )

    def forward(self, condition: torch.Tensor, voi: torch.Tensor) -> torch.Tensor:
        """
        Args:
            condition: the generator's VOI input with the noise box, ``(B, in_channels, *spatial)``.
            voi: the real VOI or the synthetic one, same shape.

        Returns:
            patch outputs ``(B, 1, *patches)`` (raw, for the least-squares loss).
        """
        return self.patchgan(torch.cat([condition, voi], dim=1))


class MCGANNoduleDiscriminator(nn.Module):
    """Nodule discriminator (sec. 6.2.1): a pix2pix-like critic on the ``32^3`` nodule with tiled conditions, WGAN-GP.

    Batch norm would break the per-sample gradient penalty of WGAN-GP (Gulrajani et al. 2017, sec. 4), so the
    normalised layers use instance norm (``norm``; ``None`` for none).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the nodule (1).
        num_conditions: size/attenuation condition channels concatenated to the nodule (6).
        base_channels: channels of the first convolution.
        num_layers: strided normalised convolutions (2: ``32^3`` gives ``6^3`` patches).
        norm: MONAI norm name or None.

    Shapes:
        ``forward(nodule, condition)``: nodule ``(B, in_channels, *spatial)``, condition ``(B, num_conditions)``
        one-hot vectors (tiled inside) or already tiled ``(B, num_conditions, *spatial)``; output the critic
        scores ``(B, 1, *patches)``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_conditions: int = MCGAN_NUM_CONDITIONS,
        base_channels: int = 64,
        num_layers: int = 2,
        norm: str | tuple | None = "instance",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_conditions = num_conditions
        self.patchgan = PatchGANDiscriminator(
            spatial_dims, in_channels + num_conditions, base_channels=base_channels, num_layers=num_layers, norm=norm
        )

    def forward(self, nodule: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """
        Args:
            nodule: ``(B, in_channels, *spatial)``.
            condition: ``(B, num_conditions)`` or ``(B, num_conditions, *spatial)``.

        Returns:
            critic scores ``(B, 1, *patches)``.
        """
        if condition.ndim == 2:
            condition = tile_conditions(condition, nodule.shape[2:])
        return self.patchgan(torch.cat([nodule, condition.to(nodule.dtype)], dim=1))
