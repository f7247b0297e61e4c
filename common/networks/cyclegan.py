"""ResNet generator of CycleGAN and the attention-guided variants used by CDA-GAN and its baselines.

- :class:`ResNetGenerator`: the CycleGAN generator (Zhu et al. 2017, appendix 7.2; Johnson et al. 2016): a 7x7 stem,
  stride-2 down-sampling convolutions, residual blocks, stride-2 transposed convolutions and a 7x7 output convolution.
  Its residual blocks take a channel-attention block: ``"amse"`` gives the AMSE-Residual generator of CDA-GAN
  (Xu et al. 2023, sec. 3.1.1), ``"se"`` and ``"cbam"`` the CycleGAN+SE and CycleGAN+CBAM baselines.
  With ``attention_head=True`` it also returns a spatial attention mask computed from the same decoder features, as
  in AGGAN (Tang et al. 2019), where the attention mask and the translated image share the generator.
- :class:`SpatialAttentionNetwork`: a separate, smaller ResNet encoder-decoder that outputs a one-channel attention
  map in ``[0, 1]``, the attention network of UAGGAN (Alami Mejjati et al. 2018) and of CDA-GAN (sec. 3.1.2).
- :func:`attention_composite`: eq. 4-5 of CDA-GAN, ``A(x) * G(x) + (1 - A(x)) * x``.

All networks work in 2D and 3D through ``spatial_dims``; spatial sizes must be divisible by ``2**num_downsamplings``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer
from monai.networks.utils import normal_init

from .blocks.residual import ResidualAttentionBlock, conv_bias, make_norm

__all__ = ["ResNetGenerator", "SpatialAttentionNetwork", "attention_composite"]


class ResNetGenerator(nn.Module):
    """CycleGAN ResNet generator with optional channel attention in its residual blocks and an AGGAN attention head.

    Layout (Zhu et al. 2017, appendix 7.2, ``c7s1-64, d128, d256, R256 x n, u128, u64, c7s1-3``):

    - stem: 7x7 convolution (reflection padding 3), norm, ReLU, ``base_channels`` channels;
    - ``num_downsamplings`` x [3x3 convolution, stride 2, padding 1, doubling the channels, norm, ReLU];
    - ``num_res_blocks`` x :class:`~common.networks.blocks.ResidualAttentionBlock` with the chosen ``attention``;
    - ``num_downsamplings`` x [3x3 transposed convolution, stride 2, padding 1, output padding 1, halving, norm, ReLU];
    - output: 7x7 convolution (reflection padding 3) to ``out_channels``, then ``output_act`` (tanh).

    The number of residual blocks is the caller's choice: CycleGAN uses 9 blocks for 256x256 training images and 6 for
    128x128. Weights are initialised from N(0, 0.02) as in CycleGAN (MONAI's ``normal_init``).

    With ``attention_head=True`` (AGGAN, Tang et al. 2019: the attention mask shares the generator's encoder and
    decoder) a second 7x7 output convolution on the same final features, followed by a sigmoid, gives a one-channel
    mask and the forward returns ``(image, mask)``; combine them with :func:`attention_composite`.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input image channels.
        out_channels: number of output image channels.
        base_channels: channels of the stem (64 in CycleGAN); each down-sampling doubles them.
        num_res_blocks: number of residual blocks (9 at 256x256, 6 at 128x128 in CycleGAN).
        num_downsamplings: number of stride-2 down-sampling (and up-sampling) stages (2 in CycleGAN).
        attention: channel attention of the residual blocks: ``None``/``"none"`` (CycleGAN), ``"amse"`` (CDA-GAN),
            ``"se"`` or ``"cbam"``.
        norm: MONAI ``Norm`` name or ``(name, args)`` (``"instance"``, affine-free, as in CycleGAN), or ``None``.
        dropout: dropout in the residual blocks (CycleGAN's optional 0.5; 0 by default).
        output_act: MONAI ``Act`` name of the image output (``"tanh"`` for images scaled to ``[-1, 1]``), ``None``
            for a linear output.
        attention_head: also return the AGGAN attention mask.
        padding_mode: padding of the 7x7 and residual 3x3 convolutions (``"reflect"`` in CycleGAN).
        reduction: reduction ratio of the channel-attention blocks.

    Shapes:
        input ``(B, in_channels, *spatial)``; output ``(B, out_channels, *spatial)``, or with ``attention_head`` the
        tuple ``(image (B, out_channels, *spatial), mask (B, 1, *spatial))``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        num_res_blocks: int = 9,
        num_downsamplings: int = 2,
        attention: str | None = None,
        norm: str | tuple | None = "instance",
        dropout: float = 0.0,
        output_act: str | tuple | None = "tanh",
        attention_head: bool = False,
        padding_mode: str = "reflect",
        reduction: int = 16,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_downsamplings < 0 or num_res_blocks < 0:
            raise ValueError("num_downsamplings and num_res_blocks must be non-negative.")
        self.spatial_dims = spatial_dims
        self.num_downsamplings = num_downsamplings
        self.attention_head = attention_head
        conv, conv_t = Conv[Conv.CONV, spatial_dims], Conv[Conv.CONVTRANS, spatial_dims]
        bias = conv_bias(norm)

        def norm_act(channels: int) -> list[nn.Module]:
            return [make_norm(norm, spatial_dims, channels), nn.ReLU(inplace=True)]

        encoder: list[nn.Module] = [
            conv(in_channels, base_channels, 7, padding=3, padding_mode=padding_mode, bias=bias),
            *norm_act(base_channels),
        ]
        channels = base_channels
        for _ in range(num_downsamplings):
            encoder += [conv(channels, channels * 2, 3, stride=2, padding=1, bias=bias), *norm_act(channels * 2)]
            channels *= 2
        self.encoder = nn.Sequential(*encoder)
        self.res_blocks = nn.Sequential(
            *[
                ResidualAttentionBlock(spatial_dims, channels, attention, norm, padding_mode, dropout, reduction)
                for _ in range(num_res_blocks)
            ]
        )
        decoder: list[nn.Module] = []
        for _ in range(num_downsamplings):
            decoder += [
                conv_t(channels, channels // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                *norm_act(channels // 2),
            ]
            channels //= 2
        self.decoder = nn.Sequential(*decoder)
        output: list[nn.Module] = [conv(channels, out_channels, 7, padding=3, padding_mode=padding_mode)]
        if output_act is not None:
            output.append(get_act_layer(output_act))
        self.output = nn.Sequential(*output)
        self.mask_output: nn.Module | None = None
        if attention_head:
            self.mask_output = nn.Sequential(conv(channels, 1, 7, padding=3, padding_mode=padding_mode), nn.Sigmoid())
        self.apply(normal_init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Final decoder features, ``(B, in_channels, *spatial) -> (B, base_channels, *spatial)``."""
        factor = 2**self.num_downsamplings
        for size in x.shape[2:]:  # a loop, not any(...): TorchScript-compatible
            if size % factor != 0:
                raise ValueError(
                    f"spatial size {x.shape[2:]} must be divisible by 2**num_downsamplings={factor} in every dim."
                )
        return self.decoder(self.res_blocks(self.encoder(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: input image, shape ``(B, in_channels, *spatial)``.

        Returns:
            the translated image ``(B, out_channels, *spatial)``; with ``attention_head`` the tuple
            ``(image, mask)`` with ``mask`` of shape ``(B, 1, *spatial)`` in ``[0, 1]``.
        """
        h = self.features(x)
        image = self.output(h)
        if self.mask_output is None:
            return image
        return image, self.mask_output(h)


class SpatialAttentionNetwork(ResNetGenerator):
    """Separate spatial attention network (UAGGAN, Alami Mejjati et al. 2018; CDA-GAN sec. 3.1.2, ``A_N``, ``A_P``).

    A small :class:`ResNetGenerator` (no channel attention, no attention head) with one output channel and a sigmoid:
    the map ``M = A(x)`` in ``[0, 1]`` that selects the foreground in eq. 4-5 (see :func:`attention_composite`) and that
    CDA-GAN supervises with the tumour mask (eq. 6). The size (16 base channels, 3 residual blocks) is this project's
    choice; the papers do not fix it: at 256x256 its forward and backward cost about 5 % of the ResNet-9 generator's.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input image channels.
        base_channels: channels of the stem; each down-sampling doubles them.
        num_res_blocks: number of residual blocks.
        num_downsamplings: number of stride-2 down-sampling stages.
        norm: MONAI ``Norm`` name or ``(name, args)``, or ``None``.
        padding_mode: padding of the 7x7 and residual convolutions.

    Shapes:
        input ``(B, in_channels, *spatial)``; output ``(B, 1, *spatial)`` in ``[0, 1]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_channels: int = 16,
        num_res_blocks: int = 3,
        num_downsamplings: int = 2,
        norm: str | tuple | None = "instance",
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels=1,
            base_channels=base_channels,
            num_res_blocks=num_res_blocks,
            num_downsamplings=num_downsamplings,
            attention=None,
            norm=norm,
            output_act="sigmoid",
            attention_head=False,
            padding_mode=padding_mode,
        )


def attention_composite(image: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-guided composition of CDA-GAN eq. 4-5 (also UAGGAN and AGGAN).

    ``out = mask * generated + (1 - mask) * image``: the foreground comes from the generator where the mask is 1, the
    background is copied from the input image where it is 0.

    Args:
        image: the input image ``x``, shape ``(B, C, *spatial)``.
        generated: the generator output ``G(x)``, shape ``(B, C, *spatial)``.
        mask: the attention map ``A(x)`` in ``[0, 1]``, shape ``(B, 1, *spatial)`` (broadcast over channels) or
            ``(B, C, *spatial)``.

    Returns:
        the composite image, shape ``(B, C, *spatial)``.
    """
    if image.shape != generated.shape:
        raise ValueError(f"image {tuple(image.shape)} and generated {tuple(generated.shape)} shapes differ.")
    if mask.ndim != image.ndim or mask.shape[1] not in (1, image.shape[1]):
        raise ValueError(f"mask shape {tuple(mask.shape)} must be (B, 1, *spatial) or (B, C, *spatial).")
    return mask * generated + (1 - mask) * image


def attention_translate(
    x: torch.Tensor, generator: nn.Module, attention: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Translate ``x`` with a generator and its attention (CDA-GAN eq. 4-5), for every member of the family.

    Args:
        x: input images ``(B, C, *spatial)``.
        generator: returns an image, or ``(image, mask)`` when the mask shares the generator (AGGAN).
        attention: a separate attention network (UAGGAN, CDA-GAN), or ``None``.

    Returns:
        ``(translated, mask)``: the composited image ``mask * G(x) + (1 - mask) * x`` and the map ``(B, 1, *spatial)``;
        with neither a mask head nor an attention network, ``(G(x), None)`` (plain CycleGAN).
    """
    out = generator(x)
    if isinstance(out, tuple):
        return attention_composite(x, out[0], out[1]), out[1]
    if attention is None:
        return out, None
    mask = attention(x)
    return attention_composite(x, out, mask), mask


class CrossDomainTranslator(nn.Module):
    """The trained P <-> N translation of the CycleGAN family, for inference and evaluation (CDA-GAN sec. 3.2).

    Holds ``G_N`` (P -> N), ``G_P`` (N -> P) and their optional separate attention networks, so that ``.eval()`` and
    ``.to()`` act on all of them and :meth:`forward` applies :func:`attention_translate`.

    Args:
        gen_n: generator P -> N (an image, or ``(image, mask)`` when the mask shares the generator).
        gen_p: generator N -> P.
        attn_n: attention network of the P -> N translation, or ``None``.
        attn_p: attention network of the N -> P translation, or ``None``.
    """

    def __init__(
        self, gen_n: nn.Module, gen_p: nn.Module, attn_n: nn.Module | None = None, attn_p: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.gen_n, self.gen_p, self.attn_n, self.attn_p = gen_n, gen_p, attn_n, attn_p

    def forward(self, x: torch.Tensor, to: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Translate ``x`` ``(B, C, *spatial)`` to domain ``to`` (``"n"`` or ``"p"``): ``(image, attention map)``."""
        if to == "n":
            return attention_translate(x, self.gen_n, self.attn_n)
        if to == "p":
            return attention_translate(x, self.gen_p, self.attn_p)
        raise ValueError(f"to must be 'n' or 'p', got '{to}'.")
