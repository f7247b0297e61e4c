"""Cross-domain synthesis with a trained P <-> N translation model: CDA-GAN Algorithms 2 and 3 (sec. 3.2).

- Algorithm 2 (classification): every positive through ``G_N`` (a synthetic negative, class 0), every negative
  through ``G_P`` (a synthetic positive, class 1): a class-balanced synthetic set the size of the real one,
  written as NIfTI with a datalist whose entries carry ``synthetic: true``, the ``source`` image and the
  generator's provenance.
- Algorithm 3 (segmentation, information enhancement): the difference map ``|x - G_N(x)|`` of each real image,
  saved beside it (same shape and affine as the image) and listed under ``difference_key`` in a second datalist
  that keeps the real images and masks. Two rules: ``"train"`` (Algorithm 3 at training time: positives through
  ``G_N``, negatives get a zero map) and ``"test"`` (sec. 3.2 at test time, when the class is unknown: every image
  through ``G_N``; ``G_N`` leaves negatives nearly unchanged thanks to the identity loss).

Intensities: the networks work on images scaled to [-1, 1]; synthetic images are written as ``(y + 1) / 2`` in
[0, 1], difference maps as ``|x - G_N(x)| / 2`` in [0, 1], both at the original image's size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from common.networks.cyclegan import CrossDomainTranslator
from common.utils import atomic_write_json, save_nifti, sha256_file

__all__ = ["CrossDomainSynthesis", "DIFFERENCE_RULES"]

DIFFERENCE_RULES = ("train", "test")
logger = logging.getLogger(__name__)


def _first_file(image: Any) -> str:
    return str(image[0] if isinstance(image, (list, tuple)) else image)


class CrossDomainSynthesis:
    """Write Algorithm 2's balanced synthetic set and Algorithm 3's difference maps.

    Args:
        entries: real datalist entries (``image``, ``class``; ``label`` kept when present), paths absolute.
        transform: dictionary transform that loads an entry's ``image`` as a ``(C, *spatial)`` tensor in [-1, 1] at
            the networks' size.
        gen_n: generator P -> N; gen_p: generator N -> P (return an image, or ``(image, mask)`` when shared).
        attn_n / attn_p: separate attention networks (``None`` for plain CycleGAN or a shared mask).
        output_dir: output folder (``synthetic/``, ``difference/`` and the two datalists are written there).
        bundle_name, bundle_version: provenance written into the entries.
        checkpoint: the checkpoint file the networks were loaded from (its sha256 is recorded).
        channel_names: names of the channels (a multi-channel image is written as one file per channel).
        difference_rule: ``"train"`` or ``"test"`` (see the module docstring).
        class_key, positive: which entries are positives.
        difference_key: datalist key of the difference map.
        device: inference device.
        method: method name recorded in the entries.
    """

    def __init__(
        self,
        entries: Sequence[Mapping[str, Any]],
        transform: Callable[[dict], dict],
        gen_n: nn.Module,
        gen_p: nn.Module,
        output_dir: str | os.PathLike,
        bundle_name: str,
        bundle_version: str,
        checkpoint: str | os.PathLike | None,
        attn_n: nn.Module | None = None,
        attn_p: nn.Module | None = None,
        channel_names: Sequence[str] | None = None,
        difference_rule: str = "train",
        class_key: str = "class",
        positive: int = 1,
        difference_key: str = "difference",
        device: str | torch.device = "cpu",
        method: str = "cda_gan",
    ) -> None:
        if difference_rule not in DIFFERENCE_RULES:
            raise ValueError(f"difference_rule must be one of {DIFFERENCE_RULES}, got '{difference_rule}'.")
        self.entries = [dict(e) for e in entries]
        self.transform = transform
        self.translator = CrossDomainTranslator(gen_n, gen_p, attn_n, attn_p)
        self.output_dir = Path(output_dir)
        self.channel_names = list(channel_names) if channel_names else None
        self.difference_rule = difference_rule
        self.class_key, self.positive, self.difference_key = class_key, positive, difference_key
        self.device = torch.device(device)
        self.generator_info = {
            "bundle": bundle_name,
            "version": bundle_version,
            "method": method,
            "checkpoint": None if checkpoint is None else Path(checkpoint).name,
            "checkpoint_sha256": None if checkpoint is None else sha256_file(checkpoint),
        }

    def _write(self, array: np.ndarray, affine: np.ndarray, stem: Path) -> str | list[str]:
        """Write ``(C, *spatial)`` as one file (C == 1) or one file per channel; returns the relative path(s)."""
        names = self.channel_names or [f"ch{i}" for i in range(array.shape[0])]
        if len(names) != array.shape[0]:
            raise ValueError(f"{array.shape[0]} channels but channel_names has {len(names)}.")
        paths = (
            [stem.with_name(f"{stem.name}.nii.gz")]
            if array.shape[0] == 1
            else [stem.with_name(f"{stem.name}_{n}.nii.gz") for n in names]
        )
        for channel, path in zip(array, paths):
            save_nifti(channel, path, affine, dtype=np.float32)
        rel = [os.path.relpath(p, self.output_dir) for p in paths]
        return rel[0] if len(rel) == 1 else rel

    @torch.no_grad()
    def run(self) -> dict[str, str]:
        """Translate every entry and write both datalists; returns their paths."""
        self.translator.eval()
        synthetic, enhanced = [], []
        for index, entry in enumerate(self.entries):
            is_positive = int(entry[self.class_key]) == self.positive
            x = self.transform(dict(entry))["image"]
            x = (x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)).float().unsqueeze(0).to(self.device)
            reference = nib.load(_first_file(entry["image"]))
            shape = reference.shape[: x.ndim - 2]
            mode = "bilinear" if x.ndim == 4 else "trilinear"

            def to_source_size(t: torch.Tensor) -> np.ndarray:
                return F.interpolate(t, size=shape, mode=mode, align_corners=False)[0].cpu().numpy()

            # Algorithm 2: the other class; identity affine: synthetic images carry no source geometry/metadata
            fake = self.translator(x, "n" if is_positive else "p")[0]
            stem = self.output_dir / "synthetic" / f"synthetic_{index:05d}"
            image = self._write(to_source_size((fake + 1.0) / 2.0).clip(0.0, 1.0), np.eye(4), stem)
            synthetic.append(
                {
                    "image": image,
                    self.class_key: 0 if is_positive else 1,
                    "synthetic": True,
                    "source": _first_file(entry["image"]),
                    "source_class": int(entry[self.class_key]),
                    "generator": self.generator_info,
                }
            )
            # Algorithm 3: difference map beside the real image, same shape and affine
            if is_positive:  # G_N(x) is the synthetic negative computed above
                diff = (x - fake).abs() / 2.0
            elif self.difference_rule == "test":
                diff = (x - self.translator(x, "n")[0]).abs() / 2.0
            else:
                diff = torch.zeros_like(x)
            stem = self.output_dir / "difference" / f"difference_{index:05d}"
            difference = self._write(to_source_size(diff).clip(0.0, 1.0), reference.affine, stem)
            real = dict(entry)
            real[self.difference_key] = (
                [str(self.output_dir / d) for d in difference]
                if isinstance(difference, list)
                else str(self.output_dir / difference)
            )
            enhanced.append(real)
        header = {"description": "written by CrossDomainSynthesis", "generator": self.generator_info}
        paths = {
            "synthetic": str(self.output_dir / "synthetic_datalist.json"),
            "enhanced": str(self.output_dir / "enhanced_datalist.json"),
        }
        atomic_write_json(
            {**header, "name": "cross-domain synthetic set (Algorithm 2)", "synthetic": True, "training": synthetic},
            paths["synthetic"],
        )
        atomic_write_json(
            {
                **header,
                "name": f"information enhancement (Algorithm 3, {self.difference_rule} rule)",
                "difference_rule": self.difference_rule,
                "training": enhanced,
            },
            paths["enhanced"],
        )
        logger.info(f"wrote {len(synthetic)} synthetic images and {len(enhanced)} difference maps to {self.output_dir}")
        return paths
