import pytest
from common.data import UnpairedDataset, split_by_class


def test_split_by_class_and_unpaired_items():
    entries = [{"image": f"p{i}", "label": f"m{i}", "class": 1} for i in range(3)]
    entries += [{"image": f"n{i}", "label": f"z{i}", "class": 0} for i in range(5)]
    pos, neg = split_by_class(entries)
    assert [e["image"] for e in pos] == ["p0", "p1", "p2"] and len(neg) == 5
    ds = UnpairedDataset(entries, transform_positive=lambda d: d, seed=0)
    assert len(ds) == 3
    items = [ds[i] for i in range(6)]
    assert [it["positive"] for it in items] == ["p0", "p1", "p2", "p0", "p1", "p2"]
    assert [it["mask"] for it in items[:3]] == ["m0", "m1", "m2"]
    assert {it["negative"] for it in items} <= {f"n{i}" for i in range(5)}
    assert len({it["negative"] for it in [ds[0] for _ in range(30)]}) > 1  # negatives are re-drawn


def test_missing_domain_is_an_error():
    with pytest.raises(ValueError, match="both domains"):
        split_by_class([{"image": "a", "class": 1}])
    with pytest.raises(ValueError, match="both domains"):
        UnpairedDataset([{"image": "a", "class": 0}], transform_positive=lambda d: d)
