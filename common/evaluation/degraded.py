"""A stand-in synthetic data set for the refinement bundles: the phantom's images blurred and noised, so that
MUNIT/SimGAN refinement (Han's thesis, sec. 4.2.3) trains from a clean clone before any generator has been run."""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from common.handlers.synthetic_export import SyntheticDatalistWriter
from common.utils import atomic_write_json
from monai.data import load_decathlon_datalist
from scipy.ndimage import gaussian_filter

__all__ = ["make_degraded_synthetic"]


def make_degraded_synthetic(
    datalist: str,
    output_dir: str,
    section: str = "training",
    blur_sigma: float = 1.5,
    noise_std: float = 0.1,
    seed: int = 0,
    channel_names: Sequence[str] | None = None,
) -> str:
    """Write a stand-in synthetic datalist: every image of ``section`` blurred and noised, deterministically.

    Each channel ``x`` of each image becomes ``gaussian_filter(x, blur_sigma) + noise_std * std(x) * n`` with
    ``n ~ N(0, 1)`` from ``numpy.random.default_rng(seed + index)``; the class of the source is kept. The files and
    ``<output_dir>/datalist.json`` are written with :class:`~common.handlers.SyntheticDatalistWriter` (generator
    ``phantom-degradation``, no checkpoint). Nothing is done when the datalist already exists. No collective is
    run: in a distributed run call it on one rank only (then a barrier) so the files are written once.

    Args:
        datalist: the real datalist JSON.
        output_dir: folder of the degraded images and their ``datalist.json``.
        section: the section of ``datalist`` to degrade.
        blur_sigma: standard deviation of the Gaussian blur, in voxels.
        noise_std: standard deviation of the added noise, relative to each channel's standard deviation.
        seed: base seed of the noise (``seed + index`` per image).
        channel_names: names of the channels (a multi-channel image is written as one file per channel).

    Returns:
        the path of the synthetic datalist.
    """
    path = os.path.join(output_dir, "datalist.json")
    if os.path.isfile(path):
        return path
    entries = load_decathlon_datalist(datalist, True, section)
    writer = SyntheticDatalistWriter(
        output_dir,
        bundle_name="phantom-degradation",
        bundle_version=f"blur{blur_sigma}-noise{noise_std}-seed{seed}",
        checkpoint=None,
        source_key="source",
        copy_keys=("class",),
        channel_names=channel_names,
        prefix="degraded",
        extra_entry={"method": "degradation"},
    )
    base = os.path.dirname(os.path.abspath(datalist))
    os.makedirs(output_dir, exist_ok=True)
    for index, entry in enumerate(entries):
        files = entry["image"] if isinstance(entry["image"], (list, tuple)) else [entry["image"]]
        rng = np.random.default_rng(seed + index)
        channels = []
        for f in files:
            x = np.asarray(nib.load(f).get_fdata(), dtype=np.float32)
            y = gaussian_filter(x, blur_sigma) + noise_std * float(x.std()) * rng.standard_normal(x.shape)
            channels.append(y.astype(np.float32))
        source = [os.path.relpath(f, base) for f in files]
        writer.write_sample({"pred": np.stack(channels, 0), "source": source, "class": entry.get("class")})
    # one process writes the whole set (rank 0 alone in distributed runs): write the datalist without
    # ``writer.write_datalist()``, whose entry gathering is a collective the other ranks never join
    atomic_write_json(writer.datalist(), path)
    return path
