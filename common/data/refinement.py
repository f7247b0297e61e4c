"""Datalist entries of the refinement bundles (Han's thesis, sec. 4.2.3: MUNIT/SimGAN refine noise-to-image GAN
outputs toward the real images of the same class).

- :func:`synthetic_entries`: the entries of one class of a synthetic datalist (e.g. ``bundles/dcgan_wgan`` or PGGAN
  output), each with its position in the datalist, so that the refined image can keep its source's provenance;
- :func:`refinement_entries`: the two unpaired domains for :class:`common.data.UnpairedDataset`, A = synthetic
  images of one class, B = real images of the same class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from monai.data import load_decathlon_datalist

__all__ = ["REAL_DOMAIN", "SYNTHETIC_DOMAIN", "class_entries", "refinement_entries", "synthetic_entries"]

SYNTHETIC_DOMAIN, REAL_DOMAIN = 1, 0
"""Domain labels of :func:`refinement_entries`: synthetic images are the domain A (1), real ones the domain B (0)."""


def class_entries(entries: Sequence[Mapping], cls: int | None, class_key: str) -> list[dict]:
    """Copies of the entries of class ``cls`` (all entries when ``cls`` is ``None``).

    Args:
        entries: datalist entries.
        cls: the class to keep, or ``None``.
        class_key: the class key (entries without it are dropped unless ``cls`` is ``None``).

    Returns:
        the chosen entries, as new dicts.
    """
    return [dict(e) for e in entries if cls is None or (class_key in e and int(e[class_key]) == int(cls))]


def synthetic_entries(
    synthetic_datalist: str, refine_class: int | None = None, section: str = "training", class_key: str = "class"
) -> list[dict]:
    """Entries (absolute paths) of ``section`` of a synthetic datalist, of class ``refine_class`` (all if ``None``),
    each with its position in the section under ``"index"``.

    Raises:
        FileNotFoundError: when the datalist does not exist.
        ValueError: when no entry has the class.
    """
    if not os.path.isfile(synthetic_datalist):
        raise FileNotFoundError(
            f"synthetic datalist not found: {synthetic_datalist!r}; give the datalist.json written by a generator "
            "bundle's inference (e.g. bundles/dcgan_wgan/eval/synthetic/datalist.json) as synthetic_datalist."
        )
    entries = load_decathlon_datalist(synthetic_datalist, True, section)
    for i, e in enumerate(entries):
        e["index"] = i
    chosen = class_entries(entries, refine_class, class_key)
    if not chosen:
        have = sorted({str(e.get(class_key)) for e in entries})
        raise ValueError(
            f"{synthetic_datalist}: no {section!r} entry of class {refine_class} (classes present: {have}); set "
            "refine_class to one of them, or to null for a datalist without classes."
        )
    return chosen


def refinement_entries(
    synthetic_datalist: str,
    real_datalist: str,
    refine_class: int | None = None,
    synthetic_section: str = "training",
    real_section: str = "training",
    class_key: str = "class",
    domain_key: str = "domain",
) -> list[dict]:
    """Entries of both domains for :class:`common.data.UnpairedDataset`: synthetic ones with ``domain = 1``
    (the "positive" domain A), real ones with ``domain = 0`` (domain B), both of class ``refine_class``.

    Raises:
        ValueError: when either domain has no entry of the class.
    """
    syn = synthetic_entries(synthetic_datalist, refine_class, synthetic_section, class_key)
    real = class_entries(load_decathlon_datalist(real_datalist, True, real_section), refine_class, class_key)
    if not real:
        raise ValueError(f"{real_datalist}: no {real_section!r} entry of class {refine_class} (the real domain B).")
    return [{**e, domain_key: SYNTHETIC_DOMAIN} for e in syn] + [{**e, domain_key: REAL_DOMAIN} for e in real]
