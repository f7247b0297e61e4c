"""DCGAN generator and discriminator (Radford et al. 2016) as adapted in Han's thesis, sec. 3.2.2.

Sec. 3.2.2: "We use the same DCGAN architecture with no tanh in the generator, ELU as the discriminator,
all filters of size 4x4, and a half channel size". The WGAN of the same section uses the same architecture.

Layout (the DCGAN reference layout, four resolution stages, generalised to ``spatial_dims`` 2 or 3):

- generator: ``z (B, latent_size)`` -> linear projection to ``(B, 8*base, *image_size/16)`` -> BN -> ReLU
  -> 3 x [4x4 transposed conv, stride 2, BN, ReLU] -> 4x4 transposed conv, stride 2, to ``out_channels``;
  no output activation (sec. 3.2.2: no tanh);
- discriminator: 4 x [4x4 conv, stride 2, BN (not on the first), ELU] -> linear to one logit/score; optionally
  with spectral normalisation of every weight (Miyato et al. 2018, sec. 2.1), which is not in the thesis.

"Half channel size": the reference DCGAN uses 64 filters at the finest stage (doubling to 512); here
``base_channels=32`` by default, i.e. 32/64/128/256. This choice is written in the bundle's model card.

Initialisation (Radford et al. 2016, sec. 4): MONAI's :func:`~monai.networks.utils.normal_init`, i.e. convolution,
transposed convolution and linear weights from N(0, 0.02), batch-norm scales from N(1, 0.02), zero biases and shifts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.networks.layers.factories import Act, Conv, Norm
from monai.networks.utils import normal_init
from monai.utils import ensure_tuple_rep

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]


def _stage_shape(image_size: Sequence[int], num_stages: int) -> tuple[int, ...]:
    factor = 2**num_stages
    bad = [s for s in image_size if s % factor != 0]
    if bad:
        raise ValueError(f"image_size {tuple(image_size)} must be divisible by 2**num_stages={factor} in every dim.")
    return tuple(s // factor for s in image_size)


class DCGANGenerator(nn.Module):
    """DCGAN generator (Han thesis, sec. 3.2.2): latent vector to image, no tanh.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        latent_size: length of the latent vector ``z``.
        out_channels: number of image channels (1 for one MR sequence, 4 for the "Concat" input).
        image_size: output spatial size, an int or one int per dim, divisible by ``2**num_stages``.
        base_channels: channels of the finest stage; coarser stages double it (32 = half the reference 64).
        num_stages: number of stride-2 up-sampling stages (4 in DCGAN).
        output_act: optional output activation name (``None`` as in sec. 3.2.2; ``"tanh"`` gives the original
            DCGAN).

    Shapes:
        input ``(B, latent_size)`` (a ``(B, latent_size, 1, ...)`` tensor is flattened); output
        ``(B, out_channels, *image_size)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        latent_size: int = 100,
        out_channels: int = 1,
        image_size: int | Sequence[int] = 64,
        base_channels: int = 32,
        num_stages: int = 4,
        output_act: str | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        self.latent_size = latent_size
        self.image_size = ensure_tuple_rep(image_size, spatial_dims)
        self.init_shape = _stage_shape(self.image_size, num_stages)
        conv_t, norm = Conv[Conv.CONVTRANS, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        channels = [base_channels * 2 ** min(i, 3) for i in reversed(range(num_stages))]  # e.g. 256,128,64,32
        self.init_channels = channels[0]
        self.project = nn.Linear(latent_size, channels[0] * int(np.prod(self.init_shape)))
        self.project_act = nn.Sequential(norm(channels[0]), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [conv_t(c_in, c_out, 4, stride=2, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True)]
        layers.append(conv_t(channels[-1], out_channels, 4, stride=2, padding=1))
        if output_act is not None:
            layers.append(Act[output_act]())
        self.up = nn.Sequential(*layers)
        self.apply(normal_init)  # DCGAN initialisation, see the module docstring

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.flatten(1)
        x = self.project(z).view(z.shape[0], self.init_channels, *self.init_shape)
        return self.up(self.project_act(x))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator with ELU activations (Han thesis, sec. 3.2.2); also the WGAN critic.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of image channels.
        image_size: input spatial size, divisible by ``2**num_stages``.
        base_channels: channels of the first stage; later stages double it (capped at 8x).
        num_stages: number of stride-2 down-sampling stages (4 in DCGAN).
        norm: normalisation after every conv but the first (``"batch"`` as in DCGAN; ``None`` or
            ``"instance"`` for a WGAN-GP critic, where batch norm breaks the per-sample penalty).
        act: activation (``"elu"`` in sec. 3.2.2).
        spectral_norm: divide the weight of every convolution and of the final linear layer by its largest singular
            value, estimated by one power iteration per training forward (Miyato et al. 2018, sec. 2.1; usually
            with ``norm=None``). Off in the thesis. The state dict then holds ``parametrizations.weight.original``
            (the unnormalised weight, initialised as without spectral norm) instead of ``weight``.

    Shapes:
        input ``(B, in_channels, *image_size)``; output ``(B, 1)`` raw logits (BCE) or scores (WGAN).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 1,
        image_size: int | Sequence[int] = 64,
        base_channels: int = 32,
        num_stages: int = 4,
        norm: str | None = "batch",
        act: str = "elu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        self.image_size = ensure_tuple_rep(image_size, spatial_dims)
        final_shape = _stage_shape(self.image_size, num_stages)
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(num_stages):
            c_out = base_channels * 2 ** min(i, 3)
            layers.append(conv(c_in, c_out, 4, stride=2, padding=1, bias=norm is None or i == 0))
            if i > 0 and norm is not None:
                layers.append(Norm[norm, spatial_dims](c_out))
            layers.append(Act[act]())
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in * int(np.prod(final_shape)), 1)
        self.apply(normal_init)  # DCGAN initialisation, see the module docstring
        if spectral_norm:  # after the initialisation, which writes the weights that the parametrization wraps
            for module in [m for m in self.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]:
                nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
