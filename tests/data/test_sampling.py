"""Class balancing and synthetic mixing of classifier training sets (CDA-GAN Table 2, Algorithm 2, sec. 5.6; Han's
thesis Table 2: many more synthetic than real images)."""

from collections import Counter

import pytest
import torch
from common.data import balance_classes, mix_synthetic


def _entries(n_pos, n_neg):
    return [{"image": f"/d/img{i}.nii", "class": int(i < n_pos)} for i in range(n_pos + n_neg)]


def test_balance_classes():
    entries = _entries(3, 10)
    over = balance_classes(entries, "oversample", seed=0)
    assert Counter(e["class"] for e in over) == {1: 10, 0: 10} and over[:13] == entries
    under = balance_classes(entries, "undersample", seed=0)
    assert Counter(e["class"] for e in under) == {1: 3, 0: 3}
    assert balance_classes(entries, "undersample", seed=0) == under
    assert balance_classes(entries, "none") == entries
    with pytest.raises(ValueError, match="Unknown class balancing"):
        balance_classes(entries, "smote")


@pytest.mark.parametrize("ratio", [0.2, 0.5, 1.0])
def test_mix_synthetic_ratio_and_seed(ratio):
    real = _entries(5, 5)
    synthetic = [{"image": f"/s/syn{i}.nii", "class": i % 2, "source": f"/d/img{i}.nii"} for i in range(10)]
    mixed = mix_synthetic(real, synthetic, ratio=ratio, seed=1)
    assert len(mixed) == 10 + round(ratio * 10)
    assert mixed[:10] == real and all(e["synthetic"] for e in mixed[10:])
    assert mix_synthetic(real, synthetic, ratio=ratio, seed=1) == mixed


def test_mix_synthetic_rejects_bad_sets():
    real = _entries(2, 2)
    with pytest.raises(ValueError, match="no 'class' label"):
        mix_synthetic(real, [{"image": "/s/a.nii"}], source_name="gen.json")
    with pytest.raises(ValueError, match="leak"):
        mix_synthetic(
            real, [{"image": "/s/a.nii", "class": 0, "source": "/t/test0.nii"}], forbidden_sources=["/t/test0.nii"]
        )
    with pytest.raises(ValueError, match="paired"):
        mix_synthetic(real, [{"image": "/s/a.nii", "class": 0, "source": "/x/other.nii"}], paired=True)
    for ratio in (0.0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="synthetic_ratio must be a positive number"):
            mix_synthetic(real, [{"image": "/s/a.nii", "class": 0}], ratio=ratio)
    with pytest.raises(ValueError, match="no synthetic entry"):
        mix_synthetic(real, [], ratio=1.0, source_name="gen.json")


def test_mix_synthetic_paired_keeps_translations_of_training_images():
    real = _entries(2, 2)
    synthetic = [
        {"image": f"/s/syn{i}.nii", "class": 1 - real[i % 4]["class"], "source": f"/d/img{i}.nii"} for i in range(8)
    ]
    mixed = mix_synthetic(real, synthetic, ratio=1.0, paired=True)
    assert sorted(e["source"] for e in mixed[4:]) == [f"/d/img{i}.nii" for i in range(4)]


def test_mix_synthetic_ratio_above_one_draws_distinct_images_when_there_are_enough(caplog):
    """Han (003 sec. 4.2.4, Table 2): + 200k generated images to 8,429 real ones, here 24 per real image."""
    real = _entries(2, 3)
    synthetic = [{"image": f"/s/syn{i}.nii", "class": i % 2} for i in range(200)]
    mixed = mix_synthetic(real, synthetic, ratio=24.0, seed=0)
    drawn = [e["image"] for e in mixed[5:]]
    assert mixed[:5] == real and len(drawn) == 120 and len(set(drawn)) == 120  # without replacement
    assert mix_synthetic(real, synthetic, ratio=24.0, seed=0) == mixed
    assert "with replacement" not in caplog.text
    # fewer synthetic images than asked: drawn with replacement, and the log says so and how to avoid it
    with caplog.at_level("WARNING", logger="common.data"):
        small = mix_synthetic(real, synthetic[:50], ratio=24.0, seed=0)
    assert len(small) == 5 + 120 and len({e["image"] for e in small[5:]}) <= 50
    assert "drawing with replacement (generate at least 120 images" in caplog.text


def test_conditional_latent_samples():
    from common.data import conditional_latent_samples

    entries = [{"image": "a.nii.gz", "class": 0}, {"image": "b.nii.gz", "class": 1}]
    out = conditional_latent_samples(entries, 3, 4, seed=1)
    assert [(e["image"], e["class"], e["source_index"], e["sample_index"]) for e in out] == [
        ("a.nii.gz", 0, 0, 0), ("a.nii.gz", 0, 0, 1), ("a.nii.gz", 0, 0, 2),
        ("b.nii.gz", 1, 1, 0), ("b.nii.gz", 1, 1, 1), ("b.nii.gz", 1, 1, 2),
    ]  # fmt: skip
    z = torch.stack([e["z"] for e in out])
    assert z.shape == (6, 4) and len({tuple(v.tolist()) for v in z}) == 6
    again = conditional_latent_samples(entries, 3, 4, seed=1)
    assert all(torch.equal(a["z"], b["z"]) for a, b in zip(out, again))
    assert "z" not in entries[0]
    with pytest.raises(ValueError):
        conditional_latent_samples(entries, 0, 4)
