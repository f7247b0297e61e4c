"""The pix2pix U-Net generator (Isola et al. 2017), in 2D and 3D, with dropout as its only noise.

Han's thesis (sec. 5.2.2, Table 4 rows (viii)-(x), Fig. 14c) compares CPGGAN with an "image-to-image GAN", "a
conventional conditional GAN with a U-Net-like generator", that translates the bounding-box conditioning image into
an MR slice with tumours in the boxes. The thesis gives no more; this module follows pix2pix (Isola et al. 2017,
sec. 3.1-3.2 and appendix 6.1.1), whose layout for ``256 x 256`` images is

- encoder ``C64-C128-C256-C512-C512-C512-C512-C512``: 4x4 convolutions with stride 2, each but the first preceded
  by LeakyReLU(0.2) and each but the first followed by a normalisation;
- decoder ``CD512-CD512-CD512-C512-C256-C128-C64``: ReLU, 4x4 transposed convolution with stride 2, normalisation,
  and dropout 0.5 in the first three (``D``); a last ReLU, transposed convolution to the output channels and tanh;
- skip connections: decoder level ``i`` takes its input concatenated with the encoder's level-``i`` activations
  (the U-Net of Ronneberger et al. 2015).

The number of levels is ``num_downs`` (8 for 256 px, so that the bottleneck is 1x1); the channels are
``min(base_channels * 2**i, max_channels)``. The innermost convolution has no normalisation (a 1x1 activation has
no instance statistics), as the reference implementation of pix2pix does.

Noise: pix2pix has no latent; "we provide noise only in the form of dropout, applied on several layers of our
generator at both training and test time" (sec. 3.1). :class:`TestTimeDropout` keeps the dropout active in
``eval()`` mode when its ``at_test`` flag is set (:func:`set_test_time_dropout`). The generator is built with the
flag off, so that the network is deterministic where a check needs that (the model zoo's TorchScript comparison);
the inference workflow turns it on.

Normalisation: pix2pix trains with batch size 1 and uses the test batch's own statistics at test time, which is
instance normalisation (pix2pix appendix 6.1.1); ``norm="instance"`` is the default, ``"batch"`` is available.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm

__all__ = ["Pix2PixGenerator", "TestTimeDropout", "set_test_time_dropout"]


class TestTimeDropout(nn.Dropout):
    """Dropout that can stay active in ``eval()`` mode: pix2pix's noise (Isola et al. 2017, sec. 3.1).

    Args:
        p: drop probability.
        at_test: also drop in ``eval()`` mode.

    Shapes:
        any; the output has the input's shape.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, p: float = 0.5, at_test: bool = False) -> None:
        super().__init__(p=p)
        self.at_test: bool = bool(at_test)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, self.training or self.at_test, self.inplace)


def set_test_time_dropout(network: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn test-time dropout on or off in every :class:`TestTimeDropout` of ``network``.

    Args:
        network: a network holding :class:`TestTimeDropout` modules (e.g. :class:`Pix2PixGenerator`).
        enabled: keep dropout active in ``eval()`` mode (pix2pix's inference) or not (deterministic output).

    Returns:
        ``network`` itself, so that a config can write ``$common.networks.set_test_time_dropout(@net, True)``.

    Raises:
        ValueError: when ``network`` has no :class:`TestTimeDropout` module.
    """
    layers = [m for m in network.modules() if isinstance(m, TestTimeDropout)]
    if enabled and not layers:
        raise ValueError(f"{type(network).__name__} has no TestTimeDropout layer to enable.")
    for layer in layers:
        layer.at_test = bool(enabled)
    return network


class _Down(nn.Module):
    """Encoder level: [LeakyReLU(0.2)] -> 4x4 conv stride 2 -> [norm]."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, norm: str | None, activation: bool) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(0.2) if activation else nn.Identity()
        self.conv = Conv[Conv.CONV, spatial_dims](cin, cout, 4, stride=2, padding=1, bias=norm != "batch")
        self.norm = Norm[norm, spatial_dims](cout, affine=True) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.act(x)))


class _Up(nn.Module):
    """Decoder level: ReLU -> 4x4 transposed conv stride 2 -> norm [-> dropout]; the outermost: ... -> tanh."""

    def __init__(
        self, spatial_dims: int, cin: int, cout: int, norm: str | None, dropout: float, outermost: bool
    ) -> None:
        super().__init__()
        with_norm = bool(norm) and not outermost
        self.conv = Conv[Conv.CONVTRANS, spatial_dims](
            cin, cout, 4, stride=2, padding=1, bias=not (with_norm and norm == "batch")
        )
        self.norm = Norm[norm, spatial_dims](cout, affine=True) if with_norm else nn.Identity()
        self.dropout = TestTimeDropout(dropout) if dropout > 0 and not outermost else nn.Identity()
        self.out = nn.Tanh() if outermost else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.norm(self.conv(F.relu(x)))))


class Pix2PixGenerator(nn.Module):
    """pix2pix U-Net generator (Isola et al. 2017): a conditioning image to an image in ``[-1, 1]``.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: channels of the input (the conditioning image: 1 for a bounding-box image).
        out_channels: channels of the generated image.
        num_downs: number of stride-2 levels (8 for 256 px: a 1x1 bottleneck); every spatial size of the input must
            be divisible by ``2**num_downs``.
        base_channels: channels of the first level (64), doubled per level up to ``max_channels`` (512).
        max_channels: channel cap.
        norm: ``"instance"`` (default; pix2pix's batch-size-1 batch norm with test statistics), ``"batch"`` or
            ``None``.
        dropout: dropout probability of the decoder's first ``num_dropout`` levels from the bottleneck (0.5).
        num_dropout: number of decoder levels with dropout (3: ``CD512-CD512-CD512``); a shallower generator drops
            in all of its ``num_downs - 1`` inner levels (the outermost level never drops).

    Shapes:
        input ``(B, in_channels, *spatial)``, output ``(B, out_channels, *spatial)`` in ``[-1, 1]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 1,
        out_channels: int = 1,
        num_downs: int = 8,
        base_channels: int = 64,
        max_channels: int = 512,
        norm: str | None = "instance",
        dropout: float = 0.5,
        num_dropout: int = 3,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}.")
        if num_dropout < 0:
            raise ValueError(f"num_dropout must be >= 0, got {num_dropout}.")
        num_dropout = min(num_dropout, num_downs - 1)  # the outermost level never drops
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if norm is not None and norm not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance', 'batch' or None, got {norm!r}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_downs = num_downs
        channels = [min(base_channels * 2**i, max_channels) for i in range(num_downs)]
        self.down = nn.ModuleList(
            _Down(
                spatial_dims,
                in_channels if i == 0 else channels[i - 1],
                channels[i],
                norm if 0 < i < num_downs - 1 else None,
                activation=i > 0,
            )
            for i in range(num_downs)
        )
        # up[j] runs from the innermost level (j = 0) outwards; it produces encoder level num_downs - 2 - j's
        # channels (the output channels at the outermost level)
        ups = []
        for j in range(num_downs):
            level = num_downs - 1 - j
            cin = channels[level] if j == 0 else 2 * channels[level]
            cout = out_channels if level == 0 else channels[level - 1]
            ups.append(_Up(spatial_dims, cin, cout, norm, dropout if j < num_dropout else 0.0, level == 0))
        self.up = nn.ModuleList(ups)
        for m in self.modules():  # pix2pix appendix 6.2: weights from N(0, 0.02)
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: conditioning image ``(B, in_channels, *spatial)``, spatial sizes divisible by ``2**num_downs``.

        Returns:
            generated image ``(B, out_channels, *spatial)`` in ``[-1, 1]``.
        """
        factor = 2**self.num_downs
        for s in x.shape[2:]:
            if s % factor != 0:
                raise ValueError(
                    f"input spatial shape {list(x.shape[2:])} must be divisible by 2**num_downs = {factor}."
                )
        skips: list[torch.Tensor] = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        n = len(skips)
        for j, up in enumerate(self.up):
            if j > 0:
                x = torch.cat([x, skips[n - 1 - j]], dim=1)
            x = up(x)
        return x
