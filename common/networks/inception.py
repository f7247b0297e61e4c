"""The Inception-v3 of the standard FID (Heusel et al. 2017), returning the 2048 pool3 features; no torchvision.

Papers 004 (sec. 4.3: "The feature representations (2048-length vectors) is computed by feeding the images to an
Inception-v3 network [Szegedy et al.] that was pre-trained on the ImageNet dataset") and 002 (sec. III-A, FID [38] =
Heusel et al. 2017) report FID with the network of the TensorFlow FID code, the graph of
``inception-2015-12-05.tgz``. PyTorch users get it as the ``pt_inception-2015-12-05-6726825d.pth`` state dict of the
Apache-2.0 ``pytorch-fid`` package (its GitHub release ``fid_weights``). Its architecture is Inception-v3 with four
differences from torchvision's ImageNet model, all kept here:

- the 3x3 average pool of the pool branch of every ``Mixed_5*`` (A), ``Mixed_6b-e`` (C) and ``Mixed_7b`` (E)
  block leaves the zero padding out of the average (``count_include_pad=False``, as TensorFlow pools);
- the pool branch of the last block ``Mixed_7c`` max-pools instead of averaging;
- the classifier ``fc`` has 1008 outputs (the 2015 graph's classes); it exists only so that the published state dict
  loads with ``strict=True`` and is not used: the output is the global average pool of ``Mixed_7c`` ("pool3");
- no auxiliary classifier.

Parameter names equal those of the published state dict (torchvision's Inception-v3 naming: ``Conv2d_1a_3x3.conv``,
``Conv2d_1a_3x3.bn``, ``Mixed_5b.branch1x1.conv``, ..., ``fc``), so
``FIDInceptionV3().load_state_dict(torch.load(path, weights_only=True), strict=True)`` loads it.

Input convention (pytorch-fid's): images ``(B, C, H, W)`` with ``C`` 1 (grey, replicated to the 3 colour channels)
or 3 (RGB), intensities in ``[0, 1]`` (an 8-bit image divided by 255); they are resized to 299x299 bilinearly
(``align_corners=False``) and mapped to ``[-1, 1]`` by ``2 x - 1``, the range the TensorFlow graph expects. The network
is 2D only: the published weights are 2D; :mod:`common.metrics.features` says how volumes are handled.

Checked once outside the test suite (torchvision is not a dependency): with the same random weights (non-trivial
batch-norm statistics) saved by this module, pytorch-fid 0.3.0's ``InceptionV3`` built on torchvision 0.28's
Inception-v3 loaded them with ``strict=True`` (same 566 keys and shapes) and gave bit-identical pool3 features for
1- and 3-channel 64x80 inputs. The published weights file itself was not available offline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FIDInceptionV3", "FID_INCEPTION_FEATURES", "FID_INCEPTION_INPUT_SIZE", "FID_INCEPTION_CLASSES"]

FID_INCEPTION_FEATURES = 2048
"""Length of the pool3 feature vector."""
FID_INCEPTION_INPUT_SIZE = 299
"""Height and width images are resized to."""
FID_INCEPTION_CLASSES = 1008
"""Number of outputs of the (unused) classifier of the 2015 graph."""

_Size = int | Sequence[int]


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, the TensorFlow graph's), ReLU; names ``conv`` and ``bn``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: _Size, stride: int = 1, padding: _Size = 0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool whose border averages cover only the image (TensorFlow's ``SAME`` pooling)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """35x35 block (``Mixed_5b-d``): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1; ``224 + pool_features`` channels."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = _ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_same(x))], 1)


class _BlockB(nn.Module):
    """35x35 -> 17x17 reduction (``Mixed_6a``): 3x3/2 | 1x1-3x3-3x3/2 | max pool/2; ``in_channels + 480``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockC(nn.Module):
    """17x17 block (``Mixed_6b-e``) with factorised 7x7 convolutions (1x7 and 7x1); 768 channels out."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        row, col = {"kernel_size": (1, 7), "padding": (0, 3)}, {"kernel_size": (7, 1), "padding": (3, 0)}
        self.branch1x1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, **row)
        self.branch7x7_3 = _ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = _ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = _ConvBN(c7, 192, **row)
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = conv(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool_same(x))], 1)


class _BlockD(nn.Module):
    """17x17 -> 8x8 reduction (``Mixed_7a``): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2; ``in_channels + 512``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockE(nn.Module):
    """8x8 block (``Mixed_7b``, ``Mixed_7c``) with split 1x3 / 3x1 outputs; 2048 channels out.

    Args:
        in_channels: input channels.
        max_pool: pool branch with a 3x3 max pool (the FID graph's ``Mixed_7c``) instead of the average pool.
    """

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = _ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(s), self.branch3x3_2b(s)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d3 = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_same(x)
        return torch.cat([self.branch1x1(x), b3, d3, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the TensorFlow FID code (graph ``inception-2015-12-05``), returning pool3 features.

    Layers, with the output of each stage for a 299x299 input: ``Conv2d_1a_3x3`` (3x3/2, 32, 149x149),
    ``Conv2d_2a_3x3`` (3x3, 32, 147x147), ``Conv2d_2b_3x3`` (3x3 pad 1, 64), max pool 3x3/2 (73x73),
    ``Conv2d_3b_1x1`` (80), ``Conv2d_4a_3x3`` (3x3, 192, 71x71), max pool 3x3/2 (35x35), ``Mixed_5b-d`` (A blocks:
    256, 288, 288), ``Mixed_6a`` (B: 768, 17x17), ``Mixed_6b-e`` (C blocks, 7x7 channels 128, 160, 160, 192),
    ``Mixed_7a`` (D: 1280, 8x8), ``Mixed_7b`` (E, average-pool branch: 2048), ``Mixed_7c`` (E, max-pool branch: 2048),
    global average pool (pool3). Every convolution is conv (no bias) + batch norm (eps 1e-3) + ReLU. See the module
    docstring for the differences from torchvision's Inception-v3 and the unused 1008-class ``fc``.

    A fresh instance is randomly initialised (PyTorch's default initialisation); FID values are comparable with the
    papers' only after loading the published weights (:func:`common.metrics.build_feature_extractor` with
    ``arch="inception_v3_fid"`` does this and names the file in its results). Call ``eval()``: the batch norms must
    use their running statistics.

    Args:
        resize_input: resize images to 299x299 (bilinear, ``align_corners=False``) when they have another size.
        normalize_input: map intensities from ``[0, 1]`` to ``[-1, 1]`` (``2 x - 1``); ``False`` when the caller
            already gives ``[-1, 1]``.

    Shapes:
        input ``(B, C, H, W)`` with ``C`` 1 (replicated to 3) or 3, ``H, W >= 75`` when ``resize_input`` is False;
        output ``(B, 2048)``.
    """

    def __init__(self, resize_input: bool = True, normalize_input: bool = True) -> None:
        super().__init__()
        self.resize_input = resize_input
        self.normalize_input = normalize_input
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(FID_INCEPTION_FEATURES, FID_INCEPTION_CLASSES)  # layout of the weights file only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Computes the pool3 features.

        Args:
            x: images ``(B, 1 or 3, H, W)`` in ``[0, 1]`` (or ``[-1, 1]`` with ``normalize_input=False``).

        Returns:
            features ``(B, 2048)``.
        """
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1 or 3, H, W), got {tuple(x.shape)}.")
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        size = (FID_INCEPTION_INPUT_SIZE, FID_INCEPTION_INPUT_SIZE)
        if self.resize_input and tuple(x.shape[2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.normalize_input:
            x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
