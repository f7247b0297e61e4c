"""The ``network_data_format`` of a bundle's ``metadata.json`` derived from its inference config's ``network_def``.

A bundle's metadata describes the network of its default configuration; a variant merged into the configs (e.g. a
3D or smoke-test variant) can change the shapes the network takes and returns.  :func:`describe_network` rewrites
the shape fields of the declared ``network_data_format`` for the network that a (merged) config builds:

- inputs (the ``image`` input): ``num_channels`` and ``spatial_shape`` are read from the resolved constructor
  arguments of ``network_def``, the ids the metadata mirrors: ``latent_size`` for a ``noise`` input,
  ``in_channels`` or ``n_input_channels`` for an image, and ``[image_size] * spatial_dims`` for its spatial shape
  (``image_size`` of ``network_def`` or, failing that, of the config; without either, the declared size of a square
  or cubic input at the new ``spatial_dims``).  A forward pass cannot tell these: a network takes many input sizes,
  and its input channels are a constructor argument, not something its output shows.
- outputs (the ``pred`` output): ``num_channels``, ``spatial_shape`` and ``dtype`` come from a dry forward pass of
  ``network_def`` on the CPU with one random input of the derived input shape, so they are what the network really
  returns, whatever the bundle's ids are called.  A network whose output is not a tensor (the detection bundle's
  boxes) keeps its declared outputs.

Fields that neither source fixes (``type``, ``format``, ``modality``, the input ``dtype``, ``value_range``,
``channel_def``, ...) are kept as declared: ``value_range`` depends on the training data and output activation, which
a forward pass of random weights does not show.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["SHAPE_FIELDS", "describe_network", "network_format_differences", "write_network_data_format"]

#: the fields of an input or output entry that :func:`describe_network` derives.
SHAPE_FIELDS: tuple[str, ...] = ("num_channels", "spatial_shape", "dtype")
_INPUT_CHANNEL_ARGS: tuple[str, ...] = ("in_channels", "n_input_channels")
_NOISE_CHANNEL_ARGS: tuple[str, ...] = ("latent_size",)


def _network_args(parser: Any, net_id: str) -> tuple[str, dict[str, Any]]:
    """The id of the dict that defines ``net_id`` (following ``@id`` aliases) and its raw arguments."""
    raw = parser.get(net_id)
    seen = {net_id}
    while isinstance(raw, str) and raw.startswith("@") and raw[1:] not in seen:
        net_id = raw[1:]
        seen.add(net_id)
        raw = parser.get(net_id)
    if not isinstance(raw, dict):
        raise ValueError(f"'{net_id}' is not a component definition (a dict with _target_), got {raw!r}.")
    return net_id, raw


def _argument(parser: Any, def_id: str, args: dict[str, Any], names: Sequence[str]) -> Any:
    """The resolved value of the first of ``names`` among the constructor arguments, or None."""
    for name in names:
        if name in args:
            return parser.get_parsed_content(f"{def_id}#{name}")
    return None


def _input_format(parser: Any, def_id: str, args: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    """The ``image`` input entry for the network of ``def_id`` (see the module docstring)."""
    image = dict(declared)
    noise = declared.get("type") == "noise"
    channels = _argument(parser, def_id, args, _NOISE_CHANNEL_ARGS if noise else _INPUT_CHANNEL_ARGS)
    if channels is not None:
        image["num_channels"] = int(channels)
    if noise or not declared.get("spatial_shape"):
        return image
    spatial_dims = _argument(parser, def_id, args, ("spatial_dims",))
    rank = int(spatial_dims) if spatial_dims is not None else len(declared["spatial_shape"])
    size = _argument(parser, def_id, args, ("image_size",))
    if size is None and "image_size" in parser:
        size = parser.get_parsed_content("image_size")
    if size is None:
        sizes = set(declared["spatial_shape"])
        if len(sizes) != 1:
            return image  # a declared non-square shape at an unknown rank: kept
        size = sizes.pop()
    image["spatial_shape"] = [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size)] * rank
    return image


def _output_format(output: Any, declared: dict[str, Any]) -> dict[str, Any]:
    """The ``pred`` output entry for a forward pass result ``output`` (a tensor ``(1, C, *spatial)`` or ``(1, C)``)."""
    import torch

    pred = dict(declared)
    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        return pred
    pred["num_channels"] = int(output.shape[1])
    if output.ndim > 2:
        pred["spatial_shape"] = [int(s) for s in output.shape[2:]]
    else:  # class scores: the project's metadata writes the number of classes as the shape, or no shape
        pred["spatial_shape"] = [int(output.shape[1])] if declared.get("spatial_shape") else []
    pred["dtype"] = str(output.dtype).replace("torch.", "")
    return pred


def describe_network(
    config_file: str | os.PathLike | Sequence[str | os.PathLike],
    meta_file: str | os.PathLike,
    bundle_root: str | os.PathLike,
    net_id: str = "network_def",
) -> dict[str, Any]:
    """The ``network_data_format`` of ``meta_file`` with its shape fields derived for the network of ``config_file``.

    Args:
        config_file: the inference config, or a list of configs merged in order (the variant files after it).
        meta_file: the bundle's ``configs/metadata.json``, whose ``network_data_format`` is the template.
        bundle_root: the bundle folder (``bundle_root`` of the configs).
        net_id: id of the network definition in the config.

    Returns:
        the ``network_data_format`` dict: ``inputs``/``outputs`` as declared, with ``inputs#image`` ``num_channels``
        and ``spatial_shape`` and ``outputs#pred`` ``num_channels``, ``spatial_shape`` and ``dtype`` derived.

    Raises:
        ValueError: if the metadata has no ``network_data_format`` with an ``image`` input and a ``pred`` output, or
            ``net_id`` is not a component definition.
    """
    import torch
    from monai.bundle import ConfigParser

    files = [str(config_file)] if isinstance(config_file, (str, os.PathLike)) else [str(f) for f in config_file]
    parser = ConfigParser()
    parser.read_config(files)
    parser.read_meta(str(meta_file))
    parser["bundle_root"] = str(bundle_root)
    declared = copy.deepcopy(parser.get("_meta_#network_data_format"))
    if (
        not isinstance(declared, dict)
        or "image" not in declared.get("inputs", {})
        or "pred" not in declared.get("outputs", {})
    ):
        raise ValueError(f"{meta_file} has no network_data_format with an 'image' input and a 'pred' output.")
    def_id, args = _network_args(parser, net_id)
    image = _input_format(parser, def_id, args, declared["inputs"]["image"])
    net = parser.get_parsed_content(def_id).to("cpu").eval()
    dtype = getattr(torch, str(image.get("dtype", "float32")))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, image["num_channels"], *image.get("spatial_shape", []), generator=generator).to(dtype)
    with torch.no_grad():
        output = net(x)
    declared["inputs"]["image"] = image
    declared["outputs"]["pred"] = _output_format(output, declared["outputs"]["pred"])
    return declared


def network_format_differences(declared: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """``'<inputs|outputs>#<name>#<field>: declared X, network Y'`` for each shape field in which two formats differ."""
    differences = []
    for side, name in (("inputs", "image"), ("outputs", "pred")):
        old, new = declared.get(side, {}).get(name, {}), derived.get(side, {}).get(name, {})
        for field in SHAPE_FIELDS:
            if field in new and old.get(field) != new[field]:
                differences.append(f"{side}#{name}#{field}: declared {old.get(field)!r}, network {new[field]!r}")
    return differences


def write_network_data_format(meta_file: str | os.PathLike, network_data_format: dict[str, Any]) -> None:
    """Replace the ``network_data_format`` of a ``metadata.json`` file, keeping its other keys and their order."""
    path = Path(meta_file)
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["network_data_format"] = network_data_format
    path.write_text(json.dumps(metadata, indent=4) + "\n", encoding="utf-8")
