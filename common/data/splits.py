"""Patient-level splits of Decathlon-style datalists: disjointness check, the limited-data subset and the
extremely imbalanced subset of the downstream experiments of CDA-GAN (Xu et al. 2023).

- :func:`check_patient_disjoint`: no patient may appear in two of ``training`` / ``validation`` / ``test``
  (CDA-GAN, sec. 4.1, Table 1: "Datasets are divided by patients rather than the number of slices").
- :func:`subsample_patients`: ``BraTS_s`` of CDA-GAN sec. 4.1, "one-eighth of the training and validation amount
  of the BraTS dataset", with "the testing set consistent with the BraTS dataset". Patients, not slices, are
  drawn, stratified by the patient's class, so the subset stays patient-disjoint from the test set.
- :func:`imbalanced_subset`: the "small dataset with only 70 positive samples and 730 negative samples randomly
  chosen from the BraTS dataset" of CDA-GAN sec. 5.7.
- :func:`make_split_datalist`: reads a datalist JSON, applies one of the modes ``"full"``, ``"small"`` or
  ``"imbalanced"``, checks patient disjointness and writes a new datalist JSON atomically, with file paths
  rewritten so that they still resolve from the new file's folder. Bundle configs call it in ``initialize``.

Every draw is seeded and independent of the order of the sections; entries keep their original order.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.data.validation import DatalistError, DatalistProblem, load_datalist_file
from common.utils import atomic_write_json, sha256_file

__all__ = [
    "BRATS_S_FRACTION",
    "IMBALANCED_NUM_NEGATIVE",
    "IMBALANCED_NUM_POSITIVE",
    "SPLIT_MODES",
    "SPLIT_NAMES",
    "check_patient_disjoint",
    "imbalanced_subset",
    "make_split_datalist",
    "patient_groups",
    "rewrite_paths",
    "split_counts",
    "split_patients",
    "subsample_patients",
]

logger = logging.getLogger("common.data")

BRATS_S_FRACTION: float = 1.0 / 8.0
"""Fraction of the training and validation patients kept in ``BraTS_s`` (CDA-GAN sec. 4.1)."""
IMBALANCED_NUM_POSITIVE: int = 70
"""Positive samples of the extremely imbalanced small set (CDA-GAN sec. 5.7)."""
IMBALANCED_NUM_NEGATIVE: int = 730
"""Negative samples of the extremely imbalanced small set (CDA-GAN sec. 5.7)."""
SPLIT_MODES: tuple[str, ...] = ("full", "small", "imbalanced")
"""Modes of :func:`make_split_datalist`."""
DEFAULT_SECTIONS: tuple[str, ...] = ("training", "validation", "test")
SPLIT_NAMES: tuple[str, ...] = DEFAULT_SECTIONS
"""The sections of a datalist, in order."""


def split_counts(num: int, fractions: Sequence[float]) -> list[int]:
    """Number of patients per split: every split with a positive fraction gets one first, if there are enough.

    Args:
        num: number of patients to distribute.
        fractions: fraction per split.

    Returns:
        one count per split, summing to ``num``.
    """
    active = [i for i, f in enumerate(fractions) if f > 0]
    counts = [0] * len(fractions)
    if num < len(active):  # too few to fill every split: training first, then by decreasing fraction
        order = [0] + sorted((i for i in active if i != 0), key=lambda i: -fractions[i])
        for i in order[:num]:
            counts[i] = 1
        return counts
    for i in active:
        counts[i] = 1
    targets = [max(f * num - c, 0.0) for f, c in zip(fractions, counts)]
    remaining = num - sum(counts)
    total = sum(targets)
    targets = [t * remaining / total for t in targets] if total > 0 else targets
    floors = [int(np.floor(t)) for t in targets]
    left = remaining - sum(floors)
    by_remainder = sorted(range(len(fractions)), key=lambda i: (-(targets[i] - floors[i]), i))
    for i in by_remainder[:left]:
        floors[i] += 1
    return [c + f for c, f in zip(counts, floors)]


def split_patients(
    patients: Sequence[str], classes: Sequence[int] | None, fractions: Sequence[float], rng: np.random.Generator
) -> dict[str, str]:
    """Assign each patient to a split, stratified by patient class.

    Args:
        patients: patient identifiers.
        classes: class of each patient, or None for no stratification.
        fractions: training, validation and test fractions.
        rng: random generator used to shuffle the patients of each class.

    Returns:
        mapping patient identifier -> split name.
    """
    classes = [0] * len(patients) if classes is None else list(classes)
    assignment: dict[str, str] = {}
    for value in sorted(set(classes)):
        group = [p for p, c in zip(patients, classes) if c == value]
        group = [group[i] for i in rng.permutation(len(group))]
        start = 0
        for name, count in zip(SPLIT_NAMES, split_counts(len(group), fractions)):
            assignment.update({p: name for p in group[start : start + count]})
            start += count
    # small sets: stratification may leave a split empty although there are enough patients; fill it from the
    # largest split, taking a patient of the class most represented there
    active = [name for name, f in zip(SPLIT_NAMES, fractions) if f > 0]
    if len(patients) >= len(active):
        for name in active:
            members = {s: [p for p in patients if assignment[p] == s] for s in active}
            if members[name]:
                continue
            donor = max(active, key=lambda s: len(members[s]))
            donor_classes = [c for p, c in zip(patients, classes) if assignment[p] == donor]
            common = max(set(donor_classes), key=lambda c: (donor_classes.count(c), c))
            moved = [p for p, c in zip(patients, classes) if assignment[p] == donor and c == common][-1]
            assignment[moved] = name
    return assignment


def _section_seed(seed: int, section: str) -> np.random.Generator:
    """A generator that depends on ``seed`` and the section name only (not on the order of the sections)."""
    return np.random.default_rng([int(seed), zlib.crc32(section.encode("utf-8"))])


def patient_groups(entries: Sequence[dict], key: str = "patient") -> dict[str, list[int]]:
    """Group the entries of one section by patient.

    Entries without ``key`` are treated as patients of their own (named ``"<entry index>"`` with a leading
    ``#``), so that datalists without patient identifiers can still be subsampled, entry by entry.

    Args:
        entries: the entries of one datalist section.
        key: entry key of the patient identifier.

    Returns:
        mapping patient identifier -> indices of its entries, in order of first appearance.
    """
    groups: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        patient = entry.get(key) if isinstance(entry, dict) else None
        name = f"#{i}" if patient is None else str(patient)
        groups.setdefault(name, []).append(i)
    return groups


def check_patient_disjoint(datalist: dict, sections: Sequence[str] = DEFAULT_SECTIONS, key: str = "patient") -> None:
    """Check that no patient appears in two sections of a datalist.

    Entries without ``key`` are ignored (nothing can be said about them). Missing sections are skipped.

    Args:
        datalist: a loaded Decathlon-style datalist (``{"training": [...], "validation": [...], ...}``).
        sections: the sections that must be pairwise patient-disjoint.
        key: entry key of the patient identifier.

    Raises:
        ValueError: naming every patient found in more than one section, and the sections it was found in.
    """
    where: dict[str, list[str]] = defaultdict(list)
    for section in sections:
        seen = set()
        for entry in datalist.get(section) or []:
            if isinstance(entry, dict) and entry.get(key) is not None:
                patient = str(entry[key])
                if patient not in seen:
                    seen.add(patient)
                    where[patient].append(section)
    shared = {p: s for p, s in where.items() if len(s) > 1}
    if shared:
        lines = [f"  patient {p!r} in {', '.join(s)}" for p, s in sorted(shared.items())]
        raise ValueError(
            f"{len(shared)} patient(s) found in more than one of the sections {list(sections)}; splits must be by "
            "patient:\n" + "\n".join(lines)
        )


def _patient_class(entries: Sequence[dict], indices: Sequence[int], class_key: str | None) -> int | None:
    """Class of a patient: the largest class value of its entries (a patient with any tumour slice is positive),
    ``None`` when its entries carry no class."""
    if class_key is None:
        return None
    values = [entries[i].get(class_key) for i in indices if isinstance(entries[i], dict)]
    values = [int(v) for v in values if v is not None]
    return max(values) if values else None


def _update_counts(datalist: dict) -> None:
    """Keep the optional ``numTraining`` / ``numValidation`` / ``numTest`` header fields consistent."""
    for section, field in (("training", "numTraining"), ("validation", "numValidation"), ("test", "numTest")):
        if field in datalist and isinstance(datalist.get(section), list):
            datalist[field] = len(datalist[section])


def subsample_patients(
    datalist: dict,
    fraction: float = BRATS_S_FRACTION,
    sections: Sequence[str] = ("training", "validation"),
    seed: int = 0,
    key: str = "patient",
    class_key: str | None = "class",
) -> dict:
    """Keep a seeded fraction of the patients of some sections, the other sections unchanged.

    This is the ``BraTS_s`` protocol of CDA-GAN sec. 4.1: one eighth of the training and validation data, the same
    test set. Patients (not entries) are drawn, so every kept patient keeps all its entries. The draw is stratified
    by the patient's class (the largest ``class_key`` value of its entries) when entries have one: of ``n_c``
    patients of class ``c``, ``max(1, round(fraction * n_c))`` are kept, so every class present in a section stays
    present. Patients without a class form one stratum of their own.

    Args:
        datalist: a loaded datalist; it is not modified.
        fraction: fraction of patients to keep, in (0, 1].
        sections: the sections to subsample.
        seed: seed of the draw; the draw of a section depends only on ``seed`` and the section's name.
        key: entry key of the patient identifier (entries without it count as one patient each).
        class_key: entry key of the class used for stratification, ``None`` for no stratification.

    Returns:
        a new datalist with the subsampled sections (entries in their original order) and updated
        ``numTraining``/``numValidation`` fields where present.

    Raises:
        ValueError: when ``fraction`` is not in (0, 1].
    """
    return _select(datalist, _subsample_indices(datalist, fraction, sections, seed, key, class_key))


def _subsample_indices(
    datalist: dict, fraction: float, sections: Sequence[str], seed: int, key: str, class_key: str | None
) -> dict[str, list[int]]:
    """Indices of the entries :func:`subsample_patients` keeps, per subsampled section (same arguments)."""
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    kept_indices: dict[str, list[int]] = {}
    for section in sections:
        entries = datalist.get(section)
        if not entries:
            continue
        groups = patient_groups(entries, key)
        strata: dict[Any, list[str]] = defaultdict(list)
        for patient, indices in groups.items():
            strata[_patient_class(entries, indices, class_key)].append(patient)
        rng = _section_seed(seed, section)
        kept: set[str] = set()
        for value in sorted(strata, key=lambda v: (v is None, v if v is not None else 0)):
            patients = sorted(strata[value])
            count = max(1, int(round(fraction * len(patients))))
            order = rng.permutation(len(patients))
            kept.update(patients[i] for i in order[:count])
        keep = sorted(i for p in kept for i in groups[p])
        kept_indices[section] = keep
        logger.info(
            "subsample_patients: %s keeps %d of %d patients (%d of %d entries).",
            section,
            len(kept),
            len(groups),
            len(keep),
            len(entries),
        )
    return kept_indices


def _select(datalist: dict, indices: dict[str, list[int]]) -> dict:
    """A deep copy of ``datalist`` whose sections named in ``indices`` keep only the entries at those indices."""
    result = copy.deepcopy(datalist)
    for section, keep in indices.items():
        result[section] = [result[section][i] for i in keep]
    _update_counts(result)
    return result


def imbalanced_subset(
    datalist: dict,
    num_positive: int = IMBALANCED_NUM_POSITIVE,
    num_negative: int = IMBALANCED_NUM_NEGATIVE,
    sections: Sequence[str] = ("training",),
    seed: int = 0,
    class_key: str = "class",
    negative_class: int = 0,
    scale_to_available: bool = True,
) -> dict:
    """Draw an extremely imbalanced small set: ``num_positive`` positive and ``num_negative`` negative samples.

    CDA-GAN sec. 5.7: "a small dataset with only 70 positive samples and 730 negative samples randomly chosen from
    the BraTS dataset" (8.75 % positives). Samples (entries) are drawn, as the paper says, from within each named
    section, so patient-disjointness between sections is preserved. Entries of class ``negative_class`` are
    negatives, entries of any other class positives; entries without a class are dropped from the named sections.
    The paper does not say which sections it rebuilt; the default is the training set only (validation and test
    unchanged, so that the scores stay comparable with the full set).

    When a section holds fewer samples than asked (the phantom sets are small), ``scale_to_available`` scales both
    counts down by the same factor, keeping the paper's positive:negative ratio, with at least one sample of each
    kind; otherwise a ``ValueError`` is raised.

    Args:
        datalist: a loaded datalist; it is not modified.
        num_positive: positive samples per section.
        num_negative: negative samples per section.
        sections: the sections to rebuild.
        seed: seed of the draw; the draw of a section depends only on ``seed`` and the section's name.
        class_key: entry key of the class.
        negative_class: class value of the negatives.
        scale_to_available: scale the counts down to what is available (keeping the ratio) instead of failing.

    Returns:
        a new datalist with the rebuilt sections (entries in their original order).

    Raises:
        ValueError: for negative counts, a section without positives or negatives, or (without
            ``scale_to_available``) too few samples.
    """
    indices = _imbalanced_indices(
        datalist, num_positive, num_negative, sections, seed, class_key, negative_class, scale_to_available
    )
    return _select(datalist, indices)


def _imbalanced_indices(
    datalist: dict,
    num_positive: int,
    num_negative: int,
    sections: Sequence[str],
    seed: int,
    class_key: str,
    negative_class: int,
    scale_to_available: bool,
) -> dict[str, list[int]]:
    """Indices of the entries :func:`imbalanced_subset` keeps, per rebuilt section (same arguments)."""
    if num_positive < 1 or num_negative < 1:
        raise ValueError(f"num_positive and num_negative must be >= 1, got {num_positive} and {num_negative}.")
    kept_indices: dict[str, list[int]] = {}
    for section in sections:
        entries = datalist.get(section)
        if not entries:
            continue
        classes = [e.get(class_key) if isinstance(e, dict) else None for e in entries]
        positives = [i for i, c in enumerate(classes) if c is not None and int(c) != negative_class]
        negatives = [i for i, c in enumerate(classes) if c is not None and int(c) == negative_class]
        if not positives or not negatives:
            raise ValueError(
                f"imbalanced_subset: section {section!r} needs positive and negative {class_key!r} entries; found "
                f"{len(positives)} positive and {len(negatives)} negative."
            )
        n_pos, n_neg = int(num_positive), int(num_negative)
        if n_pos > len(positives) or n_neg > len(negatives):
            if not scale_to_available:
                raise ValueError(
                    f"imbalanced_subset: section {section!r} has {len(positives)} positive and {len(negatives)} "
                    f"negative entries; {n_pos} and {n_neg} were asked."
                )
            scale = min(len(positives) / n_pos, len(negatives) / n_neg)
            n_pos = min(len(positives), max(1, int(round(scale * n_pos))))
            n_neg = min(len(negatives), max(1, int(round(scale * n_neg))))
        rng = _section_seed(seed, section)
        chosen = [positives[i] for i in rng.permutation(len(positives))[:n_pos]]
        chosen += [negatives[i] for i in rng.permutation(len(negatives))[:n_neg]]
        kept_indices[section] = sorted(chosen)
        logger.info("imbalanced_subset: %s keeps %d positive and %d negative entries.", section, n_pos, n_neg)
    return kept_indices


def rewrite_paths(value: Any, source_dir: Path, target_dir: Path, absolute: bool) -> Any:
    """Rewrite the relative file paths of an entry value so that they resolve from ``target_dir``.

    A string is taken for a path when it is relative and names an existing file or folder under ``source_dir``;
    lists are rewritten element-wise, dicts value by value; other values are returned unchanged.
    """
    if isinstance(value, list):
        return [rewrite_paths(v, source_dir, target_dir, absolute) for v in value]
    if isinstance(value, dict):
        return {k: rewrite_paths(v, source_dir, target_dir, absolute) for k, v in value.items()}
    if isinstance(value, str) and value and not os.path.isabs(value):
        candidate = source_dir / value
        if candidate.exists():
            resolved = os.path.abspath(candidate)
            return resolved if absolute else os.path.relpath(resolved, target_dir)
    return value


def make_split_datalist(
    datalist: str | os.PathLike,
    output: str | os.PathLike,
    mode: str = "full",
    seed: int = 0,
    absolute_paths: bool = False,
    check_sections: Sequence[str] = DEFAULT_SECTIONS,
    patient_key: str = "patient",
    **kwargs: Any,
) -> str:
    """Read a datalist JSON, apply a split mode, check patient disjointness and write the result atomically.

    Modes:

    - ``"full"``: the datalist unchanged (only its paths rewritten);
    - ``"small"``: ``BraTS_s`` (CDA-GAN sec. 4.1), :func:`subsample_patients` with ``fraction`` 1/8 of the
      training and validation patients, the same test set;
    - ``"imbalanced"``: the extreme-imbalance set of CDA-GAN sec. 5.7, :func:`imbalanced_subset` (70 positive and
      730 negative training samples, scaled down keeping the ratio when fewer are available).

    The new file records the mode, seed, parameters, source, source's SHA-256 and, per section, the indices of the
    source entries kept (``"origin"``) in a ``"split"`` header field; :func:`common.data.validate_datalist` uses
    them to report problems against the user's datalist, entries and paths as written. Relative file paths of the
    entries are rewritten relative to the new file's folder (or made absolute), so that the new datalist can live
    anywhere (e.g. in the run's ``ckpt_dir``).

    Args:
        datalist: path of the source datalist JSON.
        output: path of the datalist JSON to write (parent folders are created).
        mode: one of :data:`SPLIT_MODES` (case-insensitive).
        seed: seed of the draw.
        absolute_paths: write absolute file paths instead of paths relative to ``output``'s folder.
        check_sections: sections that must be pairwise patient-disjoint (checked on the result).
        patient_key: entry key of the patient identifier.
        kwargs: further arguments of :func:`subsample_patients` (``fraction``, ``sections``, ``class_key``) or
            :func:`imbalanced_subset` (``num_positive``, ``num_negative``, ``sections``, ...).

    Returns:
        the path of the written datalist, as a string.

    Raises:
        DatalistError: when ``datalist`` is missing, unreadable or not a JSON object, or when patients are shared
            between sections (both name ``datalist``).
        ValueError: for an unknown mode or bad arguments of the mode.
        TypeError: for arguments the mode does not take.
    """
    source = Path(datalist).expanduser().absolute()
    mode_name = str(mode).strip().lower()
    if mode_name not in SPLIT_MODES:
        raise ValueError(f"Unknown split mode {mode!r}; expected one of {list(SPLIT_MODES)}.")
    data = load_datalist_file(source)
    if mode_name == "full":
        if kwargs:
            raise ValueError(f"Split mode 'full' takes no further arguments, got {sorted(kwargs)}.")
        indices: dict[str, list[int]] = {}
    elif mode_name == "small":
        bound = inspect.signature(subsample_patients).bind(data, seed=seed, key=patient_key, **kwargs)
        bound.apply_defaults()
        indices = _subsample_indices(**bound.arguments)
    else:
        bound = inspect.signature(imbalanced_subset).bind(data, seed=seed, **kwargs)
        bound.apply_defaults()
        indices = _imbalanced_indices(**bound.arguments)
    result = _select(data, indices)
    try:
        check_patient_disjoint(result, sections=check_sections, key=patient_key)
    except ValueError as e:
        raise DatalistError([DatalistProblem(None, None, None, str(source), str(e))], source) from e
    origin = {
        section: indices.get(section, list(range(len(entries))))
        for section, entries in data.items()
        if isinstance(entries, list)
    }
    target = Path(output).expanduser()
    target_dir = target.parent.resolve() if target.parent.exists() else Path(os.path.abspath(target.parent))
    source_dir = source.parent.resolve()
    for section in DEFAULT_SECTIONS:
        if isinstance(result.get(section), list):
            result[section] = [rewrite_paths(e, source_dir, target_dir, absolute_paths) for e in result[section]]
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    result["split"] = {
        "mode": mode_name,
        "seed": int(seed),
        "parameters": params,
        "source": str(source.resolve()),
        "source_sha256": sha256_file(source),
        "origin": origin,
    }
    atomic_write_json(result, target, indent=2)
    logger.info("make_split_datalist: wrote %s (mode %s, seed %d).", target, mode_name, seed)
    return str(target)
