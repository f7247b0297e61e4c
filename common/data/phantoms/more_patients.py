"""More training patients for a phantom set: the upper bound of an experiment whose phantom holds few of them.

A calibrated grid trains on a few phantom patients and tests on many; its upper bound trains on ten times more
patients and is tested on the *same* test patients. Where the grid's phantom only holds the few
(``scripts/experiments/mcgan_detection_calibrated_table5.yaml``: 8 training and 40 test scans),
:func:`add_training_patients` writes a datalist with the set's own sections and more patients in its training
section, drawn from the same phantom generator, seed and difficulty.

Every phantom patient has its own random stream, derived from the set's seed and the patient's index alone
(:func:`common.data.phantoms.base._patient_rngs`), so a set generated with more patients holds the same first
patients (where both classes occur, a patient's class is drawn over the whole set and may differ) and new ones after
them: the added patients are new subjects, drawn as the set's were, and never one of its validation or test
patients.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from common.data.phantoms.base import DATALIST_NAME, SPLIT_NAMES
from common.data.phantoms.prepare import PHANTOM_KINDS, prepare_phantom
from common.data.splits import rewrite_paths
from common.utils import atomic_write_text
from common.utils.errors import UserInputError

__all__ = ["add_training_patients"]

_COUNT_KEYS = {"chest_ct": "num_cases"}  # the other kinds count patients with num_patients
_PATIENT_KEY = "patient"


def _first_file(value: Any) -> str:
    return str(value[0] if isinstance(value, list) else value)


def _check_same_patient(data: dict[str, Any], base: Path, bigger: list[dict[str, Any]], bigger_base: Path) -> None:
    """A training image of the set equals the bigger set's image of the same patient, file and class: the patients
    are drawn from the same streams, so the set was made with these arguments. (A patient's class is drawn over the
    whole set, so with both classes present it may differ in the bigger set; such patients are not compared.)"""
    twins = {(_first_file(e.get("image")), e.get("class")): e for e in bigger}
    for entry in data.get("training", []):
        twin = twins.get((_first_file(entry.get("image")), entry.get("class")))
        if twin is None:
            continue
        file = _first_file(entry["image"])
        if not np.array_equal(
            np.asarray(nib.load(str(base / file)).dataobj),
            np.asarray(nib.load(str(bigger_base / _first_file(twin["image"]))).dataobj),
        ):
            raise UserInputError(
                f"{base / file}: not the image that the same phantom arguments give for patient "
                f"{entry.get(_PATIENT_KEY)!r}; pass the arguments the set was generated with."
            )
        return
    raise UserInputError(
        f"{base}: no training image of the set has a twin of the same patient and class in the bigger phantom; "
        "pass the arguments the set was generated with."
    )


def add_training_patients(
    datalist: str | os.PathLike, output_dir: str | os.PathLike, kind: str, extra_patients: int, **phantom_args: Any
) -> str:
    """Write ``<output_dir>/datalist.json``: the phantom set ``datalist`` with ``extra_patients`` more training patients.

    The bigger set is generated once in ``<output_dir>/phantom`` (:func:`~common.data.phantoms.prepare_phantom`) with
    ``phantom_args`` (those the set was made with: its seed, size and difficulty), the patient count raised by
    ``extra_patients`` and every patient in training; its patients that the set does not hold are appended to the
    set's training section. The set's own entries, its validation and test sections and its header are kept (the
    file paths made absolute, so that the new datalist may live anywhere); the header records the addition under
    ``"added_training_patients"``. Nothing is regenerated when the output exists.

    Args:
        datalist: the phantom set's datalist JSON (written by :func:`~common.data.phantoms.prepare_phantom`).
        output_dir: folder of the new datalist and of the bigger phantom set.
        kind: the set's phantom kind (a key of :data:`~common.data.phantoms.PHANTOM_KINDS`).
        extra_patients: how many training patients to add (e.g. 72 to go from 8 to 80).
        phantom_args: the keyword arguments the set was generated with; ``num_patients`` (``num_cases`` for
            ``chest_ct``) must be the set's.

    Returns:
        the path of the new datalist, as a string.

    Raises:
        UserInputError: the datalist is missing or not the phantom set that ``phantom_args`` describe (its patient
            count, or a training image against the bigger set's image of the same patient and class).
        ValueError: an unknown ``kind`` or ``extra_patients < 1``.
    """
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"Unknown phantom kind {kind!r}; expected one of {sorted(PHANTOM_KINDS)}.")
    if int(extra_patients) < 1:
        raise ValueError(f"extra_patients must be at least 1, got {extra_patients!r}.")
    source = Path(datalist).expanduser().absolute()
    output = Path(output_dir).expanduser().absolute() / DATALIST_NAME
    if output.is_file():
        return str(output)
    if not source.is_file():
        raise UserInputError(f"{source}: missing; add_training_patients needs the phantom set's datalist.")
    data = json.loads(source.read_text(encoding="utf-8"))
    count_key = _COUNT_KEYS.get(kind, "num_patients")
    recorded = data.get("parameters", {})
    if count_key not in phantom_args or recorded.get(count_key) != phantom_args[count_key]:
        raise UserInputError(
            f"{source}: records {count_key}={recorded.get(count_key)!r}, but phantom_args give "
            f"{phantom_args.get(count_key)!r}; pass the arguments the set was generated with."
        )
    args = {**phantom_args, count_key: int(phantom_args[count_key]) + int(extra_patients)}
    args["split_fractions"] = [1.0, 0.0, 0.0]
    bigger = Path(str(prepare_phantom(output.parent / "phantom", kind, **args)))
    extra = json.loads(bigger.read_text(encoding="utf-8"))["training"]
    own_patients = {e.get(_PATIENT_KEY) for s in SPLIT_NAMES for e in data.get(s, [])}
    if None in own_patients:
        raise UserInputError(f"{source}: entries without '{_PATIENT_KEY}'; it is not a phantom set.")
    _check_same_patient(data, source.parent, extra, bigger.parent)
    added = [e for e in extra if e.get(_PATIENT_KEY) not in own_patients]
    new_patients = {e[_PATIENT_KEY] for e in added}
    if len(new_patients) != int(extra_patients):
        raise UserInputError(
            f"{source}: the phantom of {args[count_key]} patients holds {len(new_patients)} patients that the set "
            f"does not, not {extra_patients}; is {source} a {kind!r} phantom with these arguments?"
        )
    out = {k: v for k, v in data.items() if k not in SPLIT_NAMES}
    out["added_training_patients"] = {
        "count": int(extra_patients),
        "patients": sorted(new_patients),
        "source": str(source),
        "phantom": str(bigger),
    }
    for section in SPLIT_NAMES:
        if section in data:
            out[section] = [rewrite_paths(e, source.parent, output.parent, absolute=True) for e in data[section]]
    out["training"] = out.get("training", []) + [
        rewrite_paths(e, bigger.parent, output.parent, absolute=True) for e in added
    ]
    if "numTraining" in out:
        out["numTraining"] = len(out["training"])
    atomic_write_text(json.dumps(out, indent=1) + "\n", output)
    return str(output)
