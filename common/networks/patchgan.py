"""PatchGAN discriminator of pix2pix/CycleGAN with the CDA-GAN options: spectral normalisation and attention input.

The 70x70 PatchGAN (Isola et al. 2017; Zhu et al. 2017, appendix 7.2, ``C64-C128-C256-C512``): 4x4 convolutions
``64 s2 (no norm) - 128 s2 - 256 s2 - 512 s1 - 1 s1``, LeakyReLU(0.2), giving one real/fake logit per overlapping
70x70 patch. MONAI's :class:`monai.networks.nets.PatchDiscriminator` with ``num_layers_d=3`` and kernel 4 has exactly
this layout; it is reused here and only its last output is returned.

CDA-GAN (Xu et al. 2023) adds:

- sec. 3.1.3: spectral normalisation of every convolution (``spectral_norm=True``; ``False`` is the "w/o SN" ablation);
- sec. 3.1.4, eq. 7-8: the discriminator sees the image together with an attention map, ``D(M, x)``; here the
  one-channel map is concatenated to the image channels (``attention_input=True``) and detached, since the attention
  map does not guide the training of the discriminators (sec. 3.1.2).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act
from monai.networks.nets import PatchDiscriminator
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = ["PatchGANDiscriminator", "patchgan_receptive_field"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def patchgan_receptive_field(num_layers: int = 3, kernel_size: int = 4) -> int:
    """Receptive field (in input pixels per dim) of one output of :class:`PatchGANDiscriminator`.

    The strides are ``2`` for the first ``num_layers`` convolutions and ``1`` for the last two, so
    ``RF = 1 + (k - 1) * sum_i prod_{j<i} s_j``; ``num_layers=3, kernel_size=4`` gives the 70x70 PatchGAN,
    ``num_layers=1`` the 16x16 and ``num_layers=4`` the 142x142 variants of pix2pix.

    Args:
        num_layers: number of normalised convolutions (MONAI's ``num_layers_d``).
        kernel_size: kernel size of every convolution.

    Returns:
        the receptive field size.
    """
    strides = [2] * num_layers + [1, 1]
    field, jump = 1, 1
    for stride in strides:
        field += (kernel_size - 1) * jump
        jump *= stride
    return field


class PatchGANDiscriminator(nn.Module):
    """70x70 PatchGAN discriminator (pix2pix/CycleGAN) with optional spectral norm and attention-map input.

    Layout for ``num_layers=3``: conv4 s2 ``base`` LeakyReLU(0.2) (no norm), conv4 s2 ``2 base`` norm LReLU,
    conv4 s2 ``4 base`` norm LReLU, conv4 s1 ``8 base`` norm LReLU, conv4 s1 ``1`` (padding 1 everywhere), i.e. MONAI's
    ``PatchDiscriminator(num_layers_d=3)``; weights from N(0, 0.02). The convolutions followed by a norm have no bias
    (the norm cancels it); without norm they all have one.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of image channels (without the attention map).
        base_channels: channels of the first convolution (64); doubled at every following one.
        num_layers: number of normalised convolutions (3: 70x70 patches; see :func:`patchgan_receptive_field`).
        norm: MONAI ``Norm`` name or ``(name, args)``: ``"instance"`` (CycleGAN), ``"batch"`` (pix2pix) or ``None``.
        spectral_norm: wrap every convolution in ``torch.nn.utils.parametrizations.spectral_norm`` (CDA-GAN
            sec. 3.1.3); one power iteration per training forward pass.
        attention_input: the discriminator takes a one-channel attention map besides the image (CDA-GAN eq. 7-8):
            the first convolution has ``in_channels + 1`` input channels and ``forward`` needs ``attention_map``.

    Shapes:
        input ``(B, in_channels, *spatial)`` (plus ``attention_map`` ``(B, 1, *spatial)``); output the patch logits
        ``(B, 1, *patches)``; for a 2D ``256 x 256`` input the patches are ``30 x 30``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str | tuple | None = "instance",
        spectral_norm: bool = False,
        attention_input: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_layers = num_layers
        self.attention_input = attention_input
        self.spectral_norm = spectral_norm
        self.model = PatchDiscriminator(
            spatial_dims=spatial_dims,
            channels=base_channels,
            in_channels=in_channels + int(attention_input),
            out_channels=1,
            num_layers_d=num_layers,
            kernel_size=4,
            activation=(Act.LEAKYRELU, {"negative_slope": 0.2}),
            norm=norm,  # type: ignore[arg-type]  # None: no norm (MONAI's Convolution accepts it)
            bias=norm is None,
            padding=1,
        )
        if spectral_norm:
            for module in self.model.modules():
                if isinstance(module, _CONVS):
                    _spectral_norm(module)

    @property
    def receptive_field(self) -> int:
        """Receptive field of one output patch, per spatial dim (70 for ``num_layers=3``)."""
        return patchgan_receptive_field(self.num_layers)

    def forward(self, x: torch.Tensor, attention_map: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: image, shape ``(B, in_channels, *spatial)``.
            attention_map: with ``attention_input``, the attention map ``M`` of eq. 7-8, shape ``(B, 1, *spatial)``;
                it is detached, so no gradient reaches the attention network through the discriminator.

        Returns:
            patch logits, shape ``(B, 1, *patches)``.
        """
        if self.attention_input != (attention_map is not None):
            raise ValueError(
                "attention_map must be given if and only if attention_input=True "
                f"(attention_input={self.attention_input}, attention_map given: {attention_map is not None})."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} image channels, got input of shape {tuple(x.shape)}.")
        if attention_map is not None:
            if tuple(attention_map.shape) != (x.shape[0], 1, *x.shape[2:]):
                raise ValueError(
                    f"attention_map shape {tuple(attention_map.shape)} must be (B, 1, *spatial) matching the image "
                    f"{tuple(x.shape)}."
                )
            x = torch.cat([x, attention_map.detach().to(x.dtype)], dim=1)
        # MONAI's PatchDiscriminator is an nn.Sequential whose own forward returns every intermediate feature map;
        # chaining its layers returns only the patch logits without keeping the intermediates alive.
        return nn.Sequential.forward(self.model, x)
