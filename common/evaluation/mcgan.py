"""3D MCGAN inference and evaluation: nodules generated into CT volumes, detection datalists, realism statistics.

Han thesis, sec. 6.2.1 ("During testing, we augment nodules with the same size/attenuation conditions by applying a
random combination to real nodules of width/height/depth shift up to 10% and zooming up to 10% [...] We resample the
resulting nodules to their original resolution and map back onto the original CT scans") and sec. 6.2.2 (``1x``,
``2x``, ``3x`` MCGAN-based augmentation: as many, twice and three times as many additional training scans as real
ones).

:class:`NoduleGenerator` puts one nodule into a volume: VOI around the target box, noise box, conditions, generator,
paste-back (:mod:`common.transforms.nodule`). :class:`MCGANSynthesis` writes ``ratio x N`` augmented scans for the
``N`` real training scans; the ``k``-th copy of a scan receives, for each of its real nodules, one generated nodule of
the same size/attenuation whose box is the real box after condition augmentation (each axis: centre shifted by up to
10 % of the extent, extent zoomed by up to 10 %). Where it goes (``placement``):

- ``"real_nodule"`` (default, the thesis's sec. 6.2.1): at the real nodule's own, augmented box: the generated nodule
  is mapped back onto the scan there and replaces the real one (its box replaces the real box in the datalist);
- ``"random_lung"``: at a random position inside the lung (the datalist entry's ``lung`` mask when it has one, as
  written by the LUNA16/LIDC converters with the lung-mask preprocessing, else an HU-threshold mask), away from the
  other nodules (where no box fits wholly inside the lung, one with at least half of its voxels in it); the real
  nodules stay and keep their boxes. Only this mode takes a list of requested ``conditions``.

:func:`evaluate_mcgan` regenerates every held-out real nodule in place and compares generated with real ``32^3``
nodule crops (FID/KID with a named feature extractor) and, per size and attenuation, their mean HU and volume.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn as nn
from common.data.validation import DatalistError, DatalistProblem
from common.engines.precision import resolve_precision
from common.evaluation.report import write_report
from common.handlers.sample_grid import make_grid, save_png
from common.metrics.features import extract_features
from common.metrics.generative import fid, kid
from common.transforms.nodule import (
    DEFAULT_HU_WINDOW,
    NODULE_ATTENUATIONS,
    NODULE_SIZES,
    augment_box,
    central_box,
    condition_vector,
    crop_voi,
    hu_to_unit,
    lung_mask,
    nodule_region,
    paste_nodule,
    sample_lung_box,
)
from common.utils import atomic_write_json, save_nifti, sha256_file
from common.utils.errors import UserInputError
from monai.data import load_decathlon_datalist

__all__ = [
    "PLACEMENTS",
    "MCGANSynthesis",
    "NoduleGenerator",
    "SynthesisSettingError",
    "evaluate_mcgan",
    "format_nodule_table",
    "nodule_statistics",
]

PLACEMENTS: tuple[str, ...] = ("real_nodule", "random_lung")
"""Where :class:`MCGANSynthesis` puts the generated nodules (see the module docstring)."""


class SynthesisSettingError(UserInputError, ValueError):
    """A setting of :class:`MCGANSynthesis` that cannot work (unknown placement, conditions the placement cannot take)."""


logger = logging.getLogger(__name__)


class NoduleGenerator:
    """Generate one nodule of given size/attenuation into a volume at a box (sec. 6.2.1, test time).

    Args:
        generator: the trained MCGAN generator (``(B, 7, *voi) -> (B, 1, *voi)``), used in eval mode.
        voi_size, nodule_size, margin, pad_value: VOI geometry (:class:`~common.transforms.NoduleVOId`).
        hu_window: HU window of the training intensities.
        noise_range: bounds of the noise box.
        blend_width: border layers blended at paste-back.
        device: device of the generator.
        seed: seed of the noise boxes.
        amp: precision policy of the generator's forward pass (:func:`common.engines.resolve_precision`):
            ``"auto"`` (bfloat16 autocast on CPUs with AMX and bf16 GPUs, float32 elsewhere), ``False`` (float32),
            ``True`` or a dtype name. The generated VOIs are returned in float32 either way.
    """

    def __init__(
        self,
        generator: nn.Module,
        voi_size: int = 64,
        nodule_size: int = 32,
        margin: int = 1,
        pad_value: float = -1000.0,
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        noise_range: Sequence[float] = (-0.5, 0.5),
        blend_width: int = 1,
        device: str | torch.device = "cpu",
        seed: int = 0,
        amp: bool | str = False,
    ) -> None:
        self.generator = generator
        self.voi_size, self.nodule_size, self.margin = int(voi_size), int(nodule_size), int(margin)
        self.pad_value, self.hu_window = float(pad_value), tuple(hu_window)
        self.noise_range, self.blend_width = tuple(noise_range), int(blend_width)
        self.device = torch.device(device)
        self.rng = np.random.RandomState(seed)
        self.precision = resolve_precision(amp, self.device)
        logger.info("MCGAN synthesis precision on %s: %s", self.device, self.precision.describe())

    def real_voi(self, volume: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
        """The real VOI ``(1, *voi)`` in ``[-1, 1]`` around ``box`` (the generator's view of it, before the noise)."""
        region = nodule_region(box, self.margin)
        return hu_to_unit(crop_voi(volume, region, self.voi_size, self.nodule_size, self.pad_value), self.hu_window)

    def generator_input(self, volume: torch.Tensor, box: Sequence[float], size: str, attenuation: str) -> tuple:
        """The ``(1, 7, *voi)`` input, the real VOI ``(1, *voi)`` in ``[-1, 1]`` and the nodule region."""
        region = nodule_region(box, self.margin)
        voi = self.real_voi(volume, box)
        noisy = voi.clone()
        inner = (slice(None),) + central_box(self.voi_size, self.nodule_size, voi.ndim - 1)
        lo, hi = self.noise_range
        noisy[inner] = torch.from_numpy(self.rng.uniform(lo, hi, size=noisy[inner].shape).astype(np.float32))
        cond = torch.from_numpy(condition_vector(size, attenuation))
        tiled = cond.reshape(-1, *([1] * (voi.ndim - 1))).expand(-1, *voi.shape[1:])
        return torch.cat([noisy, tiled])[None], voi, region

    @torch.no_grad()
    def __call__(
        self, volume: torch.Tensor, box: Sequence[float], size: str, attenuation: str
    ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor]:
        """Generate and paste one nodule.

        Args:
            volume: HU volume ``(1, *spatial)``.
            box: target box ``[x1, y1, z1, x2, y2, z2]``.
            size, attenuation: the conditions.

        Returns:
            the new volume, the nodule region ``(2, d)``, the generated and the real VOI ``(1, *voi)`` in ``[-1, 1]``.
        """
        x, real_voi, region = self.generator_input(volume, box, size, attenuation)
        self.generator.eval()
        with self.precision.autocast(self.device.type):
            generated = self.generator(x.to(self.device)).float().cpu()[0]
        inner = (slice(None),) + central_box(self.voi_size, self.nodule_size, generated.ndim - 1)
        composite = real_voi.clone()
        composite[inner] = generated[inner]
        new = paste_nodule(volume, generated, region, self.nodule_size, self.hu_window, self.blend_width)
        return new, region, composite, real_voi


def _load(path: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """A NIfTI volume as ``(1, *spatial)`` float32 tensor, its affine and voxel spacing."""
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    return torch.from_numpy(data)[None], img.affine, np.asarray(img.header.get_zooms()[: data.ndim], dtype=float)


class MCGANSynthesis:
    """Write ``ratio x N`` MCGAN-augmented CT scans and their detection datalist (sec. 6.2.1-6.2.2).

    Args:
        generator: the trained generator.
        datalist: the real datalist JSON (boxes, sizes, attenuations).
        output_dir: folder of ``images/`` and the datalist.
        checkpoint: the generator weights (hashed into the provenance), or None.
        bundle_name, bundle_version: provenance.
        ratio: augmented scans per real scan (1, 2, 3 in Table 5).
        section: datalist section of the real scans.
        conditions: None (one generated nodule per real nodule, same size/attenuation), or, with ``random_lung``
            placement only, a list of ``{"size": ..., "attenuation": ...}`` put into every augmented scan (box extents
            drawn from real nodules of that size).
        shift, zoom: condition augmentation fractions (0.1).
        placement: ``"real_nodule"`` (the thesis: at each real nodule's augmented box, replacing it) or
            ``"random_lung"`` (anywhere in the lung, beside the real nodules); see :data:`PLACEMENTS`.
        lung_threshold: HU threshold of the lung mask (:func:`~common.transforms.lung_mask`) for ``random_lung``
            when the entry has no lung mask.
        lung_key: entry key of a lung mask file (relative to the datalist, same grid as the image; non-zero is lung)
            used by ``random_lung`` placement in place of the HU threshold; ``None`` to always threshold.
        datalist_name: name of the written datalist.
        seed: seed of the augmentation, placement and noise.
        nodule_kwargs: keyword arguments of :class:`NoduleGenerator` (geometry, window, blending, device).
    """

    def __init__(
        self,
        generator: nn.Module,
        datalist: str | os.PathLike,
        output_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None,
        bundle_name: str,
        bundle_version: str,
        ratio: int = 1,
        section: str = "training",
        conditions: Sequence[Mapping[str, str]] | None = None,
        shift: float = 0.1,
        zoom: float = 0.1,
        placement: str = "real_nodule",
        lung_threshold: float = -500.0,
        lung_key: str | None = "lung",
        datalist_name: str = "datalist.json",
        seed: int = 0,
        **nodule_kwargs: Any,
    ) -> None:
        if int(ratio) < 1:
            raise SynthesisSettingError(f"ratio must be a positive integer, got {ratio}.")
        placement = str(placement).strip().lower()
        if placement not in PLACEMENTS:
            raise SynthesisSettingError(f"unknown placement {placement!r}; expected one of {list(PLACEMENTS)}.")
        if conditions and placement != "random_lung":
            raise SynthesisSettingError(
                "requested `conditions` need placement 'random_lung' (the 'real_nodule' placement generates each real "
                "nodule again with its own size/attenuation, at its own box)."
            )
        for c in conditions or ():
            condition_vector(c["size"], c["attenuation"])  # fail early on unknown classes
        self.nodules = NoduleGenerator(generator, seed=seed, **nodule_kwargs)
        self.datalist, self.output_dir = str(datalist), Path(output_dir)
        self.entries = load_decathlon_datalist(self.datalist, True, section)
        self.ratio, self.section = int(ratio), section
        self.conditions = [dict(c) for c in conditions] if conditions else None
        self.shift, self.zoom, self.lung_threshold = float(shift), float(zoom), float(lung_threshold)
        self.placement, self.lung_key = placement, lung_key
        self.datalist_name, self.rng = datalist_name, np.random.RandomState(seed)
        self.generator_info = {
            "bundle": bundle_name,
            "version": bundle_version,
            "checkpoint": os.path.basename(checkpoint) if checkpoint else None,
            "checkpoint_sha256": sha256_file(checkpoint) if checkpoint else None,
        }
        self.summary: dict[str, Any] = {}

    def _requests(self, entry: Mapping[str, Any]) -> list[tuple[list[float], str, str]]:
        """(template box, size, attenuation) of the nodules to generate into a copy of ``entry``."""
        if self.conditions is None:
            return list(zip(entry.get("box") or [], entry["size"], entry["attenuation"]))
        by_size = defaultdict(list)
        for e in self.entries:
            for b, s in zip(e.get("box") or [], e.get("size") or []):
                by_size[s].append(b)
        every = [b for boxes in by_size.values() for b in boxes]
        out = []
        for c in self.conditions:
            pool = by_size.get(c["size"]) or every
            out.append((pool[self.rng.randint(len(pool))], c["size"], c["attenuation"]))
        return out

    def lung(self, entry: Mapping[str, Any], index: int, volume: torch.Tensor) -> np.ndarray:
        """The lung mask ``(*spatial)`` of an entry: its ``lung_key`` file when it has one, else the HU threshold.

        Raises:
            DatalistError: when the mask file is missing, unreadable, on another grid or empty.
        """
        path = entry.get(self.lung_key) if self.lung_key else None
        if not path:
            return lung_mask(volume.numpy(), self.lung_threshold)
        path = os.path.join(os.path.dirname(os.path.abspath(self.datalist)), os.fspath(path))

        def fail(problem: str) -> DatalistError:
            return DatalistError([DatalistProblem(self.section, index, self.lung_key, path, problem)], self.datalist)

        try:
            mask = np.asarray(nib.load(path).dataobj)
        except Exception as error:  # missing or unreadable: named in the datalist error
            raise fail(f"lung mask cannot be read ({type(error).__name__}: {error})") from error
        spatial = tuple(volume.shape[1:])
        while mask.ndim > len(spatial) and mask.shape[-1] == 1:  # a trailing channel of one
            mask = mask[..., 0]
        if mask.shape != spatial:
            raise fail(f"lung mask shape {mask.shape} differs from the image's {spatial}")
        if not mask.any():
            raise fail("lung mask is empty")
        return mask > 0

    def real_nodule_box(self, template: Sequence[float], shape: Sequence[int]) -> list[int]:
        """The thesis's test-time box (sec. 6.2.1): the real box shifted and zoomed by up to ``shift``/``zoom``.

        Draws are repeated (10 at most) until the box lies inside the volume; then the real box itself is used
        (clipped to the volume), which also satisfies the bounds.
        """
        d = len(shape)
        for _ in range(10):
            box = augment_box(template, self.rng, self.shift, self.zoom)
            if all(box[a] >= 0 and box[d + a] <= shape[a] for a in range(d)):
                return box
        real = [int(round(v)) for v in template]
        return [max(0, v) for v in real[:d]] + [min(int(shape[a]), real[d + a]) for a in range(d)]

    def run(self) -> dict[str, Any]:
        """Generate and write everything; return a summary (counts, nodules/s)."""
        images_dir = self.output_dir / "images"
        entries, generated, skipped, seconds = [], 0, 0, 0.0
        lungs: dict[str, np.ndarray] = {}
        for copy in range(self.ratio):
            for index, entry in enumerate(self.entries):
                volume, affine, _ = _load(entry["image"])
                if self.placement == "random_lung" and entry["image"] not in lungs:
                    lungs[entry["image"]] = self.lung(entry, index, volume)
                boxes = [list(map(int, b)) for b in entry.get("box") or []]
                sizes, attenuations = list(entry.get("size") or []), list(entry.get("attenuation") or [])
                flags = [False] * len(boxes)
                for number, (template, size, attenuation) in enumerate(self._requests(entry)):
                    if self.placement == "real_nodule":  # replaces real nodule `number` at its augmented box
                        box = self.real_nodule_box(template, volume.shape[1:])
                    else:
                        aug = augment_box(template, self.rng, self.shift, self.zoom)
                        d = len(aug) // 2
                        extent = [aug[d + a] - aug[a] for a in range(d)]
                        box = None
                        for fraction, gap in ((1.0, 2), (0.5, 1)):  # whole box in the lung, else half of it
                            box = sample_lung_box(lungs[entry["image"]], extent, self.rng, boxes, gap, fraction)
                            if box is not None:
                                break
                        if box is None:
                            skipped += 1
                            continue
                    start = time.perf_counter()
                    volume, _, _, _ = self.nodules(volume, box, size, attenuation)
                    seconds += time.perf_counter() - start
                    generated += 1
                    if self.placement == "real_nodule":
                        boxes[number], flags[number] = box, True
                    else:
                        boxes.append(box)
                        sizes.append(size)
                        attenuations.append(attenuation)
                        flags.append(True)
                name = f"mcgan_{copy * len(self.entries) + index:05d}.nii.gz"
                # a fresh header holding only the affine: no source metadata
                save_nifti(volume[0], images_dir / name, affine, dtype=np.float32)
                entries.append(
                    {
                        "image": f"images/{name}",
                        "box": boxes,
                        "box_label": [0] * len(boxes),
                        "size": sizes,
                        "attenuation": attenuations,
                        "synthetic_box": flags,
                        "synthetic": True,
                        "source": os.path.relpath(entry["image"], self.output_dir),
                        "generator": self.generator_info,
                        "method": "mcgan",
                    }
                )
        header = {
            "name": "mcgan_augmented_chest_ct",
            "description": f"{self.ratio}x MCGAN-augmented CT scans written by {self.generator_info['bundle']} "
            f"{self.generator_info['version']}",
            "synthetic": True,
            "generator": self.generator_info,
            "ratio": self.ratio,
            "placement": self.placement,
            "box_mode": "xyzxyz",
            "box_coordinates": "voxel",
            "box_labels": {"0": "nodule"},
            "source_datalist": os.path.relpath(self.datalist, self.output_dir),
            self.section: entries,
        }
        atomic_write_json(header, self.output_dir / self.datalist_name)
        self.summary = {
            "num_scans": len(entries),
            "num_generated_nodules": generated,
            "num_skipped_nodules": skipped,
            "placement": self.placement,
            "precision": self.nodules.precision.as_dict(),
            "generation_seconds": seconds,
            "nodules_per_s": generated / seconds if seconds > 0 else None,
            "datalist": str(self.output_dir / self.datalist_name),
        }
        logger.info("MCGAN synthesis: %s", json.dumps(self.summary))
        return self.summary


def nodule_statistics(volume_hu: torch.Tensor, box: Sequence[int], spacing: Sequence[float], threshold: float) -> dict:
    """Mean HU inside a box and the nodule volume (mm^3 of voxels above ``threshold`` HU inside it)."""
    d = len(box) // 2
    inside = volume_hu[(0,) + tuple(slice(int(box[a]), int(box[a + d])) for a in range(d))]
    voxel = float(np.prod(spacing))
    return {"mean_hu": float(inside.mean()), "volume_mm3": float((inside > threshold).sum()) * voxel}


def _mean_std(values: Sequence[float]) -> list[float]:
    return [float(np.mean(values)), float(np.std(values))] if len(values) else [float("nan"), float("nan")]


def evaluate_mcgan(
    generator: nn.Module,
    datalist: str | os.PathLike,
    output_dir: str | os.PathLike,
    sections: Sequence[str] = ("validation", "test"),
    feature_extractor: nn.Module | None = None,
    volume_threshold: float = -750.0,
    kid_subsets: int = 50,
    metrics_name: str = "metrics.json",
    seed: int = 0,
    reference_sections: Sequence[str] = (),
    **nodule_kwargs: Any,
) -> dict[str, Any]:
    """Regenerate every real nodule of ``sections`` in place and compare generated with real nodules.

    Each real nodule's box is replaced by a noise box and generated with its own size/attenuation. Reported:
    FID and KID between the generated and the real ``nodule_size`` crops (in ``[-1, 1]``) with ``feature_extractor``
    (its ``name`` is written into the output), and, overall, per size, per attenuation and per (size, attenuation),
    mean +- std over nodules of the mean HU inside the box and the nodule volume (voxels above ``volume_threshold``
    HU inside the box, in mm^3), real vs generated, plus the diversity (mean pairwise l1 distance between nodule
    crops of the same condition). A PNG of real vs generated VOIs is written next to the metrics; the table of
    :func:`format_nodule_table` is logged.

    With ``reference_sections`` (e.g. ``["training"]``, the nodules the generator learnt from) and a feature
    extractor, the real nodule crops of those sections are scored against the real crops of ``sections`` in the same
    way: ``fid_reference``, ``kid_reference_mean``, ``kid_reference_std`` and ``num_reference`` (the keys of
    :data:`common.evaluation.generative.REFERENCE_KEYS`), the real-vs-real level that ``fid`` and ``kid_mean`` are
    read against. FID falls with the number of crops, so compare them where the counts are alike.

    Args:
        generator: the trained generator.
        datalist: the real datalist.
        output_dir: folder of ``metrics.json`` and ``nodules.png``.
        sections: datalist sections evaluated (held-out by default).
        feature_extractor: module ``(B, 1, *nodule) -> (B, F)`` with a ``name`` (``common.metrics``), or ``None``
            to skip FID/KID.
        volume_threshold: HU above which a voxel counts as nodule (between lung, -850, and ground glass, -600).
        kid_subsets: KID subsets.
        metrics_name: file name of the metrics JSON.
        seed: noise seed.
        reference_sections: datalist sections whose real nodule crops form the real-vs-real reference; empty: none.
        nodule_kwargs: keyword arguments of :class:`NoduleGenerator`.

    Returns:
        the metrics dict (also written to ``output_dir/metrics_name``).

    Raises:
        ValueError: fewer than 2 real nodules in ``sections`` or in ``reference_sections``, or a section in both.
    """
    overlap = set(sections) & set(reference_sections)
    if overlap:
        raise ValueError(f"reference_sections {list(reference_sections)} overlap the evaluated sections: {overlap}.")
    nodules = NoduleGenerator(generator, seed=seed, **nodule_kwargs)
    records, real_crops, fake_crops, grid = [], [], [], []
    for section in sections:
        for entry in load_decathlon_datalist(str(datalist), True, section):
            volume, _, spacing = _load(entry["image"])
            for box, size, attenuation in zip(entry.get("box") or [], entry["size"], entry["attenuation"]):
                new, _, fake_voi, real_voi = nodules(volume, box, size, attenuation)
                inner = (slice(None),) + central_box(nodules.voi_size, nodules.nodule_size, fake_voi.ndim - 1)
                real_crops.append(real_voi[inner])
                fake_crops.append(fake_voi[inner])
                if len(grid) < 8:
                    grid += [real_voi, fake_voi]
                records.append(
                    {
                        "size": size,
                        "attenuation": attenuation,
                        "real": nodule_statistics(volume, box, spacing, volume_threshold),
                        "generated": nodule_statistics(new, box, spacing, volume_threshold),
                    }
                )
    if len(records) < 2:
        raise ValueError(
            f"need at least 2 real nodules in sections {list(sections)} of {datalist}, got {len(records)}."
        )
    real, fake = torch.stack(real_crops), torch.stack(fake_crops)
    result: dict[str, Any] = {"num_nodules": len(records), "sections": list(sections)}
    if feature_extractor is not None:
        f_real = extract_features(feature_extractor, real)
        f_fake = extract_features(feature_extractor, fake)
        kid_mean, kid_std = kid(f_real, f_fake, num_subsets=kid_subsets, seed=seed)
        result.update(
            {
                "feature_extractor": getattr(feature_extractor, "name", type(feature_extractor).__name__),
                "fid": fid(f_real, f_fake),
                "kid_mean": kid_mean,
                "kid_std": kid_std,
            }
        )
        if reference_sections:
            reference = _real_nodule_crops(datalist, reference_sections, nodules)
            f_ref = extract_features(feature_extractor, reference)
            ref_mean, ref_std = kid(f_real, f_ref, num_subsets=kid_subsets, seed=seed)
            result.update(
                {
                    "fid_reference": fid(f_real, f_ref),
                    "kid_reference_mean": ref_mean,
                    "kid_reference_std": ref_std,
                    "num_reference": int(reference.shape[0]),
                    "reference_sections": list(reference_sections),
                }
            )

    def group(select) -> dict[str, Any]:
        chosen = [i for i, r in enumerate(records) if select(r)]
        out: dict[str, Any] = {"n": len(chosen)}
        for kind in ("real", "generated"):
            out[kind] = {k: _mean_std([records[i][kind][k] for i in chosen]) for k in ("mean_hu", "volume_mm3")}
        for kind, crops in (("real", real), ("generated", fake)):
            if len(chosen) > 1:
                x = crops[chosen].flatten(1)
                dist = torch.cdist(x, x, p=1) / x.shape[1]
                out[kind]["diversity_l1"] = float(dist.sum() / (len(chosen) * (len(chosen) - 1)))
        return out

    result["overall"] = group(lambda r: True)
    result["by_size"] = {s: group(lambda r, s=s: r["size"] == s) for s in NODULE_SIZES}
    result["by_attenuation"] = {a: group(lambda r, a=a: r["attenuation"] == a) for a in NODULE_ATTENUATIONS}
    result["by_condition"] = {
        f"{s}/{a}": group(lambda r, s=s, a=a: r["size"] == s and r["attenuation"] == a)
        for s in NODULE_SIZES
        for a in NODULE_ATTENUATIONS
    }
    result["volume_threshold_hu"] = volume_threshold
    write_report(result, Path(output_dir) / metrics_name, format_nodule_table(result), "MCGAN evaluation", log=logger)
    save_png(make_grid(torch.stack(grid), nrow=2), Path(output_dir) / "nodules.png")
    return result


def _real_nodule_crops(datalist: str | os.PathLike, sections: Sequence[str], nodules: NoduleGenerator) -> torch.Tensor:
    """The real ``nodule_size`` crops (in ``[-1, 1]``) of every nodule of ``sections``: ``(N, 1, *nodule)``."""
    crops = []
    for section in sections:
        for entry in load_decathlon_datalist(str(datalist), True, section):
            volume, _, _ = _load(entry["image"])
            for box in entry.get("box") or []:
                voi = nodules.real_voi(volume, box)
                crops.append(voi[(slice(None),) + central_box(nodules.voi_size, nodules.nodule_size, voi.ndim - 1)])
    if len(crops) < 2:
        raise ValueError(f"need at least 2 real nodules in reference sections {list(sections)} of {datalist}.")
    return torch.stack(crops)


def format_nodule_table(result: Mapping[str, Any]) -> str:
    """A text table of the realism statistics (mean HU and volume, real vs generated) per group."""
    lines = []
    if "fid" in result:
        lines.append(f"FID {result['fid']:.4f}  KID {result['kid_mean']:.4f} +- {result['kid_std']:.4f}")
        if "fid_reference" in result:
            lines.append(
                f"real-vs-real reference ({'/'.join(result['reference_sections'])}, {result['num_reference']} nodules):"
                f" FID {result['fid_reference']:.4f}  KID {result['kid_reference_mean']:.4f}"
            )
        lines.append(f"features: {result['feature_extractor']}")
    lines.append(f"{'group':<28}{'n':>4}  {'HU real':>16}{'HU gen':>16}{'vol real':>16}{'vol gen':>16}")
    rows = [("overall", result["overall"])]
    rows += [(f"size {k}", v) for k, v in result["by_size"].items()]
    rows += [(f"attenuation {k}", v) for k, v in result["by_attenuation"].items()]
    for name, g in rows:
        if not g["n"]:
            continue
        cells = [g[kind][k] for k in ("mean_hu", "volume_mm3") for kind in ("real", "generated")]
        lines.append(f"{name:<28}{g['n']:>4}  " + "".join(f"{m:>9.1f}+-{s:<5.1f}" for m, s in cells))
    return "\n".join(lines)
