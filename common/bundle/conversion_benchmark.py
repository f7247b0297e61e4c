"""Benchmark of the release converters (:py:mod:`common.data.converters`): cases/s, slices/s and peak memory.

Synthetic releases are written into a temporary folder at the public releases' per-case size, with their folder
and file names, data types and geometry (:func:`write_brats_release`: BraTS 2020, 240 x 240 x 155 int16 x 4 and a
uint8 segmentation per case; :func:`write_luna16_release`: LUNA16 ``subset0/<seriesuid>.mhd`` + ``.raw`` of
512 x 512 x N int16 with ``CSVFILES/annotations.csv``; :func:`write_medmnist_release`: a MedMNIST ``.npz``), then
converted by :py:func:`common.data.converters.convert` with each ``num_workers`` in turn (:func:`benchmark_conversion`).
Each conversion runs in a child process of its own (forked, as the converter's workers are; spawned where fork is
unavailable), so that its peak resident memory and that of its workers (``ru_maxrss`` of the process and of its
reaped children) are its own; converting the same release at two case counts shows whether memory grows with the
number of cases. :func:`benchmark_nifti_writer` times :py:func:`common.utils.save_nifti` beside nibabel's own
writer (``nib.save`` of the same image from a C-order copy of the array, what ``save_nifti`` ran before) on the
files a conversion writes.

Speed claims about the converters (README, "Use your own data") come from this benchmark through
``scripts/benchmark.py --workflow conversion``, never from timed tests. The synthetic volumes are noise inside a
head or body outline: they compress somewhat worse than real scans (a synthetic BraTS modality is about 2.5 MB
gzipped, a BraTS 2020 one 1.5-2.5 MB), so the write times are an upper estimate.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from common.data.converters import convert
from common.utils.cpu import cpu_name, cpuinfo_flags
from common.utils.io import nifti_image, save_nifti

__all__ = [
    "BRATS_AFFINE",
    "BRATS_SHAPE",
    "CONVERSIONS",
    "LUNA16_SHAPE",
    "benchmark_conversion",
    "benchmark_nifti_writer",
    "machine_info",
    "measure_conversion",
    "write_brats_release",
    "write_luna16_release",
    "write_medmnist_release",
]

BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
"""Voxels of a BraTS 2018-2021 volume (1 mm, skull-stripped, co-registered)."""
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
"""The BraTS 2020 release's affine: 1 mm voxels, the first two axes flipped."""
LUNA16_SHAPE: tuple[int, int, int] = (512, 512, 200)
"""Voxels ``(x, y, z)`` of a LUNA16 scan: 512 x 512 pixels, about 100-700 slices (200 of 1.25 mm here)."""
LUNA16_SPACING: tuple[float, float, float] = (0.7, 0.7, 1.25)
LUNA16_ORIGIN: tuple[float, float, float] = (-180.0, -180.0, -300.0)
CONVERSIONS: tuple[str, ...] = ("brats_3d", "brats_2d", "luna16", "medmnist")
"""The conversions :func:`benchmark_conversion` runs: source and output kind."""
_FLAGS = ("sse4_2", "avx", "avx2", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "pclmulqdq", "bmi2", "hypervisor")
"""CPU flags reported by :func:`machine_info` (vector units and zlib's CRC/hash helpers; ``hypervisor``: a VM)."""


# ----------------------------------------------------------------------------------------------------------------
# synthetic releases
# ----------------------------------------------------------------------------------------------------------------


def _ellipsoid_distance(shape: Sequence[int], center: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """``shape`` array of the squared normalised distance to ``center`` (1 on the axis-aligned ellipsoid)."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))


def _ellipsoid(shape: Sequence[int], center: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Boolean ``shape`` array, True inside the axis-aligned ellipsoid."""
    return _ellipsoid_distance(shape, center, radii) <= 1.0


def write_brats_release(
    root: str | os.PathLike, num_cases: int, shape: Sequence[int] = BRATS_SHAPE, seed: int = 0
) -> Path:
    """Write a BraTS 2020 training release: ``MICCAI_BraTS2020_TrainingData/BraTS20_Training_XXX/`` with
    ``BraTS20_Training_XXX_{t1,t1ce,t2,flair,seg}.nii.gz``.

    Each modality is int16 noise (64 levels above its own base level) inside a head ellipsoid, zero outside; the
    uint8 segmentation holds a tumour ellipsoid (2 oedema, 4 enhancing rim, 1 core) whose centre and size vary per
    case, so that 2D conversions get slices with and without tumour.

    Args:
        root: folder to write into.
        num_cases: case folders.
        shape: volume shape ``(X, Y, Z)``.
        seed: seed of the noise and the tumours.

    Returns:
        the release folder ``root/MICCAI_BraTS2020_TrainingData``.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    release = Path(root) / "MICCAI_BraTS2020_TrainingData"
    size = np.asarray(shape, dtype=np.float64)
    head = _ellipsoid(shape, size / 2, size * (0.33, 0.42, 0.42))
    inside = int(head.sum())
    for case in range(1, int(num_cases) + 1):
        name = f"BraTS20_Training_{case:03d}"
        folder = release / name
        folder.mkdir(parents=True, exist_ok=True)
        for level, suffix in zip((300, 500, 700, 900), ("t1", "t1ce", "t2", "flair")):
            volume = np.zeros(shape, dtype=np.int16)
            volume[head] = level + rng.integers(0, 64, size=inside, dtype=np.int16)
            nib.save(nib.Nifti1Image(volume, BRATS_AFFINE), str(folder / f"{name}_{suffix}.nii.gz"))
        center = size * (rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.6))
        radii = size * rng.uniform(0.06, 0.12, size=3)
        distance = _ellipsoid_distance(shape, center, radii)
        label = np.zeros(shape, dtype=np.uint8)
        label[distance <= 1.0] = 2
        label[distance <= 0.5] = 4
        label[distance <= 0.25] = 1
        nib.save(nib.Nifti1Image(label, BRATS_AFFINE), str(folder / f"{name}_seg.nii.gz"))
    return release


def _write_mhd(path: Path, volume: np.ndarray) -> None:
    """A MetaImage header and its ``.raw`` int16 data (x fastest), as LUNA16 ships them."""
    raw = path.with_suffix(".raw")
    raw.write_bytes(volume.astype("<i2").tobytes(order="F"))
    header = {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False",
        "CompressedData": "False",
        "TransformMatrix": "1 0 0 0 1 0 0 0 1",
        "Offset": " ".join(str(v) for v in LUNA16_ORIGIN),
        "CenterOfRotation": "0 0 0",
        "AnatomicalOrientation": "RAI",
        "ElementSpacing": " ".join(str(v) for v in LUNA16_SPACING),
        "DimSize": " ".join(str(s) for s in volume.shape),
        "ElementType": "MET_SHORT",
        "ElementDataFile": raw.name,
    }
    path.write_text("".join(f"{key} = {value}\n" for key, value in header.items()))


def write_luna16_release(
    root: str | os.PathLike, num_cases: int, shape: Sequence[int] = LUNA16_SHAPE, seed: int = 0
) -> Path:
    """Write a LUNA16 release: ``subset0/<seriesuid>.mhd`` + ``.raw`` and ``CSVFILES/annotations.csv``.

    Each scan is int16 Hounsfield units with CT-like noise (standard deviation 20 HU): air (-1000) around a body
    ellipse (40 HU) holding two lungs (-850); every scan but the last has one nodule of 6-25 mm in a lung,
    listed in the annotations in world millimetres (LPS; identity direction, origin :data:`LUNA16_ORIGIN`,
    spacing :data:`LUNA16_SPACING`). The last scan is a negative.

    Args:
        root: the release folder to write.
        num_cases: scans.
        shape: scan shape ``(x, y, z)``.
        seed: seed of the noise and the nodules.

    Returns:
        ``root``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    shape = tuple(int(s) for s in shape)
    size = np.asarray(shape[:2], dtype=np.float64)
    plane = np.full(shape[:2], -1000, dtype=np.int16)
    plane[_ellipsoid(shape[:2], size / 2, size * (0.45, 0.35))] = 40
    for side in (0.3, 0.7):
        plane[_ellipsoid(shape[:2], size * (side, 0.5), size * (0.15, 0.25))] = -850
    # a pool of noise slices, cycled with shifts: CT noise everywhere, without drawing every voxel
    noise = rng.normal(0, 20, size=(8, *shape[:2])).astype(np.int16)
    (root / "subset0").mkdir(parents=True, exist_ok=True)
    (root / "CSVFILES").mkdir(parents=True, exist_ok=True)
    rows = []
    for case in range(int(num_cases)):
        uid = f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{seed:04d}{case:08d}"
        volume = np.empty(shape, dtype=np.int16)
        for z in range(shape[2]):
            volume[:, :, z] = plane + np.roll(noise[z % len(noise)], (case + z) % shape[0], axis=0)
        if case < int(num_cases) - 1:
            voxel = np.array([shape[0] * 0.3, shape[1] * 0.5, shape[2] * rng.uniform(0.3, 0.7)])
            diameter = float(rng.uniform(6.0, 25.0))
            radii = np.maximum(diameter / 2 / np.asarray(LUNA16_SPACING), 1.0)
            volume[_ellipsoid(shape, voxel, radii)] = 30
            world = np.asarray(LUNA16_ORIGIN) + voxel * np.asarray(LUNA16_SPACING)
            rows.append([uid, *(round(float(v), 3) for v in world), round(diameter, 3)])
        _write_mhd(root / "subset0" / f"{uid}.mhd", volume)
    with open(root / "CSVFILES" / "annotations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        writer.writerows(rows)
    return root


def write_medmnist_release(
    folder: str | os.PathLike, num_images: int, size: int = 28, flag: str = "pneumoniamnist", seed: int = 0
) -> Path:
    """Write a grey 2D MedMNIST file ``<flag>.npz`` (``<flag>_<size>.npz`` for another size than 28).

    Images are uint8 noise, labels 0/1, split 7:1:2 into ``train``/``val``/``test`` as the release's keys.

    Args:
        folder: folder of the file.
        num_images: images over the three splits.
        size: image size (pixels).
        flag: MedMNIST data set name of a grey 2D set.
        seed: seed of the pixels and labels.

    Returns:
        the ``.npz`` file.
    """
    rng = np.random.default_rng(seed)
    num_images = int(num_images)
    counts = {"train": num_images * 7 // 10, "val": num_images // 10}
    counts["test"] = num_images - counts["train"] - counts["val"]
    arrays = {}
    for split, count in counts.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=(count, 1), dtype=np.uint8)
    path = Path(folder) / (f"{flag}.npz" if int(size) == 28 else f"{flag}_{int(size)}.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


# ----------------------------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """The CPU (model, flags of :data:`_FLAGS` it has), cores, load average and library versions."""
    flags = cpuinfo_flags() or frozenset()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_name(),
        "cpu_flags": [flag for flag in _FLAGS if flag in flags],
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nibabel": nib.__version__,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
    }


def _rss_mb() -> float:
    """Resident memory of this process now (MiB), from ``/proc/self/status``; the peak where that is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_conversion(connection: Any, arguments: dict[str, Any]) -> None:
    """Child process: run one conversion and send its timing and memory (or the error) through ``connection``."""
    try:
        baseline = _rss_mb()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        start, cpu_start = time.perf_counter(), os.times()
        summary = convert(progress=False, **arguments)
        seconds = time.perf_counter() - start
        cpu_end = os.times()
        cpu = sum(cpu_end[:4]) - sum(cpu_start[:4])  # user + system of this process and of its reaped workers
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result = {
            "summary": summary,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "baseline_rss_mb": baseline,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_worker_rss_mb": workers or None,  # 0: no worker ran (no workers, or one case in-process)
            "load_average_before": load,
            "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        }
        connection.send(("ok", result))
    except BaseException as e:  # noqa: B036 - reported to the parent, which raises it
        connection.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        connection.close()


def measure_conversion(
    source: str, input_path: str | os.PathLike, output_dir: str | os.PathLike, num_workers: int, **options: Any
) -> dict[str, Any]:
    """Convert ``input_path`` in a child process of its own and return its speed and memory.

    Args:
        source: a converter name of :py:data:`common.data.converters.CONVERTERS`.
        input_path: the release folder (or file).
        output_dir: a new folder for the conversion.
        num_workers: the conversion's worker processes (0: in the child itself).
        options: further arguments of :py:func:`common.data.converters.convert` (``spatial_dims``, ``slices``...).

    Returns:
        ``num_workers``, ``cases``, ``entries`` (2D: slices; MedMNIST: images), ``files`` and ``output_mb`` written,
        ``seconds`` (wall clock of the whole conversion, datalist validation included), ``cases_per_s``,
        ``entries_per_s``, ``cpu_seconds_per_case`` (user + system of the process and its workers, which other
        processes' load inflates less than the wall clock), ``baseline_rss_mb`` (the child's resident memory
        before the conversion: what a forked worker starts from), ``peak_rss_mb`` (the child's peak),
        ``peak_worker_rss_mb`` (the largest worker's peak; ``None`` without workers) and the machine's 1-minute
        ``load_average_before`` and ``load_average_after``. Memory in MiB.

    Raises:
        RuntimeError: when the conversion fails (with the child's error).
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    arguments = dict(options, source=source, input_dir=os.fspath(input_path), output_dir=os.fspath(output_dir))
    arguments["num_workers"] = int(num_workers)
    process = context.Process(target=_timed_conversion, args=(sender, arguments))
    process.start()
    sender.close()
    try:
        status, result = receiver.recv()
    except EOFError:
        status, result = "error", "the conversion process ended without a result"
    process.join()
    if status != "ok":
        raise RuntimeError(f"{source} conversion of {input_path} failed: {result}")
    summary = result.pop("summary")
    cases = int(summary["cases_converted"])
    entries = sum(summary["num_entries"].values())
    files = list(Path(output_dir).rglob("*.nii*"))
    seconds = result.pop("seconds")
    return {
        "num_workers": int(num_workers),
        "cases": cases,
        "skipped": len(summary["skipped"]),
        "entries": entries,
        "files": len(files),
        "output_mb": round(sum(p.stat().st_size for p in files) / 2**20, 3),
        "seconds": round(seconds, 6),
        "cases_per_s": round(cases / seconds, 3),
        "entries_per_s": round(entries / seconds, 2),
        "cpu_seconds_per_case": round(result.pop("cpu_seconds") / max(cases, 1), 3),
        **{key: value if value is None else round(value, 1) for key, value in result.items()},
    }


def _milliseconds(times: Sequence[float]) -> dict[str, float]:
    """Median and minimum of ``times`` (seconds) in milliseconds; the minimum is the write least disturbed by other
    processes."""
    return {"median": round(1000 * statistics.median(times), 3), "min": round(1000 * min(times), 3)}


def benchmark_nifti_writer(
    folder: str | os.PathLike, repeats: int = 20, shape: Sequence[int] = BRATS_SHAPE
) -> dict[str, Any]:
    """Time :py:func:`common.utils.save_nifti` beside nibabel's ``nib.save`` of the same image, in turns.

    ``nib.save(nifti_image(np.ascontiguousarray(array)))`` is what ``save_nifti`` ran before it kept the array's
    memory order and streamed the gzip data through a buffer; the files are compared byte for byte. Arrays: a
    BraTS-like int16 slice and uint8 mask slice (the files of a 2D conversion) and the int16 volume in Fortran order,
    as nibabel loads it (3D).

    Args:
        folder: where the files are written.
        repeats: writes of each slice per writer (the volume: a tenth, at least 2).
        shape: the volume shape; the slices are ``shape[:2]``.

    Returns:
        per array: ``shape``, ``dtype``, ``bytes`` (the file), milliseconds per file (median and minimum) of
        ``nibabel_save_ms`` and ``save_nifti_ms``, ``speedup`` (ratio of the minima) and ``identical_bytes``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = tuple(int(s) for s in shape)
    size = np.asarray(shape, dtype=np.float64)
    volume = np.zeros(shape, dtype=np.int16, order="F")
    head = _ellipsoid(shape, size / 2, size * (0.33, 0.42, 0.42))
    volume[head] = 500 + rng.integers(0, 64, size=int(head.sum()), dtype=np.int16)
    mask = np.zeros(shape[:2], dtype=np.uint8)
    mask[_ellipsoid(shape[:2], size[:2] / 2, size[:2] * 0.1)] = 2
    cases = {"slice_int16": volume[:, :, shape[2] // 2], "mask_slice_uint8": mask, "volume_int16": volume}
    results: dict[str, Any] = {}
    for name, array in cases.items():
        count = int(repeats) if array.ndim == 2 else max(2, int(repeats) // 10)
        times: dict[str, list[float]] = {"nibabel_save": [], "save_nifti": []}
        for i in range(count):
            for writer in times:
                path = folder / f"{name}_{writer}_{i}.nii.gz"
                start = time.perf_counter()
                if writer == "save_nifti":
                    save_nifti(array, path, BRATS_AFFINE)
                else:
                    nib.save(nifti_image(np.ascontiguousarray(array), BRATS_AFFINE), str(path))
                times[writer].append(time.perf_counter() - start)
        before = (folder / f"{name}_nibabel_save_0.nii.gz").read_bytes()
        after = (folder / f"{name}_save_nifti_0.nii.gz").read_bytes()
        results[name] = {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "bytes": len(after),
            "files": count,
            "nibabel_save_ms": _milliseconds(times["nibabel_save"]),
            "save_nifti_ms": _milliseconds(times["save_nifti"]),
            "speedup": round(min(times["nibabel_save"]) / min(times["save_nifti"]), 2),
            "identical_bytes": before == after,
        }
    return results


def _link_cases(release: Path, target: Path, num_cases: int) -> Path:
    """A release folder holding the first ``num_cases`` case folders of ``release`` (files hard-linked)."""
    for folder in sorted(p for p in release.iterdir() if p.is_dir())[:num_cases]:
        (target / folder.name).mkdir(parents=True)
        for file in folder.iterdir():
            try:
                os.link(file, target / folder.name / file.name)
            except OSError:
                shutil.copy2(file, target / folder.name / file.name)
    return target


def benchmark_conversion(
    brats_cases: int = 8,
    memory_cases: int = 4,
    luna16_cases: int = 4,
    medmnist_images: int = 4000,
    workers: Sequence[int] = (0, 2),
    conversions: Sequence[str] = CONVERSIONS,
    slices: str = "30:126",
    brats_shape: Sequence[int] = BRATS_SHAPE,
    luna16_shape: Sequence[int] = LUNA16_SHAPE,
    medmnist_size: int = 28,
    medmnist_images_per_case: int = 500,
    writer_repeats: int = 20,
    work_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write synthetic releases and convert each with every ``workers`` count; time the NIfTI writer.

    Args:
        brats_cases: BraTS cases (``brats_3d``: volumes; ``brats_2d``: the axial ``slices``).
        memory_cases: the BraTS 3D conversion also runs on this many of the cases (at least 2), to show that the
            peak memory does not grow with the number of cases (``flat_memory``); 0 skips it.
        luna16_cases: LUNA16 scans (the last one without nodule).
        medmnist_images: MedMNIST images (train/val/test 7:1:2).
        workers: ``num_workers`` values, each run on every conversion.
        conversions: a subset of :data:`CONVERSIONS`.
        slices: the BraTS 2D slice range (CDA-GAN sec. 4.1: ``30:126``).
        brats_shape: BraTS volume shape.
        luna16_shape: LUNA16 scan shape.
        medmnist_size: MedMNIST image size.
        medmnist_images_per_case: images per MedMNIST case (block).
        writer_repeats: files per writer in :func:`benchmark_nifti_writer`; 0 skips it.
        work_dir: folder for the releases and outputs (kept); a temporary folder (removed) when ``None``.
        seed: seed of the synthetic releases.

    Returns:
        ``machine`` (:func:`machine_info` before the runs) and ``load_average_after``, ``nifti_writer``,
        ``conversions`` (per conversion: ``source``, ``options``, ``input_mb``, ``runs``: one
        :func:`measure_conversion` result per ``workers`` value) and ``flat_memory``.

    Raises:
        ValueError: for an unknown conversion or a negative count.
    """
    if isinstance(conversions, str):  # "brats_2d,luna16" from a command line
        conversions = [c.strip() for c in conversions.split(",") if c.strip()]
    unknown = sorted(set(conversions) - set(CONVERSIONS))
    if unknown:
        raise ValueError(f"unknown conversions {unknown}; expected a subset of {list(CONVERSIONS)}.")
    workers = [int(w) for w in (str(workers).split(",") if isinstance(workers, (int, str)) else workers)]
    if min(workers, default=-1) < 0 or min(brats_cases, luna16_cases, medmnist_images, memory_cases) < 0:
        raise ValueError("workers and case counts must be >= 0 (and workers not empty).")
    if int(memory_cases) == 1:
        raise ValueError("memory_cases must be 0 (no memory check) or >= 2: one case converts without workers.")
    result: dict[str, Any] = {"machine": machine_info(), "nifti_writer": None, "conversions": {}, "flat_memory": None}
    with tempfile.TemporaryDirectory(prefix="conversion_benchmark_") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if int(writer_repeats) > 0:
            result["nifti_writer"] = benchmark_nifti_writer(root / "nifti_writer", int(writer_repeats), brats_shape)
        plans: dict[str, tuple[str, Path, dict[str, Any]]] = {}
        if {"brats_3d", "brats_2d"} & set(conversions):
            brats = write_brats_release(root / "brats", brats_cases, brats_shape, seed)
            plans["brats_3d"] = ("brats", brats, {"spatial_dims": 3})
            plans["brats_2d"] = ("brats", brats, {"spatial_dims": 2, "slices": slices})
        if "luna16" in conversions:
            plans["luna16"] = ("luna16", write_luna16_release(root / "luna16", luna16_cases, luna16_shape, seed), {})
        if "medmnist" in conversions:
            npz = write_medmnist_release(root / "medmnist", medmnist_images, medmnist_size, seed=seed)
            plans["medmnist"] = ("medmnist", npz, {"spatial_dims": 2, "images_per_case": medmnist_images_per_case})
        for name in [c for c in CONVERSIONS if c in conversions]:
            source, path, options = plans[name]
            inputs = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            runs = [measure_conversion(source, path, root / "out" / f"{name}_w{w}", w, **options) for w in workers]
            result["conversions"][name] = {
                "source": source,
                "options": options,
                "input_mb": round(sum(p.stat().st_size for p in inputs) / 2**20, 3),
                "runs": runs,
            }
        if "brats_3d" in conversions and 0 < int(memory_cases) < int(brats_cases):
            _, release, options = plans["brats_3d"]
            subset = _link_cases(release, root / "brats_subset" / release.name, memory_cases)
            flat = []
            for run in result["conversions"]["brats_3d"]["runs"]:
                w = run["num_workers"]
                few = measure_conversion("brats", subset, root / "out" / f"brats_3d_{memory_cases}_w{w}", w, **options)
                key = "peak_worker_rss_mb" if w > 0 else "peak_rss_mb"
                flat.append(
                    {
                        "num_workers": w,
                        "memory": key,
                        f"cases_{int(memory_cases)}": round(few[key], 1),
                        f"cases_{int(brats_cases)}": round(run[key], 1),
                        "growth_mb": round(run[key] - few[key], 1),
                        "baseline_rss_mb": round(run["baseline_rss_mb"], 1),
                    }
                )
            result["flat_memory"] = {"conversion": "brats_3d", "runs": flat}
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return result
