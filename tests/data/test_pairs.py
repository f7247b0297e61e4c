"""Tests of the same-class pair dataset of GA-UNet (paper 002, eq. 2-4: the critic sees (x_i, x_j) of one class)."""

from collections import Counter

import numpy as np
import pytest
import torch
from common.data import DatalistError, SameClassPairDataset
from common.utils import object_rng_states, set_object_rng_states
from monai.data import DataLoader
from monai.transforms import Compose, Lambdad, RandFlipd


def entries(sizes=(3, 2, 4)):
    out = []
    for label, n in enumerate(sizes):
        out += [{"image": f"c{label}_{k}.nii.gz", "class": label} for k in range(n)]
    return out


def partners(ds, n_draws=1):
    return [ds[i]["pair"] for _ in range(n_draws) for i in range(len(ds))]


def test_pairs_are_same_class_and_never_the_same_entry():
    data = entries()
    ds = SameClassPairDataset(data, seed=3)
    seen = Counter()
    for _ in range(40):
        for i in range(len(ds)):
            item = ds[i]
            assert item["image"] == data[i]["image"] and item["class"] == data[i]["class"]
            assert item["pair"].startswith(f"c{item['class']}_"), item  # x_j of another class fails here
            assert item["pair"] != item["image"]
            assert item["image_source"] == item["image"] and item["pair_source"] == item["pair"]
            seen[(item["image"], item["pair"])] += 1
    # every class is drawn, and every ordered same-class pair of distinct entries occurs (uniform over the others)
    expected = {(a["image"], b["image"]) for a in data for b in data if a["class"] == b["class"] and a is not b}
    assert set(seen) == expected
    assert {p[0][:2] for p in seen} == {"c0", "c1", "c2"}
    assert seen[("c1_0.nii.gz", "c1_1.nii.gz")] == 40  # a two-image class always pairs its two images


def test_single_image_class_is_an_error_naming_the_class_unless_allowed():
    data = entries((3, 1))
    with pytest.raises(DatalistError, match=r"training\[3\] class.*class 1 has a single image") as info:
        SameClassPairDataset(data, datalist_file="list.json")
    assert "list.json" in str(info.value)
    ds = SameClassPairDataset(data, allow_self_pairs=True)
    assert ds[3]["pair"] == ds[3]["image"] == "c1_0.nii.gz"
    assert all(ds[i]["pair"] != ds[i]["image"] for i in range(3))


def test_bad_entries_are_errors():
    with pytest.raises(DatalistError, match=r"training\[1\] class.*integer, got 'a'"):
        SameClassPairDataset([{"image": "x", "class": 0}, {"image": "y", "class": "a"}, {"image": "z", "class": 0}])
    with pytest.raises(DatalistError, match=r"validation\[0\] class: missing key 'class'"):
        SameClassPairDataset([{"image": "x"}, {"image": "y", "class": 0}], section="validation")
    with pytest.raises(DatalistError, match="no entries"):
        SameClassPairDataset([])


def test_one_transform_chain_on_both_images():
    data = [{"image": np.full((1, 2, 2), k, np.float32), "class": k % 2} for k in range(4)]
    ds = SameClassPairDataset(data, transform=Lambdad(["image", "pair"], lambda x: torch.as_tensor(x) * 10))
    item = ds[0]
    assert torch.equal(item["image"], torch.full((1, 2, 2), 0.0))
    assert torch.equal(item["pair"], torch.full((1, 2, 2), 20.0))  # the other class-0 entry, transformed too
    assert "image_source" not in item  # in-memory images have no path


def test_draws_are_reproducible_and_resume_through_the_loader_state():
    data = entries((5, 6))
    a, b = SameClassPairDataset(data, seed=7), SameClassPairDataset(data, seed=7)
    assert partners(a, 3) == partners(b, 3)
    assert partners(SameClassPairDataset(data, seed=8), 3) != partners(a, 3)

    # the checkpoint's tracker searches the data loader: it must find the dataset's generator and restore it
    loader = DataLoader(a, batch_size=4, shuffle=False, num_workers=0)
    states = object_rng_states([loader])
    keys = torch.from_numpy(a.R.get_state()[1].astype(np.int64))
    assert any(torch.equal(s["keys"], keys) for s in states)
    continued = partners(a, 2)
    fresh = SameClassPairDataset(data, seed=0)
    assert set_object_rng_states([DataLoader(fresh, batch_size=4)], states)
    assert partners(fresh, 2) == continued


def test_worker_seed_reaches_the_transform_chain():
    flip = RandFlipd(keys=["image", "pair"], prob=0.5)
    ds = SameClassPairDataset(entries(), transform=Compose([flip]))
    ds.set_random_state(seed=11)
    first = (ds.R.randint(1000), flip.R.randint(1000))
    ds.set_random_state(seed=11)
    assert (ds.R.randint(1000), flip.R.randint(1000)) == first
    assert first[0] != first[1]  # the chain gets its own seed, not the dataset's
