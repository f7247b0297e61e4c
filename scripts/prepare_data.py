"""Command line front end of :py:mod:`common.data.converters`: a public release folder in, a datalist out.

Examples::

    # BraTS 2020, 2D axial slices 30-125 (CDA-GAN sec. 4.1: HGG cases, 7:2 train:test with 10 % validation)
    python scripts/prepare_data.py brats MICCAI_BraTS2020_TrainingData data/brats_2d --spatial_dims 2 \\
        --slices 30:126 --grades HGG --split 7:1:2 --num_workers 4
    # BraTS 2023 volumes (T1, T1c, T2, FLAIR) with masks
    python scripts/prepare_data.py brats ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData data/brats_3d
    # Medical Segmentation Decathlon, 60/20/20 (Vu et al.)
    python scripts/prepare_data.py msd Task09_Spleen data/spleen --split 60:20:20
    python scripts/prepare_data.py msd Task01_BrainTumour data/msd_brain --channels T1w,t1gd,T2w,FLAIR
    # KiTS19 (the repository clone; its data/ folder is found)
    python scripts/prepare_data.py kits19 kits19 data/kits_2d --spatial_dims 2 --split 60:20:20
    # LUNA16 nodule boxes (detection / MCGAN contract); or --datalist_json dataset_fold0.json of the model zoo
    python scripts/prepare_data.py luna16 LUNA16 data/luna16 --annotations CSVFILES/annotations.csv --split 7:1:2
    # MedMNIST (GA-UNet sec. III.A): the release's own split; ChestMNIST needs --label_index k or --multi_label
    python scripts/prepare_data.py medmnist pathmnist_128.npz data/pathmnist_128 --num_workers 4
    python scripts/prepare_data.py medmnist chestmnist.npz data/chest_effusion --label_index 2
    # TCIA LGG (CDA-GAN sec. 4.1: FLAIR slices of 110 patients, 20 % test, 10 % validation)
    python scripts/prepare_data.py tcia_lgg lgg-mri-segmentation data/tcia_lgg --split 7:1:2
    # your own images: a CSV of patient,image[,label][,class][,box] (NIfTI, NRRD, MHA or DICOM series folders)
    python scripts/prepare_data.py csv my_data/list.csv data/my_data --box_coordinates world --split 7:1:2

Each command logs a progress counter and the conversion summary (also written to
``OUTPUT_DIR/conversion_summary.json``), writes ``OUTPUT_DIR/datalist.json`` and prints its path. A bundle reads it
with ``--dataset_dir OUTPUT_DIR --phantom_kind none``. A re-run into the same folder reuses the converted cases.
Exit status 1 on a fatal error (unknown layout, unusable output folder, nothing converted), with the reason on
stderr.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import fire
from common.data.converters import ConversionError, LayoutError, convert, medmnist_info

_COMMON_DOC = """
    Args:
        input_dir: the release folder as downloaded and unpacked.
        output_dir: a new or empty folder, or an earlier conversion with the same options (finished cases reused).
        spatial_dims: 3 for volumes, 2 for slices.
        slices: 2D: slice range start:stop, half open (30:126 keeps slices 30-125); all slices when omitted.
        slice_axis: 2D: voxel axis to slice (0, 1, 2); the axial axis of the affine when omitted.
        split: training:validation:test ratios of patients, e.g. 7:1:2 or 60:20:20.
        seed: seed of the patient split.
        num_workers: worker processes (0 converts in this process).
        check_values: validate every voxel of the written files (NaN/Inf), not only their headers.
"""


def _run(source: str, input_dir: str, output_dir: str, **kwargs: Any) -> None:
    summary = convert(source, input_dir, output_dir, **kwargs)  # logs the summary (stderr)
    print(summary["datalist"])


def brats(
    input_dir: str,
    output_dir: str,
    spatial_dims: int = 3,
    slices: str | None = None,
    slice_axis: int | None = None,
    min_tumour_area: int = 1,
    grades: str | Sequence[str] | None = None,
    split: str = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    check_values: bool = False,
    **preprocessing: Any,
) -> None:
    """BraTS 2018-2021 (BraTS20_Training_001/..._{t1,t1ce,t2,flair,seg}.nii.gz) or 2023+ (BraTS-GLI-00000-000/...
    -{t1n,t1c,t2w,t2f,seg}.nii.gz): channels T1, T1c, T2, FLAIR; labels 1 core, 2 oedema, 3 enhancing.

    Args:
        min_tumour_area: tumour pixels (2D) or voxels (3D) for class 1; entries with fewer (but some) are left out.
        grades: keep only these grades, e.g. HGG (from HGG/LGG folders or BraTS 2020's name_mapping.csv).
    """
    _run(
        "brats",
        input_dir,
        output_dir,
        spatial_dims=spatial_dims,
        slices=slices,
        slice_axis=slice_axis,
        min_area=min_tumour_area,
        grades=grades,
        split=split,
        seed=seed,
        num_workers=num_workers,
        check_values=check_values,
        **preprocessing,
    )


def msd(
    input_dir: str,
    output_dir: str,
    spatial_dims: int = 3,
    slices: str | None = None,
    slice_axis: int | None = None,
    min_area: int = 1,
    positive_labels: int | Sequence[int] | None = None,
    channels: str | Sequence[str] | None = None,
    split: str = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    check_values: bool = False,
    **preprocessing: Any,
) -> None:
    """A Medical Segmentation Decathlon task folder (TaskXX_Name/dataset.json, imagesTr/, labelsTr/); 4D images are
    split into one file per channel, labels kept.

    Args:
        min_area: foreground voxels (2D: pixels) for class 1; entries with fewer (but some) are left out.
        positive_labels: label values counted for the class (all > 0 when omitted).
        channels: modality names or indices to keep, in order, e.g. T1w,t1gd,T2w,FLAIR (all when omitted).
    """
    _run(
        "msd",
        input_dir,
        output_dir,
        spatial_dims=spatial_dims,
        slices=slices,
        slice_axis=slice_axis,
        min_area=min_area,
        positive_labels=positive_labels,
        channels=channels,
        split=split,
        seed=seed,
        num_workers=num_workers,
        check_values=check_values,
        **preprocessing,
    )


def kits19(
    input_dir: str,
    output_dir: str,
    spatial_dims: int = 3,
    slices: str | None = None,
    slice_axis: int | None = None,
    min_area: int = 1,
    positive_labels: int | Sequence[int] | None = None,
    split: str = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    check_values: bool = False,
    **preprocessing: Any,
) -> None:
    """KiTS19 (case_00000/imaging.nii.gz, segmentation.nii.gz; the repository's data/ folder is found): one CT
    channel, labels 1 kidney, 2 tumour; test cases without segmentation are listed as skipped.

    Args:
        min_area: foreground voxels (2D: pixels) for class 1; entries with fewer (but some) are left out.
        positive_labels: label values counted for the class, e.g. 2 for tumour only (kidney or tumour when omitted).
    """
    _run(
        "kits19",
        input_dir,
        output_dir,
        spatial_dims=spatial_dims,
        slices=slices,
        slice_axis=slice_axis,
        min_area=min_area,
        positive_labels=positive_labels,
        split=split,
        seed=seed,
        num_workers=num_workers,
        check_values=check_values,
        **preprocessing,
    )


def luna16(
    input_dir: str,
    output_dir: str,
    annotations: str | None = None,
    datalist_json: str | None = None,
    lidc_xml: str | None = None,
    min_readers: int = 3,
    split: str = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    check_values: bool = False,
    **preprocessing: Any,
) -> None:
    """LUNA16 (subset0..9/<seriesuid>.mhd + .raw, annotations.csv with world mm centres and diameters): one CT
    volume per series with nodule boxes in voxel indices, size class small/medium/large (<= 10, <= 20, > 20 mm;
    thesis sec. 6.2.1); series without nodules kept as negatives.

    Args:
        input_dir: the LUNA16 folder as downloaded and unpacked (subset0/ ... subset9/).
        output_dir: a new or empty folder, or an earlier conversion with the same options (finished cases reused).
        annotations: annotations.csv (found in INPUT_DIR or INPUT_DIR/CSVFILES when omitted).
        datalist_json: the model zoo's LUNA16 detection datalist (cccwhd boxes in world mm) instead of annotations.
        lidc_xml: folder of LIDC-IDRI XML reader annotations: nodule attenuation (solid / part-solid / ground-glass)
            from the median reader texture rating.
        min_readers: readers needed for a nodule's attenuation (else unknown).
        split: training:validation:test ratios of patients (series), e.g. 7:1:2.
        seed: seed of the patient split.
        num_workers: worker processes (0 converts in this process).
        check_values: validate every voxel of the written files (NaN/Inf), not only their headers.
    """
    _run(
        "luna16",
        input_dir,
        output_dir,
        annotations=annotations,
        datalist_json=datalist_json,
        lidc_xml=lidc_xml,
        min_readers=min_readers,
        split=split,
        seed=seed,
        num_workers=num_workers,
        check_values=check_values,
        **preprocessing,
    )


def medmnist(
    npz_file: str,
    output_dir: str,
    label_index: int | None = None,
    multi_label: bool = False,
    images_per_case: int = 1000,
    num_workers: int = 0,
    check_values: bool = False,
) -> None:
    """A MedMNIST v2/v3 or MedMNIST+ file (pathmnist.npz, pathmnist_128.npz, nodulemnist3d_64.npz...): one NIfTI
    file per image and channel (grey, or red/green/blue), 2D or 3D as the file holds, with its class; the release's
    train/val/test split is kept and each image is its own patient (MedMNIST has no patient ids).

    Args:
        npz_file: the .npz file as downloaded.
        output_dir: a new or empty folder, or an earlier conversion with the same options (finished blocks reused).
        label_index: multi-label files (ChestMNIST): the finding (0-13) used as binary class.
        multi_label: multi-label files: the label vector under "labels", class = any finding.
        images_per_case: images per case folder (the unit of streaming, resume and workers).
        num_workers: worker processes (0 converts in this process).
        check_values: validate every voxel of the written files (NaN/Inf), not only their headers.
    """
    info = medmnist_info(npz_file)
    _run(
        "medmnist",
        npz_file,
        output_dir,
        spatial_dims=info["spatial_dims"],
        label_index=label_index,
        multi_label=multi_label,
        images_per_case=images_per_case,
        num_workers=num_workers,
        check_values=check_values,
    )


def tcia_lgg(
    input_dir: str,
    output_dir: str,
    spatial_dims: int = 2,
    slices: str | None = None,
    min_tumour_area: int = 1,
    channels: str | Sequence[str] | None = "flair",
    split: str = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    check_values: bool = False,
    **preprocessing: Any,
) -> None:
    """The TCIA LGG segmentation set as published on Kaggle (kaggle_3m/TCGA_CS_4941_19960909/..._1.tif with
    ..._1_mask.tif): one case per patient folder, 2D slices with class = tumour present and the 0/1 mask.

    Args:
        input_dir: the unpacked archive (lgg-mri-segmentation/, kaggle_3m/ or its parent).
        output_dir: a new or empty folder, or an earlier conversion with the same options (finished cases reused).
        spatial_dims: 2 for slices (the release's form), 3 for the stacked slices of each patient as one volume.
        slices: 2D: slice range start:stop, half open, 0-based (slice 0 is file _1.tif); all slices when omitted.
        min_tumour_area: mask pixels for class 1; slices with fewer (but some) are left out.
        channels: planes of the RGB slices to keep, of pre, flair, post (FLAIR only by default, as CDA-GAN).
        split: training:validation:test ratios of patients (7:1:2 is CDA-GAN's).
        seed: seed of the patient split.
        num_workers: worker processes (0 converts in this process).
        check_values: validate every voxel of the written files (NaN/Inf), not only their headers.
    """
    _run(
        "tcia_lgg",
        input_dir,
        output_dir,
        spatial_dims=spatial_dims,
        slices=slices,
        min_area=min_tumour_area,
        channels=channels,
        split=split,
        seed=seed,
        num_workers=num_workers,
        check_values=check_values,
        **preprocessing,
    )


def csv(
    csv_file: str,
    output_dir: str,
    spatial_dims: int = 3,
    slices: str | None = None,
    slice_axis: int | None = None,
    min_area: int = 1,
    box_coordinates: str = "voxel",
    split: str = "7:1:2",
    seed: int = 0,
    num_workers: int = 0,
    check_values: bool = False,
    **preprocessing: Any,
) -> None:
    """Your own images listed in a CSV: columns patient, image (or image_<name> per channel, e.g. image_t1,image_t2),
    optional label (mask), class (integer) and box (JSON list of boxes); paths relative to the CSV's folder, each a
    NIfTI, NRRD or MHA file or a DICOM series folder. Bad rows are listed as skips with their reason.

    Args:
        csv_file: the CSV file.
        min_area: mask voxels (2D: pixels) for class 1 when the class comes from the label.
        box_coordinates: voxel ([x1, y1, z1, x2, y2, z2] voxel indices) or world ([x, y, z, w, h, d] LPS mm centre
            and size, as LUNA16's annotations).
    """
    _run(
        "csv",
        csv_file,
        output_dir,
        spatial_dims=spatial_dims,
        slices=slices,
        slice_axis=slice_axis,
        min_area=min_area,
        box_coordinates=box_coordinates,
        split=split,
        seed=seed,
        num_workers=num_workers,
        check_values=check_values,
        **preprocessing,
    )


for _command in (brats, msd, kits19):
    _command.__doc__ = (_command.__doc__ or "").rstrip() + "\n" + _COMMON_DOC.replace("    Args:\n", "", 1)

_PREPROCESSING: dict[str, tuple[Any, Any, str]] = {
    "n4": (False, bool, "N4 bias-field correction of every channel first (paper 004 sec. 4.4: BraTS20)."),
    "orientation": (None, str | None, "reorient to these axis codes, e.g. RAS."),
    "spacing": (None, str | None, "resample to this voxel spacing in mm, e.g. 1,1,1."),
    "size": (None, str | None, "in-plane size of slices (and of volumes), e.g. 256,256 (papers 002, 004)."),
    "size_mode": ("resize", str, "resize (interpolate) or crop_pad (centre crop / pad with the minimum)."),
    "intensity": (None, str | None, "zscore, percentile:LOW:HIGH, window:LOW:HIGH (CT HU) or range:A:B."),
    "lung_mask": (False, bool, "CT: also write a lung mask per case, under 'lung' in each entry."),
}
"""Preprocessing options (:class:`common.data.preprocessing.VolumePreprocessing`): name -> (default, type, help)."""


def _preprocessing_options(command: Callable[..., None], names: Sequence[str]) -> Callable[..., None]:
    """``command`` with ``names`` of :data:`_PREPROCESSING` as explicit keyword parameters in place of its
    ``**preprocessing`` (listed by ``--help``), refusing any other option with a clear error."""
    signature = inspect.signature(command)
    parameters = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    for name in names:
        default, annotation, _ = _PREPROCESSING[name]
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    known = {p.name for p in parameters}
    # fire calls a command before it reports the flags it could not consume: this catch-all makes fire pass them
    # in, so that the command refuses them before converting anything
    parameters.append(inspect.Parameter("unknown", inspect.Parameter.VAR_KEYWORD))
    new_signature = signature.replace(parameters=parameters)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(
                f"{command.__name__} takes no option {', '.join('--' + u for u in unknown)}; see "
                f"`python scripts/prepare_data.py {command.__name__} --help`."
            )
        command(*args, **kwargs)

    wrapper.__signature__ = new_signature  # type: ignore[attr-defined]
    if names:
        lines = "".join(f"        {name}: {_PREPROCESSING[name][2]}\n" for name in names)
        wrapper.__doc__ = (
            (command.__doc__ or "").rstrip() + "\n\n    Preprocessing (before slicing; off by default):\n" + lines
        )
    return wrapper


_VOLUME_OPTIONS = ("n4", "orientation", "spacing", "size", "size_mode", "intensity")
brats = _preprocessing_options(brats, _VOLUME_OPTIONS)
msd = _preprocessing_options(msd, _VOLUME_OPTIONS)
kits19 = _preprocessing_options(kits19, _VOLUME_OPTIONS)
tcia_lgg = _preprocessing_options(tcia_lgg, _VOLUME_OPTIONS)
luna16 = _preprocessing_options(luna16, ("orientation", "spacing", "size", "size_mode", "intensity", "lung_mask"))
csv = _preprocessing_options(csv, (*_VOLUME_OPTIONS, "lung_mask"))
medmnist = _preprocessing_options(medmnist, ())  # image blocks, not volumes: no preprocessing


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (1 on a fatal conversion error, reported on stderr)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        fire.Fire(
            {
                "brats": brats,
                "msd": msd,
                "kits19": kits19,
                "luna16": luna16,
                "medmnist": medmnist,
                "tcia_lgg": tcia_lgg,
                "csv": csv,
            },
            command=list(argv) if argv is not None else None,
        )
    except (LayoutError, ConversionError, ValueError, FileExistsError) as e:
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
