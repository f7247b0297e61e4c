"""DiscriminatorMapProbe: discriminators that read only the map, or only the image, are told apart."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from common.engines import CycleGANStep
from common.evaluation import DiscriminatorMapProbe
from common.utils.errors import UserInputError


class Shift(nn.Module):
    """A generator: adds a learnable constant (0.5 at start), so generated images are brighter than real ones."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return x + self.offset


class MapOf(nn.Module):
    """An attention network with a constant map: 0.1 for A_N, 0.6 for A_P."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, x):
        return self.value.expand(x.shape[0], 1, *x.shape[2:])


class Reads(nn.Module):
    """A discriminator that scores only the map (``"map"``: its mean) or only the image (``"image"``: its mean)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x, attention_map=None):
        return (attention_map if self.what == "map" else x).mean((1, 2, 3)) + self.unused


def _step(reads: str, real_attention_map: str = "own", guided: bool = True) -> CycleGANStep:
    gen_n, gen_p, attn_n, attn_p = Shift(), Shift(), MapOf(0.1), MapOf(0.6)
    disc_n, disc_p = Reads(reads), Reads(reads)
    g = torch.optim.SGD([*gen_n.parameters(), *gen_p.parameters(), *attn_n.parameters(), *attn_p.parameters()], 0.1)
    d = torch.optim.SGD([*disc_n.parameters(), *disc_p.parameters()], 0.1)
    return CycleGANStep(
        gen_n,
        gen_p,
        disc_n,
        disc_p,
        g,
        d,
        attn_n=attn_n,
        attn_p=attn_p,
        attention_guided=guided,
        real_attention_map=real_attention_map,
        lambda_attention=0.0,
    )


def _batches(n: int = 3) -> list[dict[str, torch.Tensor]]:
    return [{"positive": torch.zeros(2, 1, 8, 8), "negative": torch.zeros(2, 1, 8, 8)} for _ in range(n)]


def test_a_discriminator_reading_only_the_map_has_its_whole_gap_in_the_map(tmp_path):
    out = DiscriminatorMapProbe(_step("map"), _batches(), tmp_path / "p.json", num_batches=2).run()
    # D_N: real n carries A_P(n) = 0.6, the fake G_N(p) carries A_N(p) = 0.1 (composited with a 0.1 map)
    assert out["disc_n/real_own_map"] == pytest.approx(0.6) and out["disc_n/fake_own_map"] == pytest.approx(0.1)
    assert out["disc_n/map_gap"] == pytest.approx(0.5) and out["disc_n/image_gap"] == pytest.approx(0.0)
    assert out["disc_p/map_gap"] == pytest.approx(-0.5) and out["disc_p/image_gap"] == pytest.approx(0.0)
    assert out["map_mean/attn_n"] == pytest.approx(0.1) and out["map_mean/attn_p"] == pytest.approx(0.6)
    assert out["num_batches"] == 2 and json.loads((tmp_path / "p.json").read_text())["real_attention_map"] == "own"


def test_a_discriminator_reading_only_the_image_has_no_map_gap(tmp_path):
    out = DiscriminatorMapProbe(_step("image"), _batches(), tmp_path / "p.json").scores()
    # real images are 0, a composite is map * (0 + 0.5): 0.05 for G_N^A (map 0.1), 0.3 for G_P^A (map 0.6)
    assert out["disc_n/map_gap"] == pytest.approx(0.0) and out["disc_n/image_gap"] == pytest.approx(-0.05)
    assert out["disc_p/image_gap"] == pytest.approx(-0.3)
    assert out["disc_n/fake_with_real_map"] == pytest.approx(out["disc_n/fake_own_map"])


def test_generated_pairing_leaves_nothing_for_the_map_to_tell(tmp_path):
    out = DiscriminatorMapProbe(_step("map", "generated"), _batches(), tmp_path / "p.json").scores()
    for name in ("disc_n", "disc_p"):
        assert out[f"{name}/map_gap"] == pytest.approx(0.0)
        assert out[f"{name}/real_own_map"] == pytest.approx(out[f"{name}/fake_own_map"])


def test_checkpoint_networks_are_loaded_and_errors_are_named(tmp_path):
    trained = _step("map")
    trained.networks["attn_p"].value.data.fill_(0.9)
    torch.save({name: net.state_dict() for name, net in trained.networks.items()}, tmp_path / "checkpoint_7.pt")
    probe = DiscriminatorMapProbe(
        _step("map"), _batches(), tmp_path / "p.json", checkpoint=tmp_path / "checkpoint_7.pt"
    )
    out = probe.run()
    assert out["map_mean/attn_p"] == pytest.approx(0.9) and out["checkpoint"] == "checkpoint_7.pt"
    with pytest.raises(UserInputError, match="checkpoint_9.pt: no such checkpoint"):
        DiscriminatorMapProbe(
            _step("map"), _batches(), tmp_path / "q.json", checkpoint=tmp_path / "checkpoint_9.pt"
        ).run()
    torch.save({"gen_n": trained.networks["gen_n"].state_dict()}, tmp_path / "checkpoint_8.pt")
    with pytest.raises(UserInputError, match="no 'gen_p'"):
        DiscriminatorMapProbe(
            _step("map"), _batches(), tmp_path / "q.json", checkpoint=tmp_path / "checkpoint_8.pt"
        ).run()
    with pytest.raises(UserInputError, match="attention-guided"):
        DiscriminatorMapProbe(_step("map", guided=False), _batches(), tmp_path / "q.json")
