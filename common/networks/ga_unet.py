"""GA-UNet networks (paper 002, sec. II-B and II-C): residual U-Net generator and DenseNet critic.

Generator (sec. II-B, II-C). A conditional generator ``G(z, x_i) -> x_g``: the U-Net is split into an encoder, which
learns a representation ``r_x = g(x_i)`` of the conditioning image, and a generator (decoder), which turns that
representation and a projected Gaussian latent ``g_l(z)`` (eq. 6) into an image of the same class. "The generator
contains eight blocks where each block has four 3x3 convolutional layers with batch renormalization followed by a
downscaling or upscaling layer": here four encoder blocks and four decoder blocks (one per entry of ``channels``).
Each block's four convolutions form a ResNet unit (eq. 7): the sum of the convolution stack and of a 1x1 convolution
of the block's input ("we use a 1x1 convolutional layer to pass features between blocks"), every activation a
leaky ReLU of slope 0.01 (eq. 8). Downscaling: stride-2 convolution, leaky ReLU, batch normalisation, dropout;
upscaling: stride-2 transposed convolution, leaky ReLU, batch renormalisation (:class:`BatchRenorm`), dropout, as
sec. II-C lists them. Skip connections (sec. II-A): each encoder block's features before its downscaling are
concatenated to the decoder input of the same resolution.

Choices where the paper is silent (written here and in the bundle's model card): widths double per level from 64
(the U-Net of sec. II-A); a 3x3 stride-2 convolution downscales and a 4x4 stride-2 transposed convolution upscales;
the latent ``z ~ N(0, I)`` of ``latent_dim`` (100) values is projected by one linear layer to ``latent_channels``
feature maps of the bottleneck's size, concatenated with the encoder's output (the generator therefore has a fixed
``image_size``); dropout 0.5 (pix2pix's rate); the output is a 3x3 convolution and ``tanh``.

Critic (sec. II-C). "DenseNet is adopted as the discriminator. Layer normalization is applied instead of batch
normalization ... four dense blocks and four transition layers where each dense block contains four convolutional
layers and ends with a dropout layer", growth rate 64 (sec. III-B). It judges a pair concatenated on channels:
``(x_i, x_j)`` with ``x_j`` another real image of ``x_i``'s class, or ``(x_i, G(z, x_i))`` (eq. 2-4 and "It is worth
noting ..."), and returns one Wasserstein score per sample.

Class information (sec. II-B, last paragraph: "the class information is provided"), optional through
``num_classes``: the generator concatenates a learned class embedding, tiled over the bottleneck, next to the latent
maps; the critic adds a projection term ``<embed(c), phi(x)>`` to its score (Miyato and Koyama 2018, "cGANs with
projection discriminator"), which keeps it a per-sample scalar function as WGAN-GP requires.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.networks.layers.factories import Act, Conv, Norm, Pool
from monai.networks.layers.utils import get_norm_layer
from monai.utils import ensure_tuple_rep

from .blocks.batch_renorm import BatchRenorm

__all__ = ["SamplingDropout", "GAUNetBlock", "GAUNetCritic", "GAUNetGenerator", "layer_norm"]


def _leaky_relu(negative_slope: float) -> nn.Module:
    return Act[Act.LEAKYRELU](negative_slope=negative_slope)


def layer_norm(spatial_dims: int, channels: int) -> nn.Module:
    """Layer normalisation of convolutional features: ``GroupNorm(1, C)``.

    With one group, ``nn.GroupNorm`` normalises each sample over all its channels and positions, i.e. layer
    normalisation of the ``(C, *spatial)`` feature map (Ba et al. 2016), with a per-channel scale and shift. Unlike
    ``nn.LayerNorm`` (MONAI's ``"layer"`` norm) it does not need the spatial size at construction, and unlike batch
    normalisation it couples no samples, so the WGAN-GP gradient penalty of each sample is its own (Gulrajani et al.
    2017, sec. 4 recommend layer normalisation in the critic for this reason).

    Args:
        spatial_dims: number of spatial dimensions.
        channels: number of channels ``C``.

    Returns:
        The normalisation layer, input and output ``(B, C, *spatial)``.
    """
    return get_norm_layer(("group", {"num_groups": 1}), spatial_dims, channels)


class SamplingDropout(nn.Dropout):
    """Dropout that stays active in eval mode: the generator's noise at sampling time as well (pix2pix, sec. 2.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, self.p, training=True, inplace=self.inplace)


class GAUNetBlock(nn.Module):
    """One GA-UNet generator block (sec. II-C): residual unit of 3x3 convolutions, then a down- or upscaling layer.

    Residual unit (eq. 7, 8): ``u = LReLU(body(x) + shortcut(x))`` with
    ``body = [conv3x3, BRN, LReLU] x (num_convs - 1) + [conv3x3, BRN]`` and ``shortcut`` a 1x1 convolution.
    Scaling layer: ``"down"``: 3x3 stride-2 convolution, LReLU, batch norm, dropout; ``"up"``: 4x4 stride-2
    transposed convolution, LReLU, batch renormalisation, dropout.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: channels of the unit and of the scaled output.
        scale: ``"down"`` (encoder) or ``"up"`` (decoder).
        num_convs: 3x3 convolutions of the unit (4 in the paper).
        dropout: dropout probability of the scaling layer.
        sampling_dropout: keep the dropout active in eval mode too (pix2pix, paper 002 ref. [12], sec. 2.2: "dropout,
            applied on several layers of our generator at both training and test time").
        negative_slope: leaky ReLU slope (0.01, eq. 8).
        renorm: keyword arguments of every :class:`BatchRenorm` (its clipping schedule).

    Shapes:
        input ``(B, in_channels, *S)``; output ``(u, scaled)`` with ``u`` of shape ``(B, out_channels, *S)`` and
        ``scaled`` of shape ``(B, out_channels, *S / 2)`` (down) or ``(B, out_channels, *2 S)`` (up).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        scale: str,
        num_convs: int = 4,
        dropout: float = 0.5,
        negative_slope: float = 0.01,
        renorm: dict | None = None,
        sampling_dropout: bool = False,
    ) -> None:
        super().__init__()
        if scale not in ("down", "up"):
            raise ValueError(f"scale must be 'down' or 'up', got {scale!r}.")
        if num_convs < 1:
            raise ValueError(f"num_convs must be positive, got {num_convs}.")
        conv = Conv[Conv.CONV, spatial_dims]
        renorm = renorm or {}
        body: list[nn.Module] = []
        for j in range(num_convs):
            body += [conv(in_channels if j == 0 else out_channels, out_channels, 3, padding=1, bias=False)]
            body += [BatchRenorm(out_channels, **renorm)]
            if j < num_convs - 1:
                body.append(_leaky_relu(negative_slope))
        self.body = nn.Sequential(*body)
        self.shortcut = conv(in_channels, out_channels, 1)
        self.act = _leaky_relu(negative_slope)
        if scale == "down":
            resample = conv(out_channels, out_channels, 3, stride=2, padding=1)
            norm: nn.Module = Norm[Norm.BATCH, spatial_dims](out_channels)
        else:
            resample = Conv[Conv.CONVTRANS, spatial_dims](out_channels, out_channels, 4, stride=2, padding=1)
            norm = BatchRenorm(out_channels, **renorm)
        drop = SamplingDropout(dropout) if sampling_dropout else nn.Dropout(dropout)
        self.scale = nn.Sequential(resample, _leaky_relu(negative_slope), norm, drop)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: ``(B, in_channels, *S)``.

        Returns:
            The residual unit's output ``(B, out_channels, *S)`` and its rescaled version.
        """
        u = self.act(self.body(x) + self.shortcut(x))
        return u, self.scale(u)


class GAUNetGenerator(nn.Module):
    """GA-UNet generator ``G(z, x_i)`` (paper 002, sec. II-B, II-C); see the module docstring.

    Layout for ``L = len(channels)`` levels (``L = 4``: the paper's eight blocks):

    - encoder block ``i`` (``i = 0..L-1``): unit at resolution ``S / 2^i`` with ``channels[i]`` channels (its output
      is skip ``i``), downscaled to ``S / 2^(i+1)``;
    - bottleneck ``S / 2^L``: concatenation of the encoder output, ``latent_channels`` maps ``g_l(z)`` (eq. 6) and,
      with ``num_classes``, ``class_channels`` tiled class-embedding maps;
    - decoder block ``i`` (``i = L-1..0``): unit at ``S / 2^(i+1)`` on the bottleneck (``i = L-1``) or on the previous
      decoder output concatenated with skip ``i+1``, with ``channels[i]`` channels, upscaled to ``S / 2^i``;
    - output: the last decoder output concatenated with skip 0, 3x3 convolution to ``out_channels``, ``tanh``.

    Output activation: the U-Net of sec. II-A ends in a sigmoid because it outputs segmentation probabilities; this
    generator outputs images, which this project scales to ``[-1, 1]``, so it ends in ``tanh`` (whose range that is).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the conditioning image ``x_i``.
        out_channels: channels of the generated image (``in_channels`` in GA-UNet's augmentation).
        latent_dim: length of ``z``.
        image_size: spatial size of ``x_i``, an int or one per dimension, divisible by ``2^len(channels)``
            (the paper's images are 256x256).
        channels: channels of each level, finest first (``(64, 128, 256, 512)``: eight blocks).
        latent_channels: feature maps the latent is projected to at the bottleneck.
        num_classes: number of classes for class conditioning; ``None`` for none.
        class_channels: channels of the tiled class embedding at the bottleneck.
        num_convs: 3x3 convolutions per block (4 in the paper).
        dropout: dropout probability of every scaling layer (the paper gives no rate).
        sampling_dropout: keep that dropout active in eval mode (pix2pix's test-time dropout, paper 002 ref. [12]);
            then two calls with the same ``z`` differ.
        negative_slope: leaky ReLU slope (0.01, eq. 8).
        renorm: keyword arguments of every :class:`BatchRenorm`, e.g. its clipping schedule
            (``warmup_steps``, ``r_ramp_steps``, ``d_ramp_steps``, ``r_max_final``, ``d_max_final``).

    Shapes:
        ``x`` ``(B, in_channels, *image_size)``, ``z`` ``(B, latent_dim)``, ``labels`` ``(B,)`` integers;
        output ``(B, out_channels, *image_size)`` in ``[-1, 1]``. Training mode needs ``B >= 2`` when the
        bottleneck is a single voxel (batch statistics).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        latent_dim: int = 100,
        image_size: int | Sequence[int] = 256,
        channels: Sequence[int] = (64, 128, 256, 512),
        latent_channels: int = 32,
        num_classes: int | None = None,
        class_channels: int = 16,
        num_convs: int = 4,
        dropout: float = 0.5,
        negative_slope: float = 0.01,
        renorm: dict | None = None,
        sampling_dropout: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("channels must name at least one level.")
        self.image_size = ensure_tuple_rep(image_size, spatial_dims)
        factor = 2 ** len(channels)
        if any(s % factor for s in self.image_size):
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**len(channels) = {factor}.")
        self.spatial_dims = spatial_dims
        self.latent_dim = latent_dim
        self.latent_channels = latent_channels
        self.num_classes = num_classes
        self.bottleneck_size = tuple(s // factor for s in self.image_size)
        block_args = {
            "num_convs": num_convs,
            "dropout": dropout,
            "negative_slope": negative_slope,
            "renorm": renorm,
            "sampling_dropout": sampling_dropout,
        }
        self.encoder = nn.ModuleList(
            GAUNetBlock(spatial_dims, c_in, c_out, "down", **block_args)
            for c_in, c_out in zip((in_channels,) + channels[:-1], channels)
        )
        self.latent_projection = nn.Linear(latent_dim, latent_channels * int(np.prod(self.bottleneck_size)))
        bottleneck = channels[-1] + latent_channels
        if num_classes is not None:
            self.class_embedding: nn.Embedding | None = nn.Embedding(num_classes, class_channels)
            bottleneck += class_channels
        else:
            self.class_embedding = None
        decoder_in = (bottleneck,) + tuple(2 * c for c in channels[1:][::-1])
        self.decoder = nn.ModuleList(
            GAUNetBlock(spatial_dims, c_in, c_out, "up", **block_args)
            for c_in, c_out in zip(decoder_in, channels[::-1])
        )
        self.output = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](2 * channels[0], out_channels, 3, padding=1), Act[Act.TANH]()
        )

    def forward(
        self, x: torch.Tensor, z: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Args:
            x: conditioning image ``x_i``, ``(B, in_channels, *image_size)``.
            z: latent ``(B, latent_dim)``; drawn from ``N(0, I)`` (eq. 1) when ``None``.
            labels: class indices ``(B,)``, required exactly when ``num_classes`` is set.

        Returns:
            ``x_g = G(z, x_i)``, ``(B, out_channels, *image_size)`` in ``[-1, 1]``.
        """
        if tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"x must have spatial size {self.image_size}, got shape {tuple(x.shape)}.")
        batch = x.shape[0]
        if z is None:
            z = torch.randn(batch, self.latent_dim, device=x.device, dtype=x.dtype)
        if z.shape != (batch, self.latent_dim):
            raise ValueError(f"z must have shape ({batch}, {self.latent_dim}), got {tuple(z.shape)}.")
        if (labels is None) != (self.class_embedding is None):
            raise ValueError("labels must be given exactly when the generator is class-conditional (num_classes).")
        skips = []
        h = x
        for block in self.encoder:
            skip, h = block(h)
            skips.append(skip)
        parts = [h, self.latent_projection(z).view(batch, self.latent_channels, *self.bottleneck_size)]
        if self.class_embedding is not None:
            embedded = self.class_embedding(labels.long().view(batch))
            parts.append(embedded.view(*embedded.shape, *([1] * self.spatial_dims)).expand(-1, -1, *h.shape[2:]))
        h = torch.cat(parts, dim=1)
        for i, block in enumerate(self.decoder):
            if i > 0:
                h = torch.cat([h, skips[-i]], dim=1)
            h = block(h)[1]
        return self.output(torch.cat([h, skips[0]], dim=1))


class _DenseBlock(nn.Module):
    """DenseNet block (Huang et al. 2017): each layer ``[layer norm, LReLU, conv3x3 -> growth]`` sees the
    concatenation of the block input and all earlier layers' outputs; the block ends with dropout (sec. II-C).

    Shapes: input ``(B, C, *S)``; output ``(B, C + num_layers * growth_rate, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_layers: int,
        growth_rate: int,
        dropout: float,
        negative_slope: float,
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.layers = nn.ModuleList(
            nn.Sequential(layer_norm(spatial_dims, c), _leaky_relu(negative_slope), conv(c, growth_rate, 3, padding=1))
            for c in (in_channels + j * growth_rate for j in range(num_layers))
        )
        self.dropout = nn.Dropout(dropout)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return self.dropout(torch.cat(features, dim=1))


class GAUNetCritic(nn.Module):
    """GA-UNet DenseNet critic ``D(x_i, x)`` (paper 002, sec. II-C, III-B); see the module docstring.

    ``[condition, image]`` (concatenated on channels) -> 3x3 convolution to ``init_channels`` -> ``num_blocks`` x
    [dense block of ``layers_per_block`` convolutions ending in dropout, transition layer: layer norm, LReLU, 1x1
    convolution to ``compression`` of the channels, 2x average pooling] -> layer norm, LReLU, global average pooling
    ``phi`` -> linear to one score (plus ``<embed(c), phi>`` with classes). No batch normalisation anywhere: layer
    normalisation is :func:`layer_norm` (``GroupNorm(1, C)``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of one image; the critic takes ``2 * in_channels``.
        growth_rate: channels added by each dense layer (``k = 64``, sec. III-B).
        num_blocks: dense blocks, each followed by a transition layer (4).
        layers_per_block: convolutions per dense block (4).
        init_channels: channels of the first convolution (``2 * growth_rate`` when ``None``, as DenseNet-BC).
        compression: channel fraction kept by a transition layer (0.5, DenseNet-BC; the paper does not say).
        dropout: dropout probability at the end of each dense block (the paper gives no rate).
        num_classes: number of classes for the projection term; ``None`` for none.
        negative_slope: leaky ReLU slope (0.01, eq. 8).

    Shapes:
        ``image`` and ``condition`` ``(B, in_channels, *S)`` with every size at least ``2^num_blocks``;
        ``labels`` ``(B,)``; output ``(B,)`` scores.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        growth_rate: int = 64,
        num_blocks: int = 4,
        layers_per_block: int = 4,
        init_channels: int | None = None,
        compression: float = 0.5,
        dropout: float = 0.5,
        num_classes: int | None = None,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}.")
        self.in_channels = in_channels
        self.num_blocks = num_blocks
        conv = Conv[Conv.CONV, spatial_dims]
        c = 2 * growth_rate if init_channels is None else init_channels
        self.stem = conv(2 * in_channels, c, 3, padding=1)
        self.dense_blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for _ in range(num_blocks):
            block = _DenseBlock(spatial_dims, c, layers_per_block, growth_rate, dropout, negative_slope)
            c_out = max(1, int(block.out_channels * compression))
            self.dense_blocks.append(block)
            self.transitions.append(
                nn.Sequential(
                    layer_norm(spatial_dims, block.out_channels),
                    _leaky_relu(negative_slope),
                    conv(block.out_channels, c_out, 1),
                    Pool[Pool.AVG, spatial_dims](2),
                )
            )
            c = c_out
        self.head = nn.Sequential(
            layer_norm(spatial_dims, c),
            _leaky_relu(negative_slope),
            Pool[Pool.ADAPTIVEAVG, spatial_dims](1),
            nn.Flatten(1),
        )
        self.score = nn.Linear(c, 1)
        self.class_projection = nn.Embedding(num_classes, c) if num_classes is not None else None
        if self.class_projection is not None:  # Glorot-uniform, as the projection discriminator's embedding
            nn.init.xavier_uniform_(self.class_projection.weight)

    def forward(self, image: torch.Tensor, condition: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            image: ``x_j`` (real, same class as the condition) or ``x_g`` (generated), ``(B, in_channels, *S)``.
            condition: the conditioning image ``x_i``, ``(B, in_channels, *S)``.
            labels: class indices ``(B,)``, required exactly when ``num_classes`` is set.

        Returns:
            Scores ``(B,)`` (higher for pairs judged real).
        """
        if image.shape != condition.shape or image.ndim < 3 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"image and condition must both be (B, {self.in_channels}, *S), got {tuple(image.shape)} and "
                f"{tuple(condition.shape)}."
            )
        if min(image.shape[2:]) < 2**self.num_blocks:
            raise ValueError(f"every spatial size must be at least {2 ** self.num_blocks}, got {tuple(image.shape)}.")
        if (labels is None) != (self.class_projection is None):
            raise ValueError("labels must be given exactly when the critic is class-conditional (num_classes).")
        h = self.stem(torch.cat([condition, image], dim=1))
        for block, transition in zip(self.dense_blocks, self.transitions):
            h = transition(block(h))
        phi = self.head(h)
        score = self.score(phi).squeeze(1)
        if self.class_projection is not None:
            score = score + (self.class_projection(labels.long().view(-1)) * phi).sum(1)
        return score
