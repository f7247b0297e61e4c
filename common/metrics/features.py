"""Pluggable feature extractors for feature-space generative metrics (FID, KID).

A feature extractor is any :class:`torch.nn.Module` that maps images ``(B, C, H, W)`` or ``(B, C, H, W, D)`` to
features ``(B, F)`` and carries a ``name: str`` attribute. The name is written into every result so that metric
values computed with different extractors (or different preprocessing) are never mistaken for comparable numbers.

:func:`build_feature_extractor` builds one from a MONAI ResNet (``monai.networks.nets.resnet10`` ...
``resnet200`` with ``feed_forward=False``, i.e. returning globally average-pooled features), either from a local
state-dict file (e.g. MedicalNet 3D ResNet weights, or 2D ResNet weights) or, without weights, as a named,
deterministic, randomly initialised fallback; or (``arch="inception_v3_fid"``) from the Inception-v3 of the standard
FID (:class:`common.networks.inception.FIDInceptionV3`) with the published ``pt_inception-2015-12-05`` weights, the
extractor whose FID values are comparable with the papers' (paper 004 sec. 4.3, paper 002 sec. III-A).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.networks.inception import FID_INCEPTION_INPUT_SIZE, FIDInceptionV3
from common.utils import sha256_file
from common.utils.errors import UserInputError
from common.utils.state_dict import read_state_dict_file
from monai.networks import nets
from monai.utils import convert_to_tensor, ensure_tuple_rep

__all__ = [
    "CentralSlices",
    "FeatureExtractor",
    "FeatureWeightsError",
    "INCEPTION_FID_ARCH",
    "INCEPTION_FID_WEIGHTS",
    "build_feature_extractor",
    "extract_features",
    "load_state_dict_file",
    "SUPPORTED_ARCHS",
]

logger = logging.getLogger("common.metrics")

SUPPORTED_ARCHS = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200")
"""Names of the ``monai.networks.nets`` ResNet constructors accepted by :func:`build_feature_extractor`."""

INCEPTION_FID_ARCH = "inception_v3_fid"
"""``arch`` of :func:`build_feature_extractor` selecting the FID Inception-v3 (needs :data:`INCEPTION_FID_WEIGHTS`)."""

INCEPTION_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
"""File name of the published FID Inception-v3 weights (the ``fid_weights`` release of pytorch-fid, Apache-2.0)."""

_INCEPTION_FID_HELP = (
    f"arch '{INCEPTION_FID_ARCH}' needs the FID Inception-v3 weights {INCEPTION_FID_WEIGHTS}, the 'fid_weights' "
    "release asset of the Apache-2.0 pytorch-fid project (https://github.com/mseitzer/pytorch-fid/releases/download/"
    f"fid_weights/{INCEPTION_FID_WEIGHTS}); nothing is downloaded at run time: download it once and give its local "
    "path as the feature weights (e.g. --feature_weights /path/to/" + INCEPTION_FID_WEIGHTS + ")"
)

_HEAD_PREFIXES = ("fc.", "conv_seg.")
_NORMALIZE_MODES = ("minmax", "zscore")


class FeatureWeightsError(UserInputError, ValueError):
    """The feature extractor's weights file is missing, unreadable, or does not fit the chosen extractor."""


class CentralSlices(nn.Module):
    """Applies a 2D backbone to the three orthogonal central slices of volumes and averages their features.

    For a volume ``(B, C, H, W, D)`` the slices are ``x[:, :, H // 2]`` ``(B, C, W, D)``, ``x[:, :, :, W // 2]``
    ``(B, C, H, D)`` and ``x[..., D // 2]`` ``(B, C, H, W)`` (for an even size, the upper of the two middle
    slices); each goes through ``backbone`` on its own (which must accept its size, e.g. by resizing) and the three
    feature vectors are averaged, so the feature size is the backbone's.

    Args:
        backbone: 2D module mapping ``(B, C, h, w)`` to ``(B, F)``.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the backbone features of the three central slices.

        Args:
            x: volumes ``(B, C, H, W, D)``.

        Returns:
            features ``(B, F)``.
        """
        if x.ndim != 5:
            raise ValueError(f"expected volumes (B, C, H, W, D), got {tuple(x.shape)}.")
        h, w, d = (s // 2 for s in x.shape[2:])
        slices = (x[:, :, h], x[:, :, :, w], x[:, :, :, :, d])
        return torch.stack([self.backbone(s.contiguous()) for s in slices], 0).mean(0)


class FeatureExtractor(nn.Module):
    """Wraps a backbone that returns pooled features with resizing, optional intensity normalisation and
    channel adaptation.

    Preprocessing applied by :meth:`forward`, in this order:

    1. resize every image to ``input_size`` with :func:`torch.nn.functional.interpolate`
       (``bilinear`` in 2D, ``trilinear`` in 3D, ``align_corners=False``); skipped when the size already matches
       or ``input_size`` is None (the backbone then takes every size, e.g. :class:`CentralSlices`);
    2. optional per-image intensity normalisation (statistics over all channels and voxels of one image):
       ``"minmax"`` rescales each image to ``[0, 1]``; ``"zscore"`` gives each image zero mean and unit variance;
       ``None`` keeps the raw intensities;
    3. optional fixed standardisation ``(x - mean) / std`` (e.g. the statistics the weights were trained with,
       applied after ``"minmax"``); ``mean`` and ``std`` are a float or one value per backbone input channel;
    4. channel adaptation when the image has ``C`` channels but the backbone expects ``W`` input channels:
       ``C == W``: used as is; ``C == 1``: the channel is replicated ``W`` times; otherwise every image channel is
       replicated ``W`` times and passed separately, and the ``C`` feature vectors are averaged, so the feature
       size ``F`` does not depend on ``C``.

    Args:
        backbone: module mapping ``(B, W, *input_size)`` to ``(B, F)``.
        name: identifies the extractor and its preprocessing; written into every result.
        spatial_dims: number of spatial dimensions of the images, 2 or 3.
        in_channels: number of channels ``C`` of the images that will be passed.
        backbone_in_channels: number of input channels ``W`` of ``backbone``.
        input_size: spatial size the images are resized to, an int (isotropic) or one value per spatial dim;
            None: not resized.
        normalize: per-image intensity normalisation, ``"minmax"``, ``"zscore"`` or ``None``.
        mean: optional value(s) subtracted after ``normalize``.
        std: optional value(s) dividing after subtracting ``mean``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        name: str,
        spatial_dims: int,
        in_channels: int,
        backbone_in_channels: int,
        input_size: int | Sequence[int] | None,
        normalize: str | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if normalize is not None and normalize not in _NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {_NORMALIZE_MODES} or None, got {normalize!r}.")
        self.backbone = backbone
        self.name = name
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.backbone_in_channels = backbone_in_channels
        self.input_size = (
            None if input_size is None else tuple(int(s) for s in ensure_tuple_rep(input_size, spatial_dims))
        )
        self.normalize = normalize
        self.register_buffer("mean", self._channel_stat(mean), persistent=False)
        self.register_buffer("std", self._channel_stat(std), persistent=False)

    def _channel_stat(self, value: float | Sequence[float] | None) -> torch.Tensor | None:
        if value is None:
            return None
        t = torch.as_tensor(value, dtype=torch.float32).flatten()
        if t.numel() not in (1, self.backbone_in_channels):
            raise ValueError(f"mean/std need 1 or {self.backbone_in_channels} values, got {t.numel()}.")
        return t.view(1, -1, *([1] * self.spatial_dims))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resizes and normalises a batch (steps 1-2 of the class docstring).

        Args:
            x: images ``(B, C, *spatial)`` with ``spatial_dims`` spatial dimensions.

        Returns:
            float32 images ``(B, C, *input_size)`` (``(B, C, *spatial)`` when ``input_size`` is None).
        """
        if x.ndim != self.spatial_dims + 2:
            dims = "H, W" if self.spatial_dims == 2 else "H, W, D"
            raise ValueError(f"expected images of shape (B, C, {dims}), got {tuple(x.shape)}.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} image channels, got {x.shape[1]}.")
        x = x.float()
        if self.input_size is not None and tuple(x.shape[2:]) != self.input_size:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            x = F.interpolate(x, size=self.input_size, mode=mode, align_corners=False)
        if self.normalize is not None:
            flat = x.reshape(x.shape[0], -1)
            shape = (-1,) + (1,) * (x.ndim - 1)
            if self.normalize == "minmax":
                lo, hi = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
                x = (x - lo) / (hi - lo).clamp_min(1e-8)
            else:
                mu, sd = flat.mean(1).view(shape), flat.std(1, unbiased=False).view(shape)
                x = (x - mu) / sd.clamp_min(1e-8)
        return x

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Computes the features of a batch of images.

        Args:
            x: images ``(B, C, H, W)`` or ``(B, C, H, W, D)``.

        Returns:
            features ``(B, F)``.
        """
        x = self.preprocess(x)
        c, w = x.shape[1], self.backbone_in_channels
        if c == w:
            return self.backbone(self._standardise(x))
        expand = (-1, w) + (-1,) * self.spatial_dims
        if c == 1:
            return self.backbone(self._standardise(x.expand(*expand)))
        feats = [self.backbone(self._standardise(x[:, i : i + 1].expand(*expand))) for i in range(c)]
        return torch.stack(feats, 0).mean(0)


def load_state_dict_file(weights_path: str, drop_heads: bool = True) -> dict[str, torch.Tensor]:
    """Loads a backbone state dict from a local file with ``torch.load(..., weights_only=True)``.

    The state dict may be wrapped in a dict under ``"state_dict"`` or ``"model"`` (as MedicalNet and most training
    checkpoints store it); a ``"module."`` prefix (from ``DataParallel``) is stripped and classification /
    segmentation heads (``fc.*``, ``conv_seg.*``) are dropped since only pooled features are used.

    Args:
        weights_path: path of the weights file.
        drop_heads: drop the ``fc.*`` and ``conv_seg.*`` entries.

    Returns:
        the cleaned state dict.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file cannot be loaded with ``weights_only=True`` or holds no tensor state dict.
    """
    return read_state_dict_file(weights_path, _HEAD_PREFIXES if drop_heads else (), what="feature extractor weights")


def _infer_resnet_kwargs(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Infers ``conv1_t_size``, ``shortcut_type`` and ``bias_downsample`` of a MONAI ResNet from its weights."""
    kwargs: dict[str, Any] = {}
    conv1 = state_dict.get("conv1.weight")
    if conv1 is not None:
        kwargs["conv1_t_size"] = tuple(conv1.shape[2:])
    keys = list(state_dict)
    if any(".downsample." in k for k in keys):
        kwargs["shortcut_type"] = "B"
        kwargs["bias_downsample"] = any(re.search(r"\.downsample\.0\.bias$", k) for k in keys)
    else:
        kwargs["shortcut_type"] = "A"  # parameter-free shortcut, as in MedicalNet resnet10/18/34
    return kwargs


def _description(
    spatial_dims: int, in_channels: int, backbone_in_channels: int, size: tuple | None, normalize: str | None
) -> str:
    if in_channels == backbone_in_channels:
        channels = f"in_channels {in_channels}"
    elif in_channels == 1:
        channels = f"in_channels 1 replicated to {backbone_in_channels}"
    else:
        channels = f"in_channels {in_channels} each replicated to {backbone_in_channels}, features averaged"
    shown = "as given" if size is None else "x".join(map(str, size))
    return f"[{spatial_dims}d, input {shown}, {channels}, normalize {normalize}]"


def _load_fid_inception(weights_path: str | None) -> tuple[FIDInceptionV3, str]:
    """A :class:`FIDInceptionV3` with the weights of ``weights_path`` and the SHA-256 hex digest of the file.

    The file is read with :func:`load_state_dict_file` (``weights_only=True``; a ``module.`` prefix or a
    ``state_dict``/``model`` wrapper are accepted). Every key of the network must be there with its shape, except the
    unused 1008-class ``fc`` (loaded when present), and no other key may be.

    Raises:
        FeatureWeightsError: without a path, for a missing or unreadable file, or for keys or shapes that do not fit.
    """
    if weights_path is None:
        raise FeatureWeightsError(f"no feature weights given: {_INCEPTION_FID_HELP}.")
    try:
        state_dict = load_state_dict_file(weights_path, drop_heads=False)
    except (FileNotFoundError, ValueError) as e:
        raise FeatureWeightsError(f"{e}. {_INCEPTION_FID_HELP}.") from e
    network = FIDInceptionV3()
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    # optional: the unused classifier and the batch-norm counters (absent from files older than PyTorch 0.4.1)
    missing = sorted(
        k for k in expected if k not in state_dict and not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    )
    unexpected = sorted(k for k in state_dict if k not in expected)
    wrong = sorted(
        f"{k} {tuple(v.shape)} (expected {expected[k]})"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != expected[k]
    )
    if missing or unexpected or wrong:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
            if keys
        ]
        raise FeatureWeightsError(
            f"feature weights {weights_path} do not fit the FID Inception-v3 (pt_inception-2015-12-05 layout): "
            f"{'; '.join(problems)}. {_INCEPTION_FID_HELP}."
        )
    network.load_state_dict(state_dict, strict=False)  # strict but for the optional keys
    return network, sha256_file(weights_path)


def _build_fid_inception_extractor(
    spatial_dims: int,
    in_channels: int,
    weights_path: str | None,
    input_size: int | Sequence[int] | None,
    normalize: str | None,
) -> FeatureExtractor:
    """The FID Inception-v3 extractor of :func:`build_feature_extractor` (``arch="inception_v3_fid"``)."""
    side = FID_INCEPTION_INPUT_SIZE
    size: tuple[int, ...] | None
    if spatial_dims == 2:
        size = tuple(int(s) for s in ensure_tuple_rep(input_size or side, 2))
        if size != (side, side):
            raise ValueError(
                f"the FID Inception-v3 takes {side}x{side} images; input_size must be None or {side}, got {input_size}."
            )
    else:
        size = None if input_size is None else tuple(int(s) for s in ensure_tuple_rep(input_size, 3))
    network, digest = _load_fid_inception(weights_path)
    name = (
        f"Inception-v3 FID pool3 (pt_inception-2015-12-05 layout) from weights {os.path.basename(str(weights_path))} "
        f"sha256:{digest[:12]}"
    )
    backbone: nn.Module = network
    mapping = "[0, 1] mapped to [-1, 1]"
    if spatial_dims == 3:
        backbone = CentralSlices(network)
        name += " on the 3 central orthogonal slices, features averaged (a 3D proxy, not comparable with 2D FID)"
        mapping = f"slices resized to {side}x{side}, {mapping}"
    name = f"{name} {_description(spatial_dims, in_channels, 3, size, normalize)[:-1]}, {mapping}]"
    extractor = FeatureExtractor(
        backbone,
        name=name,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        backbone_in_channels=3,
        input_size=size,
        normalize=normalize,
    )
    extractor.eval()
    extractor.requires_grad_(False)
    logger.info("feature extractor: %s", name)
    return extractor


def build_feature_extractor(
    spatial_dims: int,
    in_channels: int,
    weights_path: str | None = None,
    arch: str = "resnet18",
    input_size: int | Sequence[int] | None = None,
    normalize: str | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    seed: int = 0,
    arch_kwargs: Mapping[str, Any] | None = None,
) -> FeatureExtractor:
    """Builds a feature extractor from a MONAI ResNet (``feed_forward=False``: globally pooled features).

    With ``weights_path``, the weights are read with :func:`load_state_dict_file`. Their number of input channels
    ``W`` and their spatial dimensionality come from ``conv1.weight``; ``conv1_t_size``, ``shortcut_type`` and
    ``bias_downsample`` are inferred from the keys (so MedicalNet 3D and torchvision-layout 2D ResNet weights load
    as they are); ``conv1_t_stride`` defaults to 2 as in those models. Images with ``in_channels`` channels are
    adapted to ``W`` channels as described in :class:`FeatureExtractor` (replication of a single channel, or
    per-channel features averaged). The name is
    ``"<arch> from weights <file name> sha256:<first 12 hex> [<preprocessing>]"``.

    Without ``weights_path``, the same architecture with ``W = in_channels`` is randomly initialised under a local
    RNG fork seeded with ``seed`` (the global RNG state is not touched), so the features are deterministic across
    calls and processes. Its name starts with ``"fallback:random-init-<arch>-<d>d-seed<seed>"`` and states that it
    is not pretrained: such FID/KID values only compare runs that used the same fallback, never values computed
    with ImageNet-Inception features. The fallback stays the default.

    With ``arch="inception_v3_fid"`` (:data:`INCEPTION_FID_ARCH`) the backbone is
    :class:`common.networks.inception.FIDInceptionV3`, the Inception-v3 of the standard FID (Heusel et al. 2017) that
    papers 004 (sec. 4.3) and 002 (sec. III-A) report FID with, loaded from ``weights_path``, which must be the
    published ``pt_inception-2015-12-05-6726825d.pth`` (:data:`INCEPTION_FID_WEIGHTS`) or a state dict of the same
    keys and shapes (its unused ``fc`` may be absent); there is no random-init fallback for it. Preprocessing:

    - 2D: images resized to 299x299 (bilinear, ``align_corners=False``; ``input_size`` must be None or 299), the
      optional ``normalize``, then 1 channel replicated to 3, 3 channels used as RGB, other counts replicated one
      channel at a time with the features averaged (:class:`FeatureExtractor`); intensities are taken to be in
      ``[0, 1]`` and mapped to ``[-1, 1]`` by ``2 x - 1``, pytorch-fid's convention (its images are 8-bit files
      divided by 255). The project's evaluations pass images already scaled to ``[0, 1]``, so ``normalize`` stays
      None there; ``"minmax"`` maps each image's range to ``[0, 1]``. These are the papers' FID features: values are
      comparable with theirs when the images are comparable (same data, same ``[0, 1]`` intensity mapping) and the
      sets have similar sizes (FID is biased by the number of samples);
    - 3D: a volume ``(B, C, H, W, D)`` (resized to ``input_size`` when given, else used as it is) gives the features
      of its three orthogonal central slices (:class:`CentralSlices`), each resized to 299x299, averaged to
      ``(B, 2048)``. This is a 3D proxy, named so in the results: no paper here reports a 3D FID, and it is not
      comparable with 2D FID values.

    ``mean``, ``std``, ``seed`` and ``arch_kwargs`` do not apply to it. Its name is ``"Inception-v3 FID pool3
    (pt_inception-2015-12-05 layout) from weights <file name> sha256:<first 12 hex> ... [<preprocessing>]"``.

    Args:
        spatial_dims: number of spatial dimensions of the images, 2 or 3.
        in_channels: number of channels of the images.
        weights_path: optional local state-dict file for ``arch`` (required for ``"inception_v3_fid"``).
        arch: one of :data:`SUPPORTED_ARCHS` or ``"inception_v3_fid"``.
        input_size: spatial size images are resized to; defaults to 64 in 2D and 32 in 3D (small, for CPU) for the
            ResNets, 299 in 2D and no resizing in 3D for ``"inception_v3_fid"``.
        normalize: per-image intensity normalisation: ``"minmax"`` (to ``[0, 1]``), ``"zscore"`` or ``None``.
        mean: optional fixed value(s) subtracted after ``normalize`` (e.g. the statistics of the weights' training).
        std: optional fixed value(s) dividing after ``mean``.
        seed: seed of the random initialisation of the fallback.
        arch_kwargs: extra keyword arguments of the MONAI ResNet constructor; they override inferred values.

    Returns:
        the extractor in eval mode with frozen parameters; ``extractor(images)`` has shape ``(B, F)``.

    Raises:
        ValueError: for an unknown ``arch``, unusable weights or weights that do not fit ``arch``/``spatial_dims``.
        FileNotFoundError: when ``weights_path`` does not exist (ResNets).
        FeatureWeightsError: for ``"inception_v3_fid"`` without weights, with a missing or unreadable file, or with
            one whose keys or shapes do not fit; the message names the expected file and where to obtain it.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    if arch not in SUPPORTED_ARCHS and arch != INCEPTION_FID_ARCH:
        raise ValueError(f"unknown arch {arch!r}; supported: {SUPPORTED_ARCHS + (INCEPTION_FID_ARCH,)}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}.")
    if arch == INCEPTION_FID_ARCH:
        ignored = [k for k, v in (("mean", mean), ("std", std), ("arch_kwargs", arch_kwargs)) if v is not None]
        if ignored:
            raise ValueError(f"{ignored} do not apply to arch {INCEPTION_FID_ARCH!r} (its input mapping is fixed).")
        return _build_fid_inception_extractor(spatial_dims, in_channels, weights_path, input_size, normalize)
    size = tuple(int(s) for s in ensure_tuple_rep(input_size or (64 if spatial_dims == 2 else 32), spatial_dims))
    factory = getattr(nets, arch)
    kwargs: dict[str, Any] = {"spatial_dims": spatial_dims, "feed_forward": False, "conv1_t_stride": 2}

    if weights_path is not None:
        state_dict = load_state_dict_file(weights_path)
        conv1 = state_dict.get("conv1.weight")
        if conv1 is None or conv1.ndim not in (4, 5):
            raise ValueError(f"{weights_path} has no 'conv1.weight' of a 2D/3D ResNet; is it a {arch} state dict?")
        if conv1.ndim - 2 != spatial_dims:
            raise ValueError(f"{weights_path} holds {conv1.ndim - 2}D weights but spatial_dims={spatial_dims}.")
        backbone_in_channels = int(conv1.shape[1])
        kwargs.update(_infer_resnet_kwargs(state_dict))
        kwargs.update(arch_kwargs or {})
        kwargs["n_input_channels"] = backbone_in_channels
        backbone = factory(pretrained=False, **kwargs)
        try:
            backbone.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            raise ValueError(f"weights {weights_path} do not fit a MONAI {arch} (feed_forward=False): {e}") from e
        name = f"{arch} from weights {os.path.basename(weights_path)} sha256:{sha256_file(weights_path)[:12]}"
    else:
        backbone_in_channels = in_channels
        kwargs.update(arch_kwargs or {})
        kwargs["n_input_channels"] = backbone_in_channels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = factory(pretrained=False, **kwargs)
        name = (
            f"fallback:random-init-{arch}-{spatial_dims}d-seed{seed} "
            "(not pretrained; not comparable with ImageNet-Inception FID)"
        )
    name = f"{name} {_description(spatial_dims, in_channels, backbone_in_channels, size, normalize)}"
    extractor = FeatureExtractor(
        backbone,
        name=name,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        backbone_in_channels=backbone_in_channels,
        input_size=size,
        normalize=normalize,
        mean=mean,
        std=std,
    )
    extractor.eval()
    extractor.requires_grad_(False)
    logger.info("feature extractor: %s", name)
    return extractor


def _iter_batches(data: torch.Tensor | Iterable, image_key: str, batch_size: int) -> Iterable[torch.Tensor]:
    """Yields image tensors of at most ``batch_size`` items from a tensor or an iterable of batches."""
    batches: Iterable = [data] if isinstance(data, torch.Tensor) else data
    for batch in batches:
        if isinstance(batch, Mapping):
            if image_key not in batch:
                raise KeyError(f"batch has no key {image_key!r}; keys: {sorted(map(str, batch))}.")
            batch = batch[image_key]
        elif isinstance(batch, (list, tuple)) and not isinstance(batch, torch.Tensor):
            batch = batch[0]
        images = convert_to_tensor(batch, track_meta=False)
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"cannot read images from a batch of type {type(batch).__name__}.")
        yield from torch.split(images, batch_size)


def extract_features(
    extractor: nn.Module,
    images_or_loader: torch.Tensor | Iterable,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    image_key: str = "image",
    return_images: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Computes the features of all images, in eval mode and without gradients.

    Args:
        extractor: module mapping ``(B, C, *spatial)`` to ``(B, F)``; it is moved to ``device`` and put in eval mode.
        images_or_loader: a tensor ``(N, C, *spatial)``, or an iterable of batches (tensors, dicts holding
            ``image_key`` as a MONAI DataLoader yields, or tuples whose first item holds the images).
        batch_size: largest number of images passed to the extractor at once.
        device: device the features are computed on.
        image_key: key of the images in dict batches.
        return_images: also return the images (on CPU, as read, before any preprocessing).

    Returns:
        float32 features ``(N, F)`` on CPU; with ``return_images``, the tuple ``(features, images (N, C, *spatial))``.

    Raises:
        ValueError: when no images were read.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    extractor = extractor.to(device).eval()
    feats: list[torch.Tensor] = []
    imgs: list[torch.Tensor] = []
    with torch.no_grad():
        for images in _iter_batches(images_or_loader, image_key, batch_size):
            out = extractor(images.to(device))
            feats.append(out.reshape(out.shape[0], -1).float().cpu())
            if return_images:
                imgs.append(images.cpu())
    if not feats:
        raise ValueError("no images to extract features from.")
    features = torch.cat(feats, 0)
    return (features, torch.cat(imgs, 0)) if return_images else features
