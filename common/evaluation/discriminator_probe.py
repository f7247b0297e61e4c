"""Does an attention-guided discriminator judge the image, or only the attention map beside it? (CDA-GAN eq. 7-8)

A guided discriminator sees an image concatenated with a detached attention map (CDA-GAN sec. 3.1.2, eq. 7-8;
:class:`~common.engines.CycleGANStep`). If the maps that real images carry differ in distribution from those that
generated images carry, the discriminator can tell them apart from the map alone, and the generators, which cannot
change a detached map, get no useful adversarial feedback on the image. This probe measures it on a trained step,
with its discriminators as they are in a training checkpoint. For each discriminator it records the mean output
(``D``: its raw score, e.g. 1 = real and 0 = generated under the least-squares loss) over a few batches of
training data for four inputs:

- ``real_own_map`` / ``fake_own_map``: a real and a generated image, each with the map it carries in training
  (``real_attention_map`` of the step decides the real one's; with ``"generated"`` it is the map of the batch's
  generated image, where training takes that of the pooled one it is compared with);
- ``real_with_fake_map`` / ``fake_with_real_map``: the same images with their maps swapped;

and two differences that split the discriminator's real-vs-generated gap:

- ``image_gap = D(real, fake map) - D(fake, fake map)``: the part the image explains (same maps);
- ``map_gap = D(real, real map) - D(real, fake map)``: the part the map explains (same image).

A discriminator that decides by the map has ``map_gap`` close to its whole gap and ``image_gap`` close to 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import torch
from common.evaluation.report import write_report
from common.utils.errors import UserInputError

__all__ = ["DiscriminatorMapProbe"]

logger = logging.getLogger(__name__)

#: the four inputs of each discriminator, in the order of the report
INPUTS = ("real_own_map", "fake_own_map", "real_with_fake_map", "fake_with_real_map")


class DiscriminatorMapProbe:
    """Scores of a trained CycleGAN-family step's guided discriminators with their attention maps kept and swapped.

    Args:
        step: a :class:`~common.engines.CycleGANStep` with ``attention_guided=True``.
        data: batches of training data (the step's keys: positives, negatives).
        output_file: JSON report (written atomically).
        checkpoint: a training checkpoint (``checkpoint_<iteration>.pt``) whose networks are loaded into the step
            first (``weights_only=True``); ``None``: the step's networks as they are.
        num_batches: how many batches of ``data`` to average over.
        extra: extra fields copied into the report (bundle, version, method).

    Raises:
        UserInputError: the step's discriminators are not guided, or the checkpoint is missing or lacks a network.
    """

    def __init__(
        self,
        step: Any,
        data: Iterable[Any],
        output_file: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        num_batches: int = 8,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if not getattr(step, "attention_guided", False):
            raise UserInputError(
                "the discriminator map probe needs attention-guided discriminators (attention_guided)."
            )
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}.")
        self.step, self.data, self.output_file = step, data, output_file
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.num_batches = int(num_batches)
        self.extra = dict(extra or {})

    def load(self) -> None:
        """Load every network of the step from :attr:`checkpoint`."""
        if self.checkpoint is None:
            return
        if not os.path.isfile(self.checkpoint):
            raise UserInputError(
                f"{self.checkpoint}: no such checkpoint; train first (the probe reads discriminators)."
            )
        state = torch.load(self.checkpoint, map_location=self.step.device, weights_only=True)
        for name, net in self.step.networks.items():
            if name not in state:
                raise UserInputError(f"{self.checkpoint}: no '{name}' in this checkpoint (keys: {sorted(state)}).")
            getattr(net, "module", net).load_state_dict(state[name])

    @torch.no_grad()
    def scores(self) -> dict[str, float]:
        """Mean discriminator scores over ``num_batches`` batches, and the image and map gaps (module docstring).

        Returns:
            ``{"disc_n/real_own_map": ..., ..., "disc_p/map_gap": ..., "map_mean/attn_n": ..., ...}``.
        """
        step = self.step
        was_training = {name: net.training for name, net in step.networks.items()}
        for net in step.networks.values():
            net.eval()
        sums: dict[str, float] = {}
        count = 0
        try:
            for batch in self.data:
                if count == self.num_batches:
                    break
                real_p, real_n = step.images(batch, step.positive_key), step.images(batch, step.negative_key)
                fake_n, map_p = step.translate(real_p, "n")  # A_N(p): the map of the P -> N translation
                fake_p, map_n = step.translate(real_n, "p")  # A_P(n)
                # D_N: real negatives, fakes G_N(p) with A_N(p); D_P: real positives, fakes G_P(n) with A_P(n)
                for name, real, fake, fake_map, real_map in (
                    ("disc_n", real_n, fake_n, map_p, step.real_map(map_n, map_p)),
                    ("disc_p", real_p, fake_p, map_n, step.real_map(map_p, map_n)),
                ):
                    disc = step.module(name, frozen=True)
                    values = {
                        "real_own_map": disc(real, attention_map=real_map),
                        "fake_own_map": disc(fake, attention_map=fake_map),
                        "real_with_fake_map": disc(real, attention_map=fake_map),
                        "fake_with_real_map": disc(fake, attention_map=real_map),
                    }
                    for key, value in values.items():
                        sums[f"{name}/{key}"] = sums.get(f"{name}/{key}", 0.0) + float(value.float().mean())
                sums["map_mean/attn_n"] = sums.get("map_mean/attn_n", 0.0) + float(map_p.float().mean())
                sums["map_mean/attn_p"] = sums.get("map_mean/attn_p", 0.0) + float(map_n.float().mean())
                count += 1
        finally:
            for name, net in step.networks.items():
                net.train(was_training[name])
        if count == 0:
            raise UserInputError("the discriminator map probe got no batch of data.")
        out = {key: value / count for key, value in sums.items()}
        for name in ("disc_n", "disc_p"):
            out[f"{name}/image_gap"] = out[f"{name}/real_with_fake_map"] - out[f"{name}/fake_own_map"]
            out[f"{name}/map_gap"] = out[f"{name}/real_own_map"] - out[f"{name}/real_with_fake_map"]
        out["num_batches"] = count
        return out

    def run(self) -> dict[str, Any]:
        """Load the checkpoint, probe, write the JSON report and log a table; returns the report."""
        self.load()
        results = {**self.scores(), "real_attention_map": self.step.real_attention_map, **self.extra}
        if self.checkpoint is not None:
            results["checkpoint"] = os.path.basename(self.checkpoint)
        rows = ["| discriminator | " + " | ".join(INPUTS) + " | image_gap | map_gap |", "|---" * 7 + "|"]
        for name in ("disc_n", "disc_p"):
            keys = (*INPUTS, "image_gap", "map_gap")
            rows.append(f"| {name} | " + " | ".join(f"{results[f'{name}/{k}']:.3f}" for k in keys) + " |")
        write_report(results, self.output_file, table="\n".join(rows), title="discriminator map probe", log=logger)
        return results
