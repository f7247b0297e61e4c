"""Where a conditional generator puts the lesions its bounding boxes ask for (CPGGAN, Han's thesis sec. 5.2.2 and
5.3.1): the change of the image inside and outside the boxes against a lesion-free baseline."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.engines.step import unwrap
from common.evaluation.report import format_table, write_report

__all__ = ["BoxPlacementEvaluation", "box_placement_statistics"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def box_placement_statistics(
    generator: nn.Module, conditions: torch.Tensor, latents: torch.Tensor, batch_size: int = 16
) -> dict[str, float]:
    """Where a conditional generator puts what its boxes ask for (CPGGAN, sec. 5.2.2 and 5.3.1).

    For each latent ``z`` and conditioning image ``c`` the change ``|G(z, c) - G(z, 0)|`` against the lesion-free
    baseline (the same latent with an all-black condition) is averaged inside the boxes (``c > 0.5``) and outside;
    a generator that places lesions in the boxes changes the image inside them more than outside.

    Args:
        generator: conditional generator called as ``generator(z, c)`` (last stage).
        conditions: ``(N, 1, *spatial)`` conditioning images.
        latents: ``(N, latent_size)``.
        batch_size: samples per forward pass.

    Returns:
        ``{"box_change_inside", "box_change_outside", "box_change_ratio"}`` (means over the samples with boxes).
    """
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    inside, outside = [], []
    for i in range(0, conditions.shape[0], batch_size):
        c = conditions[i : i + batch_size].to(device).float()
        z = latents[i : i + batch_size].to(device).float()
        change = (generator(z, c) - generator(z, torch.zeros_like(c))).abs().mean(dim=1, keepdim=True)
        mask = F.interpolate(c, size=list(change.shape[2:]), mode="area") > 0.5
        for m, d in zip(mask, change):
            if m.any() and (~m).any():
                inside.append(d[m].mean().item())
                outside.append(d[~m].mean().item())
    generator.train(was_training)
    if not inside:
        raise ValueError("no condition image has both box and background voxels.")
    mean_in, mean_out = sum(inside) / len(inside), sum(outside) / len(outside)
    return {
        "box_change_inside": mean_in,
        "box_change_outside": mean_out,
        "box_change_ratio": mean_in / max(mean_out, 1e-12),
    }


class BoxPlacementEvaluation:
    """Lesion placement statistic of a CPGGAN, merged into a metrics JSON file (see :func:`box_placement_statistics`).

    Args:
        generator: the conditional generator (weights loaded from ``checkpoint``).
        checkpoint: the generator's ``state_dict`` file (``models/model.pt``).
        samples: per-sample dicts with ``condition`` and ``latent`` (:func:`common.transforms.condition_samples`).
        output_file: JSON file whose content (if any) is kept and extended with the statistic.
        device: evaluation device.
    """

    def __init__(
        self,
        generator: nn.Module,
        checkpoint: str,
        samples: Sequence[Mapping[str, Any]],
        output_file: str,
        device: str | torch.device = "cpu",
    ) -> None:
        self.generator = generator
        self.checkpoint = checkpoint
        self.samples = samples
        self.output_file = output_file
        self.device = torch.device(device)

    def run(self) -> dict[str, float]:
        """Load the generator, compute the statistic, merge it into ``output_file`` and log it.

        Returns:
            the statistic (see :func:`box_placement_statistics`).
        """
        gen = unwrap(self.generator).to(self.device)
        gen.load_state_dict(torch.load(self.checkpoint, map_location=self.device, weights_only=True))
        conditions = torch.stack([torch.as_tensor(s["condition"]) for s in self.samples])
        latents = torch.stack([torch.as_tensor(s["latent"]) for s in self.samples])
        stats = box_placement_statistics(gen, conditions, latents)
        results = {}
        if os.path.isfile(self.output_file):
            with open(self.output_file) as f:
                results = json.load(f)
        results.update(stats)
        write_report(results, self.output_file, format_table(stats), "box placement", log=logger)
        return stats
