"""Evaluation of a P <-> N translation model (CDA-GAN sec. 3.1-3.2 and the issue's evaluation needs).

- realism: FID and KID of translated images against real images of the target domain (``fid_translated_negatives``:
  ``G_N(p)`` against the real negatives; ``..._positives``: ``G_P(n)`` against the real positives), on a named
  extractor, with two references on the same extractor and images: ``*_untranslated_*``, the source images as they
  are against the same target images (what doing nothing scores), and ``*_real_vs_real_*``, one seeded half of the
  target domain's images against the other. KID is unbiased in the number of images, so its real-vs-real value
  (about 0) compares with the translated one; FID is biased upwards with fewer images, and its real-vs-real
  reference has half as many on each side;
- attention: Dice and IoU of the P -> N attention map (thresholded) against the tumour mask (sec. 3.1.2 says
  "the attention map of P -> N translation is exactly the whole lesion region");
- locality: mean absolute change ``|p - G_N(p)|`` inside and outside the tumour mask, and their ratio: how much of
  the translation happens where the tumour is.

The per-image measures are the pure functions :func:`common.metrics.attention_dice_iou` and
:func:`common.metrics.change_inside_outside`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from common.evaluation.report import write_report
from common.metrics.features import build_feature_extractor, extract_features
from common.metrics.generative import fid, kid
from common.metrics.translation import attention_dice_iou, change_inside_outside
from common.networks.cyclegan import CrossDomainTranslator

__all__ = ["TranslationEvaluation"]

logger = logging.getLogger(__name__)


class TranslationEvaluation:
    """Evaluate G_N/G_P (with their attention) on held-out entries and write a JSON file and a table.

    Args:
        entries: datalist entries with ``image``, ``class`` and, for positives, ``label`` (tumour mask).
        transform: dictionary transform giving ``image`` ``(C, *spatial)`` in [-1, 1] and ``label`` ``(1, *spatial)``.
        gen_n, gen_p: generators P -> N and N -> P (an image, or ``(image, mask)`` when the mask is shared).
        attn_n, attn_p: separate attention networks, or ``None``.
        spatial_dims, in_channels: image geometry, for the feature extractor.
        output_file: the JSON file.
        weights_path, arch: the feature extractor (``None``: the named fallback).
        device: evaluation device.
        class_key, positive: which entries are positives.
        threshold: binarisation threshold of the attention maps.
        extra: more key-values for the JSON file.
        seed: seed of the real-vs-real halves and of the KID subsets.
    """

    def __init__(
        self,
        entries: Sequence[Mapping[str, Any]],
        transform: Callable[[dict], dict],
        gen_n: nn.Module,
        gen_p: nn.Module,
        spatial_dims: int,
        in_channels: int,
        output_file: str | os.PathLike,
        attn_n: nn.Module | None = None,
        attn_p: nn.Module | None = None,
        weights_path: str | None = None,
        arch: str = "resnet18",
        device: str | torch.device = "cpu",
        class_key: str = "class",
        positive: int = 1,
        threshold: float = 0.5,
        extra: dict | None = None,
        seed: int = 0,
    ) -> None:
        self.entries = [dict(e) for e in entries]
        self.transform = transform
        self.translator = CrossDomainTranslator(gen_n, gen_p, attn_n, attn_p)
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        self.output_file = str(output_file)
        self.weights_path, self.arch = weights_path, arch
        self.device = torch.device(device)
        self.class_key, self.positive, self.threshold = class_key, positive, threshold
        self.extra = dict(extra or {})
        self.seed = int(seed)

    def _kid(self, real_f: torch.Tensor, other_f: torch.Tensor) -> float:
        """KID mean over 50 subsets of the smaller set's size."""
        return kid(real_f, other_f, num_subsets=50, subset_size=min(len(real_f), len(other_f)), seed=self.seed)[0]

    def _load(self, entry: Mapping[str, Any]) -> dict:
        item = self.transform(dict(entry))
        return {k: (v.as_tensor() if hasattr(v, "as_tensor") else v) for k, v in item.items()}

    @torch.no_grad()
    def run(self) -> dict[str, Any]:
        """Translate every entry, compute the metrics, write the JSON file and log the table.

        Returns:
            the results written to ``output_file``.
        """
        self.translator.eval()
        real = {"p": [], "n": []}
        fake = {"p": [], "n": []}
        dice, iou, inside, outside = [], [], [], []
        for entry in self.entries:
            item = self._load(entry)
            x = item["image"].float().unsqueeze(0).to(self.device)
            if int(entry[self.class_key]) == self.positive:
                translated, attention = self.translator(x, "n")
                real["p"].append(x.cpu())
                fake["n"].append(translated.cpu())
                if "label" in item:
                    mask = item["label"].float().unsqueeze(0).to(self.device)
                    if attention is not None:
                        d, i = attention_dice_iou(attention, mask, self.threshold)
                        dice.append(d)
                        iou.append(i)
                    a, b = change_inside_outside(x, translated, mask)
                    inside.append(a)
                    outside.append(b)
            else:
                translated, _ = self.translator(x, "p")
                real["n"].append(x.cpu())
                fake["p"].append(translated.cpu())
        if not real["p"] or not real["n"]:
            raise ValueError("evaluation needs positives and negatives in the evaluated entries.")
        extractor = build_feature_extractor(
            self.spatial_dims, self.in_channels, weights_path=self.weights_path, arch=self.arch
        ).to(self.device)
        results: dict[str, Any] = {"feature_extractor": extractor.name}
        features = {
            (kind, domain): extract_features(extractor, torch.cat(images[domain]), device=self.device)
            for kind, images in (("real", real), ("fake", fake))
            for domain in ("n", "p")
        }
        source = {"n": "p", "p": "n"}
        # against the real images of each target domain: the translations, the untranslated source images, and
        # (real-vs-real) one seeded half of the target images against the other
        for domain, target in (("n", "negatives"), ("p", "positives")):
            real_f = features["real", domain]
            compared = {"translated": features["fake", domain], "untranslated": features["real", source[domain]]}
            for kind, other in compared.items():
                results[f"fid_{kind}_{target}"] = fid(real_f, other)
                results[f"kid_{kind}_{target}"] = self._kid(real_f, other)
            order = torch.randperm(len(real_f), generator=torch.Generator().manual_seed(self.seed))
            half = len(real_f) // 2
            if half >= 2:
                first, second = real_f[order[:half]], real_f[order[half : 2 * half]]
                results[f"fid_real_vs_real_{target}"] = fid(first, second)
                results[f"kid_real_vs_real_{target}"] = self._kid(first, second)
        mean = lambda v: float(sum(v) / len(v)) if v else float("nan")  # noqa: E731
        results.update(
            {
                "attention_dice": mean(dice),
                "attention_iou": mean(iou),
                "change_inside_tumour": mean(inside),
                "change_outside_tumour": mean(outside),
                "num_positives": len(real["p"]),
                "num_negatives": len(real["n"]),
            }
        )
        results["change_ratio_inside_outside"] = results["change_inside_tumour"] / max(
            results["change_outside_tumour"], 1e-12
        )
        results.update(self.extra)
        write_report(results, self.output_file, title="translation evaluation", log=logger)
        return results
