"""ImageNet pre-training of a MONAI ResNet from a local torchvision-layout weights file (Han's thesis sec. 4.2.4 and
Table 2: ResNet-50 "with/without ImageNet pre-training").

Nothing is downloaded: the user supplies the file (e.g. torchvision's ``resnet50`` ImageNet state dict saved with
``torch.save(model.state_dict(), path)``), and it is read with ``torch.load(..., weights_only=True)``. MONAI's
ResNet uses torchvision's parameter names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layerN.i.downsample.0/1``);
the backbone must be built with torchvision's stem and shortcuts (``conv1_t_stride=2``, ``bias_downsample=False``,
``shortcut_type="B"``, ``widen_factor=1``) and without its own ``fc`` (``feed_forward=False``). The ImageNet
classifier ``fc.*`` is dropped. The first convolution's three RGB input channels are mapped onto the ``C`` channels of
the images by summing them and dividing by ``C``, so that an image whose ``C`` channels equal a grey image gets the
RGB network's response to that grey image (replicated to R, G and B).
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from common.utils.errors import UserInputError
from common.utils.state_dict import read_state_dict_file

__all__ = ["PretrainedWeightsError", "adapt_input_channels", "load_imagenet_resnet"]

_DROPPED = ("fc.",)


class PretrainedWeightsError(UserInputError, ValueError):
    """The ImageNet weights file is missing, unreadable, or does not fit the network."""


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Maps a first-convolution kernel ``(O, 3, *k)`` of RGB weights onto ``in_channels`` input channels.

    Args:
        weight: the kernel ``(O, I, *k)``.
        in_channels: the number of input channels wanted, ``C``.

    Returns:
        ``weight`` unchanged when ``I == C``, else ``weight.sum(1) / C`` repeated ``C`` times: ``(O, C, *k)``.
    """
    if weight.shape[1] == in_channels:
        return weight
    summed = weight.sum(dim=1, keepdim=True) / in_channels
    return summed.repeat(1, in_channels, *([1] * (weight.ndim - 2))).contiguous()


def _read(weights_path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(weights_path):
        raise PretrainedWeightsError(
            f"ImageNet weights file not found: {weights_path!r}. Give the local path of a torchvision-layout ResNet "
            "state dict as pretrained_weights (e.g. torchvision's resnet50 ImageNet weights saved with "
            "torch.save(model.state_dict(), 'resnet50.pth')); nothing is downloaded. Or set pretrained_weights: null "
            "to train from scratch."
        )
    try:
        return read_state_dict_file(weights_path, _DROPPED, what="ImageNet weights")
    except ValueError as e:
        raise PretrainedWeightsError(str(e)) from e


def load_imagenet_resnet(network: nn.Module, weights_path: str | os.PathLike | None, prefix: str = "") -> nn.Module:
    """Loads ImageNet weights of torchvision's layout into a MONAI ResNet backbone (in place).

    Args:
        network: the backbone, or a module holding it under ``prefix`` (e.g. a
            :class:`common.networks.HeadedClassifier` with ``prefix="backbone."``).
        weights_path: the local weights file; ``None`` (or ``"none"``/``"null"``/``""``) leaves ``network`` as it is.
        prefix: the backbone's name prefix inside ``network``'s state dict.

    Returns:
        ``network``, with every backbone parameter and buffer loaded (the first convolution adapted to the
        backbone's input channels, see :func:`adapt_input_channels`).

    Raises:
        PretrainedWeightsError: when the file is missing or unreadable, or when its keys or shapes do not fit the
            backbone (keys missing on either side, or a shape other than the first convolution's input channels);
            the message names the file and the first offending keys.
    """
    if weights_path is None or str(weights_path).strip().lower() in ("", "none", "null"):
        return network
    path = str(weights_path)
    source = _read(path)
    target = {k[len(prefix) :]: v for k, v in network.state_dict().items() if k.startswith(prefix)}
    if "conv1.weight" in source and "conv1.weight" in target:
        source["conv1.weight"] = adapt_input_channels(source["conv1.weight"], target["conv1.weight"].shape[1])
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    mismatched = sorted(k for k in set(source) & set(target) if source[k].shape != target[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} backbone keys absent from the file (first: {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} file keys the backbone lacks (first: {unexpected[:5]})")
        if mismatched:
            parts.append(
                f"{len(mismatched)} shape mismatches (first: "
                + ", ".join(f"{k} {tuple(source[k].shape)} vs {tuple(target[k].shape)}" for k in mismatched[:3])
                + ")"
            )
        raise PretrainedWeightsError(
            f"{path}: the weights do not fit the network's ResNet backbone: {'; '.join(parts)}. Expected a "
            "torchvision-layout state dict of the same ResNet depth, for a MONAI backbone built with "
            "conv1_t_stride=2, bias_downsample=False, widen_factor=1 and feed_forward=False."
        )
    with torch.no_grad():
        state = network.state_dict()
        for key, value in source.items():
            state[prefix + key].copy_(value.to(state[prefix + key].dtype))
    return network
