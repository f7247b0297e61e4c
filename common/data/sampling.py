"""Datalist-level training-set construction for downstream classifiers: class balancing and synthetic mixing.

- :func:`balance_classes`: the traditional sampling baselines of CDA-GAN sec. 4.4 (i) / Table 2 ("O-s"
  oversampling, "U-s" undersampling). Done on the list of entries, before the dataset is built: oversampling draws
  extra copies of the minority classes' entries with replacement until every class has as many entries as the
  largest; undersampling draws, without replacement, as many entries of every class as the smallest has. The
  training set therefore has a known, fixed size and each epoch sees every kept entry once (a weighted sampler
  would make the epoch composition random; both are common, the paper does not say which it used).
- :func:`mix_synthetic`: adds generated images to the real training entries, CDA-GAN sec. 3.2 / Algorithm 2 and
  sec. 5.6 ("20 %, 40 %, 60 % and 80 % of the generated samples were mixed into the real samples"). The number of
  synthetic entries added is ``round(ratio * len(real))``; Algorithm 2 produces one translated image per real
  image, so this equals ``ratio`` times the generated set there. ``paired=True`` is Algorithm 2 itself: only the
  translations whose ``source`` is a real training image are used, so ``X_aug`` holds ``(x, y)`` and
  ``(G(x), 1 - y)`` for the drawn ``x``. The ratio may exceed 1: Han's thesis (paper 003, sec. 4.2.4, Table 2)
  adds 200k generated images to 8,429 real ones (ratio 23.7). Those are 200k distinct images, so entries are drawn
  without replacement whenever the synthetic set holds enough of them (generate at least ``ratio`` times the real
  set to reproduce such a setup); only a smaller set is drawn with replacement, with a warning, as before for
  ratios up to 1.
- :func:`build_training_entries`: the two above applied to a datalist section, as the classification bundle does.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import load_decathlon_datalist

__all__ = ["BALANCE_MODES", "balance_classes", "build_training_entries", "load_synthetic_entries", "mix_synthetic"]

logger = logging.getLogger("common.data")

BALANCE_MODES: tuple[str, ...] = ("none", "oversample", "undersample")
"""Modes of :func:`balance_classes`."""


def _files(image: Any) -> list[str]:
    """The file paths of an entry's image value (a path or a list of paths), normalised to absolute paths."""
    items = image if isinstance(image, (list, tuple)) else [image]
    return [os.path.normpath(os.path.abspath(str(i))) for i in items]


def balance_classes(entries: Sequence[dict], mode: str = "none", seed: int = 0, class_key: str = "class") -> list[dict]:
    """Over- or undersample the entries so that every class has the same number of entries.

    Args:
        entries: datalist entries, each with an integer ``class_key``.
        mode: ``"none"`` (unchanged copy), ``"oversample"`` (minority classes drawn with replacement up to the
            largest class) or ``"undersample"`` (every class drawn without replacement down to the smallest).
        seed: seed of the draws.
        class_key: entry key of the class.

    Returns:
        the new list of entries (original entries first, in their order, then the extra copies when
        oversampling; kept entries in their original order when undersampling).

    Raises:
        ValueError: for an unknown mode or entries without a class.
    """
    mode = str(mode).strip().lower()
    if mode not in BALANCE_MODES:
        raise ValueError(f"Unknown class balancing mode {mode!r}; expected one of {list(BALANCE_MODES)}.")
    entries = list(entries)
    if mode == "none":
        return entries
    missing = [i for i, e in enumerate(entries) if e.get(class_key) is None]
    if missing:
        raise ValueError(f"Class balancing needs {class_key!r} in every entry; entries {missing[:10]} have none.")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        by_class[int(e[class_key])].append(i)
    rng = np.random.default_rng(seed)
    if mode == "oversample":
        target = max(len(v) for v in by_class.values())
        extra = []
        for value in sorted(by_class):
            idx = by_class[value]
            extra += [idx[i] for i in rng.integers(0, len(idx), target - len(idx))]
        result = entries + [dict(entries[i]) for i in extra]
    else:
        target = min(len(v) for v in by_class.values())
        keep = []
        for value in sorted(by_class):
            idx = by_class[value]
            keep += [idx[i] for i in rng.permutation(len(idx))[:target]]
        result = [entries[i] for i in sorted(keep)]
    logger.info(
        "balance_classes (%s): %s -> %s",
        mode,
        dict(sorted(Counter(int(e[class_key]) for e in entries).items())),
        dict(sorted(Counter(int(e[class_key]) for e in result).items())),
    )
    return result


def load_synthetic_entries(synthetic_datalist: str | os.PathLike, section: str = "training") -> list[dict]:
    """Read a generator's synthetic datalist (paths made absolute relative to the JSON file).

    Args:
        synthetic_datalist: path of the JSON file (``SyntheticDatalistWriter`` or ``CrossDomainSynthesis`` output).
        section: its section holding the entries.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the section is missing or empty.
    """
    path = Path(synthetic_datalist).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Synthetic datalist {str(path)!r} not found.")
    with open(path) as f:
        data = json.load(f)
    if not data.get(section):
        raise ValueError(f"Synthetic datalist {str(path)!r} has no entries in section {section!r}.")
    return load_decathlon_datalist(str(path), True, section)


def mix_synthetic(
    real: Sequence[dict],
    synthetic: Sequence[dict],
    ratio: float = 1.0,
    seed: int = 0,
    class_key: str = "class",
    paired: bool = False,
    forbidden_sources: Sequence[str] = (),
    source_name: str = "synthetic datalist",
) -> list[dict]:
    """Add ``round(ratio * len(real))`` synthetic entries, drawn with a seed, to the real entries.

    Args:
        real: real training entries (absolute paths).
        synthetic: synthetic entries (absolute paths), each with an integer ``class_key``.
        ratio: synthetic entries per real entry, any positive number: CDA-GAN sec. 5.6 studies 0.2 to 1.0, Han's
            thesis (003 sec. 4.2.4) adds 200k synthetic images to 8,429 real ones (23.7). Drawn without replacement
            when the usable synthetic entries suffice, with replacement (and a warning) otherwise.
        seed: seed of the draw.
        class_key: entry key of the class; synthetic entries without it are rejected.
        paired: Algorithm 2 of CDA-GAN: keep only synthetic entries whose ``source`` is the image of a real entry
            (the translation of that image), then draw among them.
        forbidden_sources: image files (of validation/test entries) that no synthetic entry may come from: a
            translation of a test image in the training set would leak it.
        source_name: name of the synthetic set in error messages (e.g. its file).

    Returns:
        the real entries followed by the drawn synthetic entries (each with ``"synthetic": True``).

    Raises:
        ValueError: for a ratio that is not a positive finite number, an empty synthetic set, synthetic entries
            without a class, translations of forbidden images, or (paired) no synthetic entry matching the real set.
    """
    ratio = float(ratio)
    if not (math.isfinite(ratio) and ratio > 0.0):
        raise ValueError(
            f"synthetic_ratio must be a positive number of synthetic entries per real entry (e.g. 0.2-1.0 in CDA-GAN "
            f"sec. 5.6, 23.7 for Han's 200k synthetic + 8,429 real images), got {ratio}."
        )
    if not synthetic:
        raise ValueError(f"{source_name}: no synthetic entry to draw {ratio} per real entry from.")
    no_class = [i for i, e in enumerate(synthetic) if e.get(class_key) is None]
    if no_class:
        raise ValueError(
            f"{source_name}: {len(no_class)} synthetic entries have no {class_key!r} label (entries "
            f"{no_class[:10]}); a classifier cannot train on unlabelled images. Export the generator's samples "
            "with their class (e.g. a class-conditional or per-class generator, or CrossDomainSynthesis)."
        )
    forbidden = {os.path.normpath(os.path.abspath(str(s))) for s in forbidden_sources}
    leaking = [i for i, e in enumerate(synthetic) if e.get("source") and _files(e["source"])[0] in forbidden]
    if leaking:
        raise ValueError(
            f"{source_name}: {len(leaking)} synthetic entries were generated from validation/test images (entries "
            f"{leaking[:10]}, e.g. source {synthetic[leaking[0]]['source']!r}); that would leak them into training."
        )
    pool = list(synthetic)
    if paired:
        real_files = {_files(e["image"])[0] for e in real}
        pool = [e for e in pool if e.get("source") and _files(e["source"])[0] in real_files]
        if not pool:
            raise ValueError(
                f"{source_name}: no synthetic entry has a 'source' among the {len(real)} real training images; "
                "paired mode (Algorithm 2) needs the translations of the training images."
            )
    count = int(round(ratio * len(real)))
    rng = np.random.default_rng(seed)
    if count <= len(pool):
        drawn = [pool[i] for i in sorted(rng.permutation(len(pool))[:count])]
    else:
        logger.warning(
            "%s holds %d usable synthetic entries but %d were asked (ratio %.2f of %d real); drawing with "
            "replacement (generate at least %d images to draw each at most once).",
            source_name,
            len(pool),
            count,
            ratio,
            len(real),
            count,
        )
        drawn = [pool[i] for i in rng.integers(0, len(pool), count)]
    mixed = list(real) + [{**e, class_key: int(e[class_key]), "synthetic": True} for e in drawn]
    logger.info("mix_synthetic: %d real + %d synthetic entries (ratio %.2f).", len(real), len(drawn), ratio)
    return mixed


def build_training_entries(
    datalist: str | os.PathLike,
    section: str = "training",
    balance: str = "none",
    synthetic_datalist: str | os.PathLike | None = None,
    synthetic_ratio: float = 1.0,
    paired: bool = False,
    seed: int = 0,
    class_key: str = "class",
    held_out_sections: Sequence[str] = ("validation", "test"),
) -> list[dict]:
    """The training entries of a classifier: real entries, class balancing, then synthetic images.

    Balancing acts on the real entries only (the sampling baselines of CDA-GAN Table 2 use no synthetic data);
    the synthetic count is then ``round(synthetic_ratio * len(real after balancing))``.

    Args:
        datalist: the (split) datalist JSON.
        section: its training section.
        balance: see :func:`balance_classes`.
        synthetic_datalist: a generator's synthetic datalist, or ``None``/``"none"`` for none.
        synthetic_ratio: see :func:`mix_synthetic`.
        paired: see :func:`mix_synthetic`.
        seed: seed of the draws.
        class_key: entry key of the class.
        held_out_sections: sections whose images no synthetic entry may be generated from.

    Returns:
        the list of entries (absolute paths) to build the training dataset from.
    """
    real = load_decathlon_datalist(str(datalist), True, section)
    real = balance_classes(real, balance, seed=seed, class_key=class_key)
    if synthetic_datalist is None or str(synthetic_datalist).strip().lower() in ("", "none", "null", "false"):
        return real
    with open(datalist) as f:
        sections = json.load(f)
    forbidden = []
    for name in held_out_sections:
        if sections.get(name):
            forbidden += [f for e in load_decathlon_datalist(str(datalist), True, name) for f in _files(e["image"])]
    synthetic = load_synthetic_entries(synthetic_datalist)
    return mix_synthetic(
        real,
        synthetic,
        ratio=synthetic_ratio,
        seed=seed,
        class_key=class_key,
        paired=paired,
        forbidden_sources=forbidden,
        source_name=str(synthetic_datalist),
    )
