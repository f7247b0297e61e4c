"""Predicted masks of a segmentation bundle's inference: NIfTI files with their image's affine, and a datalist."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from common.utils import atomic_write_json, is_rank0, save_nifti, split_ext

__all__ = ["PredictionWriter", "prediction_path"]

logger = logging.getLogger("common.handlers")


def _first(image: Any) -> str:
    return str(image[0] if isinstance(image, (list, tuple)) else image)


def prediction_path(image: str | Sequence[str], prediction_dir: str | os.PathLike, postfix: str = "seg") -> Path:
    """``<prediction_dir>/<image stem>_<postfix>.nii.gz``; a list of channel files is named after its first file."""
    stem, _ = split_ext(os.path.basename(os.path.normpath(_first(image))))  # a DICOM series folder: its name
    return Path(prediction_dir) / f"{stem}_{postfix}.nii.gz"


class PredictionWriter:
    """Ignite handler writing each predicted mask as NIfTI with its source image's affine, then a datalist.

    The evaluator's postprocessing must bring ``pred`` back to the image's own grid (MONAI ``Invertd``) and to
    integer classes (``AsDiscreted(argmax=True)``): ``(1, *spatial)``. The mask gets the affine of the image file
    itself (read with nibabel) and keeps its header's sform/qform codes and units, so it overlays the image in any
    viewer and in tools that read the codes; a DICOM file or series, NRRD or MHA source gives the RAS affine MONAI's
    ``ITKReader`` loaded it with. The mask's shape must equal the image's. Files are
    written atomically. When the run completes, ``datalist_file`` lists ``{"image": ..., "label": mask}`` entries
    (mask paths relative to it; ``reference_label`` keeps the entry's own label when it has one).

    Args:
        entries: the datalist entries being segmented (absolute ``image`` paths), to recover multi-file images.
        output_dir: folder of the masks.
        datalist_file: the datalist JSON written at the end.
        postfix: file-name postfix of the masks.
        section: the datalist section written.
        extra: header entries of the datalist (bundle, version, checkpoint...).
    """

    def __init__(
        self,
        entries: Sequence[Mapping[str, Any]],
        output_dir: str | os.PathLike,
        datalist_file: str | os.PathLike,
        postfix: str = "seg",
        section: str = "test",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.entries = {os.path.realpath(_first(e["image"])): dict(e) for e in entries}
        self.output_dir = Path(output_dir)
        self.datalist_file = Path(datalist_file)
        self.postfix, self.section = postfix, section
        self.extra = dict(extra or {})
        self.written: list[dict] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.written.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _write(self, engine: Any) -> None:
        output = engine.state.output
        for item in output if isinstance(output, (list, tuple)) else [output]:
            pred = item["pred"]
            source = str(pred.meta["filename_or_obj"]) if hasattr(pred, "meta") else None
            if source is None:
                raise ValueError("the prediction carries no source file name: keep MetaTensors in the pipeline.")
            entry = self.entries.get(os.path.realpath(source), {"image": source})
            mask = torch.as_tensor(pred).detach().cpu().numpy()[0].round().astype(np.uint8)
            if split_ext(source)[1].lower() in (".nii", ".nii.gz"):
                reference = nib.load(source)
                shape, affine, header = reference.shape, reference.affine, reference.header
            else:  # DICOM, NRRD, MHA (MONAI's ITKReader): the loader's RAS affine and grid, as NIfTI wants them
                shape = tuple(int(s) for s in pred.meta.get("spatial_shape", mask.shape))
                affine, header = np.asarray(pred.meta.get("original_affine", pred.affine), dtype=np.float64), None
            if mask.shape != tuple(shape[: mask.ndim]):
                raise ValueError(f"prediction of shape {mask.shape} for '{source}' of shape {tuple(shape)}.")
            path = prediction_path(entry["image"], self.output_dir, self.postfix)
            if is_rank0():
                save_nifti(mask, path, affine, geometry_from=header)
            self.written.append({**entry, "mask": path})

    def _complete(self, engine: Any) -> None:
        if not is_rank0():
            return
        base = self.datalist_file.resolve().parent
        items = []
        for e in self.written:
            item = {"image": e["image"], "label": os.path.relpath(e["mask"].resolve(), base), "prediction": True}
            if "label" in e:
                item["reference_label"] = e["label"]
            items.append(item)
        atomic_write_json({"description": "predicted masks", **self.extra, self.section: items}, self.datalist_file)
        logger.info(f"wrote {len(items)} predicted masks and {self.datalist_file}")
