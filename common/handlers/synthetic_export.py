"""Export of generated samples as NIfTI files plus a Decathlon-style datalist flagged as synthetic."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from common.data.merging import NOISE_SOURCE
from common.utils import atomic_write_json, get_rank, get_world_size, is_rank0, save_nifti, sha256_file
from monai.data import decollate_batch
from monai.data.meta_tensor import MetaTensor
from monai.utils import IgniteInfo, convert_to_numpy, min_version, optional_import, string_list_all_gather

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["SyntheticDatalistWriter"]


def _to_python(value: Any) -> Any:
    """Convert tensors, numpy arrays/scalars and nested containers to JSON-serialisable python values."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 and value.ndim <= 1 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 and value.ndim <= 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _as_samples(data: Any) -> list[dict]:
    """Per-sample dicts from a decollated list of dicts or a dict of batched values (None gives [])."""
    if data is None:
        return []
    if isinstance(data, Mapping):
        data = decollate_batch(dict(data), detach=True)
    if not isinstance(data, (list, tuple)) or not all(isinstance(d, Mapping) for d in data):
        raise TypeError(f"expected a list of per-sample dicts or a dict of batched values, got {type(data)}.")
    return [dict(d) for d in data]


class SyntheticDatalistWriter:
    """Write the generated samples of an evaluator/inference run as NIfTI files and a synthetic datalist.

    At every ``ITERATION_COMPLETED`` each sample of ``engine.state.output`` (a list of per-sample dicts as
    produced by ``decollate=True``, or a dict of batched values) is written: its channel-first ``pred``
    ``(C, H, W[, D])`` becomes ``<prefix>_{index:05d}.nii.gz`` when ``C == 1``, or one single-channel file
    ``<prefix>_{index:05d}_<channel_name>.nii.gz`` per channel when ``C > 1`` (the datalist ``image`` is then
    the list of these files, following the data contract of multi-modal images). With ``label_key``, the sample's
    integer label map ``(1, H, W[, D])`` or ``(H, W[, D])`` (e.g. the mask of a generated image+mask pair) is
    written too, as ``<prefix>_{index:05d}_label.nii.gz`` with ``label_dtype`` voxels, and recorded as the entry's
    ``label``. The files get a fresh
    NIfTI header with the given ``affine`` (identity by default): nothing, in particular no patient
    metadata, is copied from the source images. Every file is written to a temporary name in the same
    folder and moved into place, so an interrupted run leaves no half-written file.

    Keys other than ``pred`` (``source_key``, ``copy_keys``) are looked up in the per-sample output first,
    then in the per-sample ``engine.state.batch`` (MONAI evaluators only keep image/label/pred in the
    output). At ``COMPLETED`` the Decathlon-style ``<output_dir>/<datalist_name>`` is written atomically::

        {"name": ..., "description": "synthetic data written by <bundle> <version>", "synthetic": true,
         "generator": {"bundle": ..., "version": ..., "checkpoint": <basename>, "checkpoint_sha256": <hex>},
         <section>: [{"image": <path(s) relative to the JSON>, ["label": <path relative to the JSON>,]
                      "synthetic": true, "source": ...,
                      "generator": {...}, <copy_keys>..., <extra_entry>...}, ...]}

    A new ``engine.run`` starts a new export (entries, counter and ``num_written`` are reset; files with the
    same names are overwritten).

    Distributed runs: each rank writes its own image files with the prefix ``<prefix>_rank<r>``; at
    ``COMPLETED`` the entries are gathered on every rank (``monai.utils.string_list_all_gather``, a
    collective call, so all ranks must complete the run) and only rank 0 writes the datalist.

    Args:
        output_dir: folder of the NIfTI files (and of the datalist, unless ``datalist_name`` has a folder).
        bundle_name: name of the bundle that generated the data.
        bundle_version: version of that bundle.
        checkpoint: path of the generator weights, hashed once here; None records an untrained generator
            (``checkpoint`` and ``checkpoint_sha256`` are null).
        pred_key: key of the generated image in the per-sample output.
        source_key: key whose value is recorded as ``source`` (e.g. the path of the source image of an
            image-to-image model); a MetaTensor gives its ``filename_or_obj``. None records ``"noise"``.
        copy_keys: keys copied into every entry (tensors and numpy values are converted to python types).
        channel_names: names of the ``C > 1`` channels used in the file names (default ``ch0``, ``ch1``...).
        datalist_name: file name of the datalist, relative to ``output_dir``.
        section: datalist section holding the entries (e.g. ``"training"``).
        prefix: file name prefix of the images.
        affine: 4x4 affine of the written images; identity when None.
        extra_entry: constant items added to every entry (after the other keys).
        output_dtype: data type of the stored voxels.
        label_key: key of the per-sample integer label map to write next to the image (looked up like
            ``source_key``); None writes no label.
        label_dtype: integer data type of the stored label voxels (the label values must fit in it).

    Raises:
        FileNotFoundError: when ``checkpoint`` is given but is not a file.
        ValueError: for an affine that is not 4x4, a ``label_dtype`` that is not an integer type, or a channel
            named ``"label"`` together with ``label_key`` (its file name would be the label's).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        bundle_name: str,
        bundle_version: str,
        checkpoint: str | os.PathLike | None,
        pred_key: str = "pred",
        source_key: str | None = None,
        copy_keys: Sequence[str] = (),
        channel_names: Sequence[str] | None = None,
        datalist_name: str = "datalist.json",
        section: str = "training",
        prefix: str = "synthetic",
        affine: np.ndarray | torch.Tensor | None = None,
        extra_entry: dict | None = None,
        output_dtype: np.dtype | type = np.float32,
        label_key: str | None = None,
        label_dtype: np.dtype | type = np.uint8,
    ) -> None:
        if checkpoint is not None and not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"generator checkpoint not found: {os.fspath(checkpoint)!r}.")
        self.output_dir = os.fspath(output_dir)
        self.bundle_name = bundle_name
        self.bundle_version = bundle_version
        self.pred_key = pred_key
        self.source_key = source_key
        self.copy_keys = tuple(copy_keys)
        self.channel_names = list(channel_names) if channel_names is not None else None
        self.datalist_path = os.path.join(self.output_dir, datalist_name)
        self.section = section
        self.prefix = prefix
        aff = np.eye(4) if affine is None else convert_to_numpy(affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {aff.shape}.")
        self.affine = aff
        self.extra_entry = copy.deepcopy(dict(extra_entry or {}))
        self.output_dtype = np.dtype(output_dtype)
        self.label_key = label_key
        self.label_dtype = np.dtype(label_dtype)
        if not np.issubdtype(self.label_dtype, np.integer):
            raise ValueError(f"label_dtype must be an integer type, got {self.label_dtype}.")
        if label_key is not None and "label" in (self.channel_names or []):
            raise ValueError("a channel named 'label' would share its file name with the label map of label_key.")
        self.generator_info: dict[str, Any] = {
            "bundle": bundle_name,
            "version": bundle_version,
            "checkpoint": os.path.basename(checkpoint) if checkpoint is not None else None,
            "checkpoint_sha256": sha256_file(checkpoint) if checkpoint is not None else None,
        }
        self.entries: list[dict] = []
        self.num_written = 0

    def attach(self, engine: Engine) -> None:
        """Register on ``STARTED`` (reset), ``ITERATION_COMPLETED`` (write images) and ``COMPLETED`` (datalist).

        Args:
            engine: the evaluator or inference engine.
        """
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_datalist)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the entries of a previous run.

        Args:
            engine: unused, allows registering on ignite events.
        """
        self.entries = []
        self.num_written = 0

    @property
    def file_prefix(self) -> str:
        """Image file name prefix, rank-specific in distributed runs."""
        return f"{self.prefix}_rank{get_rank()}" if get_world_size() > 1 else self.prefix

    def __call__(self, engine: Engine) -> None:
        """Write the samples of the current iteration.

        Args:
            engine: engine whose ``state.output`` holds the samples (and ``state.batch`` the batch data).
        """
        outputs = _as_samples(engine.state.output)
        try:  # the batch only supplies extra keys: tolerate batches that are not dicts (e.g. tuples)
            batches = _as_samples(getattr(engine.state, "batch", None))
        except TypeError:
            batches = []
        for i, out in enumerate(outputs):
            sample = {**batches[i], **out} if i < len(batches) else out
            self.write_sample(sample)

    def _lookup(self, sample: Mapping, key: str) -> Any:
        if key not in sample:
            raise KeyError(f"key {key!r} not found in the sample (available: {sorted(map(str, sample))}).")
        return sample[key]

    def _source(self, sample: Mapping) -> Any:
        if self.source_key is None:
            return NOISE_SOURCE
        value = self._lookup(sample, self.source_key)
        if isinstance(value, MetaTensor):
            value = value.meta.get("filename_or_obj", None)
        return _to_python(value)

    def _save_nifti(self, array: np.ndarray, path: str, dtype: np.dtype | None = None) -> None:
        descrip = f"synthetic {self.bundle_name} {self.bundle_version}".encode()[:79]
        dtype = self.output_dtype if dtype is None else dtype
        save_nifti(array, path, self.affine, dtype=dtype, header={"descrip": descrip})

    def _label(self, sample: Mapping, spatial_shape: tuple[int, ...]) -> np.ndarray:
        """The sample's label map ``(H, W[, D])`` as ``label_dtype``, checked against the image's spatial shape."""
        label = convert_to_numpy(self._lookup(sample, self.label_key))
        if label.ndim == len(spatial_shape) + 1 and label.shape[0] == 1:
            label = label[0]
        if label.shape != spatial_shape:
            raise ValueError(
                f"{self.label_key!r} must be a label map (1, *S) or (*S) with S = {spatial_shape} (the image's), "
                f"got shape {label.shape}."
            )
        if not np.issubdtype(label.dtype, np.integer) and not np.array_equal(label, np.round(label)):
            raise ValueError(f"{self.label_key!r} must hold integer class indices, got non-integer values.")
        info = np.iinfo(self.label_dtype)
        if label.size and (label.min() < info.min or label.max() > info.max):
            raise ValueError(
                f"{self.label_key!r} values from {label.min()} to {label.max()} do not fit label_dtype "
                f"{self.label_dtype}."
            )
        return label.astype(self.label_dtype)

    def write_sample(self, sample: Mapping) -> dict:
        """Write one sample's prediction and record its datalist entry.

        Args:
            sample: per-sample dict with ``pred_key`` (``(C, H, W)`` or ``(C, H, W, D)``), ``label_key``
                (``(1, H, W[, D])`` or ``(H, W[, D])``) when set, and the other keys.

        Returns:
            the datalist entry (image and label paths relative to the datalist file).

        Raises:
            KeyError: when a required key is missing.
            ValueError: when the prediction is not channel-first 2D/3D, ``channel_names`` does not match, or the
                label map does not match the image's spatial shape, is not integer or does not fit ``label_dtype``.
        """
        pred = convert_to_numpy(self._lookup(sample, self.pred_key))
        if pred.ndim not in (3, 4):
            raise ValueError(f"{self.pred_key!r} must be channel-first (C, H, W[, D]), got shape {pred.shape}.")
        n_channels = pred.shape[0]
        stem = os.path.join(self.output_dir, f"{self.file_prefix}_{self.num_written:05d}")
        if n_channels == 1:
            paths = [f"{stem}.nii.gz"]
        else:
            names = self.channel_names or [f"ch{c}" for c in range(n_channels)]
            if len(names) != n_channels:
                raise ValueError(f"{len(names)} channel_names given for a prediction with {n_channels} channels.")
            paths = [f"{stem}_{name}.nii.gz" for name in names]
        label = None if self.label_key is None else self._label(sample, tuple(pred.shape[1:]))
        for c, path in enumerate(paths):
            self._save_nifti(pred[c], path)
        base = os.path.dirname(os.path.abspath(self.datalist_path))
        rel = [os.path.relpath(os.path.abspath(p), base) for p in paths]
        entry: dict[str, Any] = {"image": rel[0] if n_channels == 1 else rel}
        if label is not None:
            label_path = f"{stem}_label.nii.gz"
            self._save_nifti(label, label_path, self.label_dtype)
            entry["label"] = os.path.relpath(os.path.abspath(label_path), base)
        entry.update({"synthetic": True, "source": self._source(sample), "generator": dict(self.generator_info)})
        for key in self.copy_keys:
            entry[key] = _to_python(self._lookup(sample, key))
        entry.update(copy.deepcopy(self.extra_entry))
        self.entries.append(entry)
        self.num_written += 1
        return entry

    def datalist(self, entries: Sequence[dict] | None = None) -> dict:
        """The Decathlon-style datalist dict.

        Args:
            entries: the entries to list; default those written by this process.
        """
        data: dict[str, Any] = {
            "name": f"{self.bundle_name} synthetic",
            "description": f"synthetic data written by {self.bundle_name} {self.bundle_version}",
            "synthetic": True,
            "generator": dict(self.generator_info),
        }
        if self.channel_names is not None:
            data["channel_names"] = list(self.channel_names)
        data[self.section] = list(self.entries if entries is None else entries)
        return data

    def write_datalist(self, engine: Engine | None = None) -> None:
        """Gather the entries (distributed runs) and write the datalist JSON atomically on rank 0.

        Args:
            engine: unused, allows registering on ignite events.
        """
        entries = self.entries
        if get_world_size() > 1:
            gathered = string_list_all_gather([json.dumps(e) for e in entries])
            entries = [json.loads(s) for s in gathered if s]
        if is_rank0():
            atomic_write_json(self.datalist(entries), self.datalist_path)
