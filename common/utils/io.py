"""Atomic file writes: every output is written under a temporary name in its final folder, then renamed.

A killed process therefore never leaves a half-written file under the final name, and a reader never sees
one. NIfTI files are written with MONAI's :class:`~monai.data.NibabelWriter` (sform and qform set, codes 1).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import NibabelWriter
from nibabel.openers import Opener

__all__ = [
    "split_ext",
    "atomic_path",
    "remove_stale_temporaries",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "strict_json",
    "NON_FINITE_KEY",
    "nifti_image",
    "save_nifti",
]

_MULTI_EXTS = (".nii.gz", ".tar.gz")

NON_FINITE_KEY = "non_finite"
"""Key under which :func:`atomic_write_json` lists the values it wrote as ``null`` because they were NaN or Inf."""


def split_ext(path: str) -> tuple[str, str]:
    """Split ``path`` into stem and extension, keeping double extensions such as ``.nii.gz`` together.

    Args:
        path: a file name or path.

    Returns:
        ``(stem, ext)`` with ``stem + ext == path``.
    """
    lower = path.lower()
    for ext in _MULTI_EXTS:
        if lower.endswith(ext):
            return path[: -len(ext)], path[-len(ext) :]
    return os.path.splitext(path)


_TMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\.[A-Za-z0-9.]+)?$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete the temporary files that :func:`atomic_path` writers left in ``folder`` when their process was killed.

    A process killed during a write (``SIGKILL``, out of memory) cannot clean up; its temporary file
    (``.<stem>.<12 hex digits>.tmp<ext>``) never reaches a final name, so it is never read, but it takes space.
    Call this where a run starts over in a folder (e.g. a resumed training), before any writer of this run starts.

    Args:
        folder: the folder to clean; a missing folder is left alone.

    Returns:
        the paths removed.
    """
    removed = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if _TMP_NAME.match(name) and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Context manager yielding a temporary file name next to ``path``; on success it is moved onto ``path``.

    The temporary file lives in the same folder (so ``os.replace`` is atomic) and keeps the extension of
    ``path`` (so writers that infer the format from the name, such as nibabel or PIL, still work). If the body
    raises, the temporary file is removed and ``path`` is left untouched, so no half-written file remains.

    Args:
        path: final destination; missing parent folders are created.

    Yields:
        the temporary path to write to.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = split_ext(os.path.basename(path))
    # a unique name per writer (several ranks or threads may write the same folder)
    tmp = os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename.

    Args:
        data: the file's content.
        path: destination file.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(text: str, path: str | os.PathLike, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically.

    Args:
        text: the file's content.
        path: destination file.
        encoding: text encoding.
    """
    atomic_write_bytes(text.encode(encoding), path)


def _non_finite_name(value: float) -> str:
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def strict_json(obj: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """``obj`` with every NaN/Inf float (Python, NumPy or 0-d tensor scalar) replaced by ``None``, and where they were.

    Strict JSON parsers (JavaScript, ``jq``, most other languages) reject the bare ``NaN``/``Infinity`` that
    :func:`json.dumps` writes by default; a metric that is undefined (e.g. an AUC without positives) is written as
    ``null`` instead, and its place is recorded so that the reason is not lost. NumPy scalars, arrays and tensors
    become Python numbers and lists.

    Args:
        obj: nested mappings, lists and tuples of JSON-serialisable values, NumPy arrays and tensors.
        path: the location of ``obj`` in the document (dotted keys, list indices in brackets), for the record.

    Returns:
        ``(clean, replaced)``: the cleaned copy, and ``{location: "NaN" | "Infinity" | "-Infinity"}``.
    """
    replaced: dict[str, str] = {}

    def clean(value: Any, where: str) -> Any:
        if isinstance(value, (torch.Tensor, np.ndarray)):
            value = value.tolist()  # a Python number for 0-d, nested lists otherwise
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                replaced[where or "(root)"] = _non_finite_name(value)
                return None
            return value
        if isinstance(value, Mapping):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    return clean(obj, path), replaced


def atomic_write_json(obj: Any, path: str | os.PathLike, indent: int | None = 4, **kwargs: Any) -> None:
    """Write ``obj`` as strict JSON (with a final newline) to ``path`` atomically.

    NaN and Inf values are written as ``null`` (see :func:`strict_json`); when ``obj`` is a mapping, the places and
    kinds of the replaced values are added under :data:`NON_FINITE_KEY` (``{"auc": "NaN"}``: the metric was
    undefined), unless ``obj`` already has that key. The file never holds a bare ``NaN`` or ``Infinity``.

    Args:
        obj: a JSON-serialisable object.
        path: destination file.
        indent: JSON indentation.
        kwargs: passed to :func:`json.dumps` (e.g. ``sort_keys``, ``default``); ``allow_nan`` is always False.
    """
    kwargs.pop("allow_nan", None)
    clean, replaced = strict_json(obj)
    if replaced and isinstance(clean, dict) and NON_FINITE_KEY not in clean:
        clean[NON_FINITE_KEY] = replaced
    atomic_write_text(json.dumps(clean, indent=indent, allow_nan=False, **kwargs) + "\n", path)


def nifti_image(
    array: np.ndarray | torch.Tensor,
    affine: np.ndarray | torch.Tensor | None = None,
    dtype: Any = None,
    header: Mapping[str, Any] | None = None,
    geometry_from: nib.Nifti1Header | None = None,
) -> nib.Nifti1Image:
    """The NIfTI image :func:`save_nifti` writes: MONAI's :class:`~monai.data.NibabelWriter` backend object.

    Arguments as in :func:`save_nifti`.

    Returns:
        the image, its array as given (no channel handling, no resampling, no squeezing of singleton axes).
    """
    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    # any memory order: nibabel writes the file in Fortran order whatever the array's layout, so a C-order copy
    # of a loaded (Fortran-order) volume would only cost time and memory
    data = data if dtype is None else data.astype(dtype)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    # MONAI's backend object and header codes, as NibabelWriter.write makes them, without its channel-last
    # conversion (which would add a trailing axis to every array)
    image = NibabelWriter.create_backend_obj(data, affine=affine, dtype=data.dtype)
    if geometry_from is None:
        image.set_sform(affine, code=1)
        image.set_qform(affine, code=1)
        image.header.set_xyzt_units("mm")
    else:
        for get, put in ((geometry_from.get_sform, image.set_sform), (geometry_from.get_qform, image.set_qform)):
            form, code = get(coded=True)
            put(form, code=int(code))
        image.header.set_xyzt_units(*geometry_from.get_xyzt_units())
    for key, value in (header or {}).items():
        image.header[key] = value
    return image


_GZIP_BUFFER_BYTES = 2**20
"""Bytes handed to the gzip compressor at a time by :func:`save_nifti` (nibabel writes one array row at a time)."""


def save_nifti(
    array: np.ndarray | torch.Tensor,
    path: str | os.PathLike,
    affine: np.ndarray | torch.Tensor | None = None,
    dtype: Any = None,
    header: Mapping[str, Any] | None = None,
    geometry_from: nib.Nifti1Header | None = None,
) -> None:
    """Write ``array`` as a NIfTI file atomically, with MONAI's :class:`~monai.data.NibabelWriter` backend object.

    The array is written as given (no channel handling, no resampling, no squeezing of singleton axes);
    sform and qform both carry ``affine`` with code 1 (scanner), the spatial unit is mm, unless ``geometry_from``
    gives the header whose sform, qform (with their codes) and units are kept, e.g. a prediction's source image.

    A ``.nii.gz`` file holds the same bytes as nibabel's own ``nib.save`` of the image (its gzip stream: compression
    level ``nibabel.openers.Opener.default_compresslevel``, no file name, time 0), written through a 1 MiB buffer:
    nibabel hands the compressor one array row at a time, a quarter to a third of the time of writing a 240 x 240
    slice (``scripts/benchmark.py --workflow conversion`` times both). Other extensions are written by ``nib.save``.
    The array keeps its memory order (the file's order is nibabel's), so a loaded volume is not copied.

    Args:
        array: ``(H, W)``, ``(H, W, D)`` or with trailing channel/time axes, in nibabel's axis order.
        path: destination ``.nii`` or ``.nii.gz`` file.
        affine: 4x4 voxel-to-world affine (RAS, as nibabel); identity when ``None``.
        dtype: output data type; the array's own when ``None``.
        header: NIfTI header fields to set (e.g. ``{"descrip": b"synthetic"}``).
        geometry_from: a NIfTI header on the same voxel grid whose sform/qform and codes (e.g. 2 "aligned",
            4 "MNI") and spatial/time units the file keeps; a form whose code is 0 stays unset, as in the source.
    """
    image = nifti_image(array, affine, dtype=dtype, header=header, geometry_from=geometry_from)
    with atomic_path(path) as tmp:
        if tmp.lower().endswith(".gz"):
            level = Opener.default_compresslevel
            with open(tmp, "wb") as file, gzip.GzipFile("", "wb", level, file, mtime=0) as compressed:
                with io.BufferedWriter(compressed, buffer_size=_GZIP_BUFFER_BYTES) as stream:
                    image.to_stream(stream)
        else:
            nib.save(image, tmp)
