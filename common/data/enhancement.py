"""Datalist entries of the downstream segmentation: CDA-GAN information enhancement, its pseudo-label baseline and
synthetic image+mask pairs.

- Information enhancement (Xu et al. 2023, sec. 3.2, Algorithm 3): the difference map ``|x - G_N(x)|`` is an extra
  input channel. :func:`attach_difference_maps` gives each datalist entry the map that
  :class:`common.evaluation.CrossDomainSynthesis` wrote for it (``enhanced_datalist.json``, matched on the image
  file), and MONAI's ``ConcatItemsd(keys=["image", "difference"], name="image")`` concatenates it. The maps' rule is
  the datalist's: ``"train"`` (positives through ``G_N``, zeros for negatives) for training, ``"test"`` (every image
  through ``G_N``) for validation, test and inference, where the class is unknown.
- Pseudo-label baseline (sec. 5.2, Table 3 "Pseudo-label method"): synthetic tumour images ``G_P(x)`` made from real
  negatives ``x`` are added to the training set (:func:`pseudo_label_entries`) and labelled
  ``mean_c |G_P(x) - x| > threshold`` by :class:`common.transforms.DifferencePseudoLabeld`.
- :func:`mix_synthetic_pairs`: adds ``ratio`` times the number of real training entries of synthetic image+mask pairs
  (Vu et al. sec. 3.3, B-SG/MC-SG pipelines).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.utils import atomic_write_json
from monai.data import load_decathlon_datalist

__all__ = ["attach_difference_maps", "mix_synthetic_pairs", "pseudo_label_entries"]

logger = logging.getLogger(__name__)


def _first(image: Any) -> str:
    return str(image[0] if isinstance(image, (list, tuple)) else image)


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, (list, tuple)):
        return [_resolve(v, base) for v in value]
    return str(value if os.path.isabs(str(value)) else base / str(value))


def _key(path: Any) -> str:
    return os.path.realpath(_first(path))


def _read(datalist: str | os.PathLike) -> dict:
    path = Path(datalist)
    if not path.is_file():
        raise FileNotFoundError(f"datalist '{path}' does not exist.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"datalist '{path}' is not valid JSON: {e}") from e


def attach_difference_maps(
    entries: Sequence[Mapping[str, Any]],
    enhanced_datalists: str | os.PathLike | Sequence[str | os.PathLike],
    difference_key: str = "difference",
    rule: str | None = None,
    section: str = "training",
) -> list[dict]:
    """Give each entry the difference map of the same image from CDA-GAN's enhanced datalist(s) (Algorithm 3).

    Args:
        entries: datalist entries with absolute ``image`` paths (e.g. from ``load_decathlon_datalist``).
        enhanced_datalists: one or several ``enhanced_datalist.json`` files written by
            :class:`common.evaluation.CrossDomainSynthesis` (their ``section`` lists the real entries with
            ``difference_key``); relative paths are resolved against each file's folder.
        difference_key: the key of the map.
        rule: the ``difference_rule`` the files must have been written with (``"train"`` or ``"test"``); ``None``
            accepts any. Validation, test and inference use ``"test"``: the ``"train"`` rule reads the class label.
        section: section of the enhanced datalists holding the entries.

    Returns:
        copies of ``entries`` with ``difference_key`` set (absolute path, or list of per-channel paths).

    Raises:
        ValueError: an entry has no map (the missing image files are named), or a file's rule differs from ``rule``.
    """
    files = [enhanced_datalists] if isinstance(enhanced_datalists, (str, os.PathLike)) else list(enhanced_datalists)
    if not files:
        raise ValueError("no enhanced datalist given for the information-enhancement channel.")
    maps: dict[str, Any] = {}
    for file in files:
        data = _read(file)
        written = data.get("difference_rule")
        if rule is not None and written is not None and written != rule:
            raise ValueError(
                f"'{file}' holds difference maps of the '{written}' rule where the '{rule}' rule is needed (CDA-GAN "
                "sec. 3.2: 'train' for training, 'test' for validation/test/inference, where the class is unknown); "
                f"write it with cda_gan's inference.yaml --difference_rule {rule}."
            )
        base = Path(file).resolve().parent
        for item in data.get(section, []):
            if difference_key not in item:
                raise ValueError(f"an entry of '{file}' has no '{difference_key}' key: {item.get('image')}.")
            image = _resolve(item["image"], base)
            maps[_key(image)] = _resolve(item[difference_key], base)
    out, missing = [], []
    for entry in entries:
        found = maps.get(_key(entry["image"]))
        if found is None:
            missing.append(_first(entry["image"]))
            continue
        out.append({**entry, difference_key: found})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"no difference map in {[str(f) for f in files]} for {len(missing)} images: {shown}.")
    return out


def mix_synthetic_pairs(
    entries: Sequence[Mapping[str, Any]],
    synthetic_datalist: str | os.PathLike | None,
    ratio: float = 1.0,
    seed: int = 0,
    required_keys: Sequence[str] = ("label",),
    section: str = "training",
    class_value: int | None = None,
    class_key: str = "class",
    held_out_datalist: str | os.PathLike | None = None,
    held_out_sections: Sequence[str] = ("validation", "test"),
) -> list[dict]:
    """Real entries plus ``round(ratio * len(entries))`` synthetic image+mask pairs drawn without replacement.

    Unlike :func:`common.data.mix_synthetic` (classification: entries need a class, ratio at most 1), entries need a
    mask and ``ratio`` may exceed 1 (Vu et al. add up to 500 generated patients to 20 real ones).

    Args:
        entries: the real training entries.
        synthetic_datalist: a generator's synthetic datalist (``None``: the real entries are returned unchanged).
        ratio: synthetic entries per real entry (Vu et al. add 20-500 generated patients; CDA-GAN sec. 5.5 adds
            20-100 % of its synthetic set, the size of the real one). When larger than the synthetic set, all of it
            is used and a warning is logged.
        seed: seed of the draw.
        required_keys: keys every synthetic entry must have (``label`` for segmentation).
        section: section of the synthetic datalist.
        class_value: keep only synthetic entries of this class (e.g. 1, the tumour images).
        class_key: the class key.
        held_out_datalist: the split datalist; synthetic entries whose ``source`` is an image of its
            ``held_out_sections`` are rejected (a translation of a test image would leak it into training).
        held_out_sections: see ``held_out_datalist``.

    Returns:
        the real entries followed by the drawn synthetic ones (absolute paths, ``synthetic: true``).

    Raises:
        ValueError: synthetic entries lack a required key (the first ones are named), come from held-out images, or
            ``ratio`` is negative.
    """
    real = [dict(e) for e in entries]
    if synthetic_datalist is None or ratio == 0:
        return real
    if ratio < 0:
        raise ValueError(f"synthetic_ratio must be >= 0, got {ratio}.")
    _read(synthetic_datalist)  # clear errors for a missing or malformed file
    synthetic = load_decathlon_datalist(str(synthetic_datalist), True, section)
    bad = [e for e in synthetic if any(k not in e for k in required_keys)]
    if bad:
        shown = ", ".join(_first(e.get("image", "?")) for e in bad[:5])
        raise ValueError(
            f"{len(bad)} entries of the synthetic datalist '{synthetic_datalist}' lack {list(required_keys)} "
            f"(e.g. {shown}): segmentation needs image+mask pairs; use a generator that writes masks."
        )
    if held_out_datalist is not None:
        held = _read(held_out_datalist)
        base = Path(held_out_datalist).resolve().parent
        forbidden = {_key(_resolve(e["image"], base)) for s in held_out_sections for e in held.get(s) or []}
        leaking = [e for e in synthetic if e.get("source") and _key(e["source"]) in forbidden]
        if leaking:
            raise ValueError(
                f"{len(leaking)} entries of '{synthetic_datalist}' were generated from validation/test images (e.g. "
                f"source {_first(leaking[0]['source'])}): that would leak them into training."
            )
    if class_value is not None:
        synthetic = [e for e in synthetic if int(e.get(class_key, -1)) == class_value]
    wanted = int(round(ratio * len(real)))
    if wanted > len(synthetic):
        logger.warning(f"synthetic_ratio {ratio} asks for {wanted} synthetic entries; using all {len(synthetic)}.")
        wanted = len(synthetic)
    chosen = np.random.default_rng(seed).choice(len(synthetic), size=wanted, replace=False)
    return real + [{**synthetic[i], "synthetic": True} for i in sorted(chosen)]


def pseudo_label_entries(
    synthetic_datalist: str | os.PathLike,
    real_datalist: str | os.PathLike,
    output: str | os.PathLike,
    class_value: int = 1,
    source_key: str = "source",
    output_key: str = "source_image",
    class_key: str = "class",
) -> str:
    """Write the pseudo-label set of CDA-GAN sec. 5.2: synthetic tumour images with their source image.

    :class:`common.evaluation.CrossDomainSynthesis` records the first file of each synthetic image's source; this
    finds the full source entry (all channel files) in the real datalist, so that
    :class:`common.transforms.DifferencePseudoLabeld` can threshold ``|synthetic - source|`` into a label.

    Args:
        synthetic_datalist: Algorithm 2's ``synthetic_datalist.json``.
        real_datalist: the real datalist the synthetic set was made from (any section).
        output: the datalist JSON to write (absolute paths, section ``training``), e.g. in the run's output folder.
        class_value: the class of the synthetic images to keep (1: tumour images made from negatives).
        source_key: key of the source file in the synthetic entries.
        output_key: key under which the full source image is written.
        class_key: the class key.

    Returns:
        ``output`` as a string.
    """
    data = _read(synthetic_datalist)
    base = Path(synthetic_datalist).resolve().parent
    real = _read(real_datalist)
    real_base = Path(real_datalist).resolve().parent
    sources = {
        _key(_resolve(e["image"], real_base)): _resolve(e["image"], real_base)
        for section in ("training", "validation", "test")
        for e in real.get(section, [])
    }
    entries, missing = [], []
    for item in data.get("training", []):
        if int(item.get(class_key, -1)) != class_value:
            continue
        if source_key not in item:
            raise ValueError(f"an entry of '{synthetic_datalist}' has no '{source_key}': {item.get('image')}.")
        source = sources.get(os.path.realpath(_resolve(item[source_key], base)))
        if source is None:
            missing.append(str(item[source_key]))
            continue
        entries.append({**item, "image": _resolve(item["image"], base), output_key: source})
    if missing:
        raise ValueError(f"sources of {len(missing)} synthetic images are not in '{real_datalist}': {missing[:5]}.")
    if not entries:
        raise ValueError(f"'{synthetic_datalist}' has no synthetic entry of class {class_value}.")
    atomic_write_json({"description": "CDA-GAN sec. 5.2 pseudo-label set", "training": entries}, output)
    return str(output)
