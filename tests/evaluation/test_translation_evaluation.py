"""TranslationEvaluation's references: untranslated source images and real-vs-real halves of the target domain."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from common.evaluation import TranslationEvaluation


def _entries(count: int, size: int = 32) -> list[dict]:
    """Negatives: smooth noise; positives: the same kind of noise plus a bright disc (with its mask)."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 5) ** 2).float()
    entries = []
    for i in range(count):
        image = 0.3 * torch.randn(1, size, size, generator=g)
        entry = {"class": i % 2}
        if entry["class"] == 1:
            image = image + 1.5 * disc
            entry["label"] = disc[None].clone()
        entry["image"] = image.clamp(-1, 1)
        entries.append(entry)
    return entries


class _Brighten(nn.Module):
    """A fixed 'translation' N -> P: adds the disc everywhere (to compare against doing nothing)."""

    def __init__(self, disc: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("disc", disc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1.5 * self.disc).clamp(-1, 1)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    entries = _entries(48)
    disc = entries[1]["label"][None]
    out = tmp_path_factory.mktemp("translation") / "metrics.json"
    evaluation = TranslationEvaluation(
        entries, dict, gen_n=nn.Identity(), gen_p=_Brighten(disc), spatial_dims=2, in_channels=1, output_file=out
    )
    return evaluation.run(), json.loads(out.read_text())


def test_identity_translation_scores_like_doing_nothing(results):
    values, written = results
    # G_N is the identity: its translated negatives are the untranslated positives
    assert values["fid_translated_negatives"] == pytest.approx(values["fid_untranslated_negatives"])
    assert values["kid_translated_negatives"] == pytest.approx(values["kid_untranslated_negatives"])
    for key in ("fid_real_vs_real_negatives", "kid_real_vs_real_positives"):
        assert np.isfinite(written[key]), key


def test_references_order_the_translations(results):
    values, _ = results
    # the domains differ: doing nothing is far from the target, real-vs-real (KID, unbiased) is close to 0
    for target in ("negatives", "positives"):
        assert values[f"kid_untranslated_{target}"] > 10 * abs(values[f"kid_real_vs_real_{target}"]), target
    # the fixed N -> P 'translation' adds the disc: closer to real positives than the untranslated negatives
    assert values["kid_translated_positives"] < values["kid_untranslated_positives"]
