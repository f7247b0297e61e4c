"""Converters of public data set releases into the project's datalist contract (design document, section 5).

One module per source family, each a reader of the release's exact folder and file names plus a loader of one
case, over one shared engine (:py:mod:`.engine`: streaming, worker processes, atomic per-case output and resume,
patient-level splits, validation of the datalist, summary):

- :py:class:`BraTSConverter` (:py:mod:`.brats`): BraTS 2018-2021 and 2023+;
- :py:class:`MSDConverter` (:py:mod:`.msd`): Medical Segmentation Decathlon tasks (4D images split into channels);
- :py:class:`KiTSConverter` (:py:mod:`.kits`): KiTS19;
- :py:class:`LUNA16Converter` (:py:mod:`.luna16`): LUNA16 (or the model zoo's LUNA16 datalist), nodule boxes;
- :py:class:`MedMNISTConverter` (:py:mod:`.medmnist`): one MedMNIST ``.npz`` file, class labels, the release's split;
- :py:class:`TCIALGGConverter` (:py:mod:`.tcia_lgg`): the TCIA LGG FLAIR segmentation set (Kaggle layout);
- :py:class:`GenericCSVConverter` (:py:mod:`.generic_csv`): any NIfTI/NRRD/MHA files or DICOM series listed in a CSV.

:py:func:`convert` runs one of them by name; ``scripts/prepare_data.py`` is its command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from common.data.converters.brats import BRATS_CHANNELS, BRATS_LABELS, BraTSConverter
from common.data.converters.engine import (
    CASES_DIR,
    DATALIST_NAME,
    SUMMARY_NAME,
    Case,
    CaseError,
    ConversionError,
    LayoutError,
    LoadedCase,
    OutputOptions,
    VolumeConverter,
    format_summary,
    parse_numbers,
    parse_slices,
    parse_split,
    run_conversion,
)
from common.data.converters.generic_csv import GenericCSVConverter
from common.data.converters.kits import KITS_LABELS, KiTSConverter
from common.data.converters.luna16 import LUNA16Converter
from common.data.converters.medmnist import MedMNISTConverter, medmnist_info
from common.data.converters.msd import MSDConverter
from common.data.converters.tcia_lgg import LGG_CHANNELS, TCIALGGConverter
from common.data.preprocessing import VolumePreprocessing

__all__ = [
    "BRATS_CHANNELS",
    "BRATS_LABELS",
    "CASES_DIR",
    "CONVERTERS",
    "DATALIST_NAME",
    "KITS_LABELS",
    "SUMMARY_NAME",
    "BraTSConverter",
    "Case",
    "CaseError",
    "ConversionError",
    "GenericCSVConverter",
    "KiTSConverter",
    "LayoutError",
    "LoadedCase",
    "LUNA16Converter",
    "LGG_CHANNELS",
    "MedMNISTConverter",
    "medmnist_info",
    "TCIALGGConverter",
    "MSDConverter",
    "OutputOptions",
    "VolumeConverter",
    "convert",
    "format_summary",
    "parse_slices",
    "parse_numbers",
    "parse_split",
    "run_conversion",
]

CONVERTERS: dict[str, type[VolumeConverter]] = {"brats": BraTSConverter, "msd": MSDConverter, "kits19": KiTSConverter}
"""Source name -> converter class."""
CONVERTERS["luna16"] = LUNA16Converter
CONVERTERS["medmnist"] = MedMNISTConverter  # the input is the .npz file; spatial_dims must match it (2 or 3)
CONVERTERS["tcia_lgg"] = TCIALGGConverter
CONVERTERS["csv"] = GenericCSVConverter  # the input is the CSV file; paths in it are relative to its folder


def convert(
    source: str,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    spatial_dims: int = 3,
    slices: str | Sequence[int] | None = None,
    slice_axis: int | None = None,
    min_area: int = 1,
    positive_labels: Sequence[int] | int | None = None,
    split: str | Sequence[float] = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    check_values: bool = False,
    n4: bool = False,
    orientation: str | None = None,
    spacing: str | Sequence[float] | None = None,
    size: str | Sequence[int] | None = None,
    size_mode: str = "resize",
    intensity: str | None = None,
    lung_mask: bool = False,
    **converter_args: Any,
) -> dict[str, Any]:
    """Convert a downloaded release of ``source`` (``"brats"``, ``"msd"``, ``"kits19"``) into ``output_dir``.

    Args:
        source: a key of :py:data:`CONVERTERS`.
        input_dir: the release folder as downloaded.
        output_dir: new or empty folder, or an earlier conversion with the same case options (resumed).
        spatial_dims: 3 for volumes, 2 for slices.
        slices: 2D: slice range ``"start:stop"`` (half open, e.g. ``"30:126"`` for slices 30-125).
        slice_axis: 2D: the voxel axis sliced; ``None`` for the axial axis (from the affine).
        min_area: positive voxels (2D: pixels) for class 1; entries with fewer but some are left out.
        positive_labels: label values counted for the class; ``None`` for every value > 0.
        split: training:validation:test ratios of patients, e.g. ``"7:1:2"`` or ``"60:20:20"``.
        seed: seed of the patient split.
        num_workers: worker processes (0: this process).
        progress: show the progress bar / counter.
        check_values: let the datalist validation read every voxel (not only the headers).
        n4: N4 bias-field correction of every channel (paper 004 sec. 4.4 applies it to BraTS20).
        orientation: reorient to these axis codes, e.g. ``"RAS"``.
        spacing: resample to this voxel spacing in mm, e.g. ``"1,1,1"``.
        size: in-plane size of the slices (and of the volumes' two in-plane axes), e.g. ``"256,256"``.
        size_mode: ``"resize"`` (interpolate) or ``"crop_pad"`` (centre crop / pad with each channel's minimum).
        intensity: ``"zscore"``, ``"percentile:LOW:HIGH"``, ``"window:LOW:HIGH"`` or ``"range:A:B"``
            (:func:`common.data.preprocessing.normalize_intensity`).
        lung_mask: CT: also write a lung mask per case (``"lung"`` in each entry).
        converter_args: arguments of the source's converter (e.g. ``grades`` of :py:class:`BraTSConverter`,
            ``channels`` of :py:class:`MSDConverter`).

    Returns:
        the conversion summary (see :py:func:`run_conversion`).
    """
    if source not in CONVERTERS:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(CONVERTERS)}.")
    if isinstance(positive_labels, int):
        positive_labels = (positive_labels,)
    preprocessing = VolumePreprocessing(
        n4=bool(n4),
        orientation=None if orientation in (None, "") else str(orientation),
        spacing=None if spacing in (None, "") else tuple(parse_numbers(spacing, "spacing")),
        size=None if size in (None, "") else tuple(parse_numbers(size, "size")),
        size_mode=str(size_mode),
        lung=bool(lung_mask),
        intensity=None if intensity in (None, "") else str(intensity),
    )
    options = OutputOptions(
        spatial_dims=int(spatial_dims),
        slices=parse_slices(slices),
        slice_axis=None if slice_axis is None else int(slice_axis),
        min_area=int(min_area),
        positive_labels=None if positive_labels is None else tuple(int(v) for v in positive_labels),
        preprocessing=preprocessing,
    )
    converter = CONVERTERS[source](**converter_args)
    return run_conversion(
        converter,
        input_dir,
        output_dir,
        options,
        split=split,
        seed=seed,
        num_workers=num_workers,
        progress=progress,
        check_values=check_values,
    )
