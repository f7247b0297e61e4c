"""Command line front end of :py:mod:`common.data.phantoms`: generate deterministic phantom data sets.

Examples::

    python scripts/make_phantoms.py brain_mr --output_dir /tmp/brain_2d
    python scripts/make_phantoms.py brain_mr --output_dir /tmp/brain_3d --spatial_dims 3
    python scripts/make_phantoms.py chest_ct --output_dir /tmp/chest --num_cases 12
    python scripts/make_phantoms.py brain_metastases --output_dir /tmp/mets --max_lesions 4
    python scripts/make_phantoms.py prepare --dataset_dir /tmp/brain_2d --kind brain_mr_2d
    python scripts/make_phantoms.py preview --config_file bundles/dcgan_wgan/configs/train.yaml \
        --output bundles/dcgan_wgan/docs/phantom_grid.png --num 16

Each command prints the path of the datalist JSON (``preview``: of the PNG file).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import fire
import numpy as np
import torch
from common.data.phantoms import make_brain_metastases, make_brain_mr, make_chest_ct, prepare_phantom
from common.handlers.sample_grid import make_grid, save_png
from monai.bundle import ConfigWorkflow
from monai.data import load_decathlon_datalist

logger = logging.getLogger(__name__)


def _printing_path(fn: Callable[..., Any]) -> Callable[..., str]:
    """``fn`` with its signature and docstring (shown by ``--help``), returning the datalist path as a string."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> str:
        return str(fn(*args, **kwargs))

    return command


def preview(
    config_file: str | Sequence[str],
    output: str,
    num: int = 16,
    section: str = "training",
    seed: int = 0,
    nrow: int | None = None,
    bundle_root: str | None = None,
    preprocessing: str = "train#preprocessing",
) -> str:
    """Draw real images of a bundle's data set, after the bundle's own preprocessing, as one PNG grid.

    The bundle's ``initialize`` expressions run first (they create the phantom data set on first use and validate
    the datalist); ``num`` entries of the datalist section ``section``, chosen at random with ``seed`` (in datalist
    order), go through the bundle's ``preprocessing`` transform and are tiled by
    :func:`common.handlers.sample_grid.make_grid` exactly as the training's sample grids: one strip of channels per
    image, ``nrow`` images per row (default ``ceil(sqrt(num))``, as the sample grid handler), each tile scaled
    between its 1st and 99th percentiles.

    Args:
        config_file: the bundle's training config, or a list of configs merged in order (variants after it).
        output: path of the PNG file to write.
        num: number of images (all of the section when it has fewer).
        section: datalist section (``training``, ``validation``, ``test``).
        seed: seed of the random choice of the images.
        nrow: images per grid row.
        bundle_root: overrides the config's ``bundle_root`` (where the phantom data set lives or is created).
        preprocessing: config id of the transform applied to each datalist entry; its output holds ``image``
            ``(C, H, W[, D])``.

    Returns:
        The path of the PNG file.
    """
    override = {} if bundle_root is None else {"bundle_root": os.path.abspath(bundle_root)}
    workflow = ConfigWorkflow(config_file=config_file, workflow_type=None, logging_file=False, **override)
    workflow.initialize()
    transform = workflow.parser.get_parsed_content(preprocessing)
    entries = load_decathlon_datalist(workflow.parser.get_parsed_content("datalist"), True, section)
    chosen = np.sort(np.random.default_rng(seed).choice(len(entries), size=min(num, len(entries)), replace=False))
    images = torch.stack([torch.as_tensor(transform(dict(entries[i]))["image"]) for i in chosen])
    save_png(make_grid(images, nrow=nrow), output)
    logger.info("wrote %d %s images %s to %s", len(chosen), section, tuple(images.shape[1:]), output)
    return str(output)


COMMANDS = {
    "brain_mr": _printing_path(make_brain_mr),
    "chest_ct": _printing_path(make_chest_ct),
    "brain_metastases": _printing_path(make_brain_metastases),
    "prepare": _printing_path(prepare_phantom),
    "preview": preview,
}

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fire.Fire(COMMANDS)
