"""Loading options (pinned memory, persistent workers), worker seeding and the cached preprocessing."""

import numpy as np
import pytest
import torch
from common.data import (
    LoaderSettingError,
    UnpairedDataset,
    loader_options,
    loading,
    make_dataloader,
    preprocess_once,
    seed_worker,
)
from monai.transforms import Compose, Identityd, Lambdad, RandFlipd


def _entries(n_pos: int = 3, n_neg: int = 4) -> list[dict]:
    return [{"image": np.full((1, 2, 2), float(i)), "class": int(i < n_pos)} for i in range(n_pos + n_neg)]


def test_loader_options_pin_on_cuda_only_and_worker_options_only_with_workers(monkeypatch):
    assert loader_options(0, "cpu") == {"num_workers": 0, "pin_memory": False}
    assert loader_options(0, None) == {"num_workers": 0, "pin_memory": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loader_options(0, torch.device("cuda:0"))["pin_memory"] is True
    assert loader_options(0, "cpu")["pin_memory"] is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CUDA config on a machine without one
    assert loader_options(0, "cuda")["pin_memory"] is False

    monkeypatch.setattr(loading, "_start_method", lambda: "fork")
    assert loader_options(2, "cpu") == {
        "num_workers": 2,
        "pin_memory": False,
        "persistent_workers": False,
        "prefetch_factor": 2,
    }
    monkeypatch.setattr(loading, "_start_method", lambda: "spawn")
    assert loader_options(2, "cpu", prefetch_factor=4)["persistent_workers"] is True
    assert loader_options(2, "cpu", prefetch_factor=4)["prefetch_factor"] == 4
    assert loader_options(2, "cpu", persistent_workers=False)["persistent_workers"] is False
    assert "persistent_workers" not in loader_options(0, "cpu", persistent_workers=True)
    for bad in ({"num_workers": -1}, {"num_workers": 1, "prefetch_factor": 0}, {"persistent_workers": "yes"}):
        with pytest.raises(LoaderSettingError):
            loader_options(**{"num_workers": 1, **bad})


def test_make_dataloader_builds_the_options_into_a_monai_loader():
    loader = make_dataloader(list(range(6)), num_workers=0, device="cpu", batch_size=3)
    assert loader.num_workers == 0 and loader.pin_memory is False and loader.batch_size == 3
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5]]
    loader = make_dataloader(list(range(6)), num_workers=2, device="cpu", persistent_workers=True, batch_size=2)
    assert loader.persistent_workers is True and loader.worker_init_fn is seed_worker


def test_workers_draw_different_negatives_reproducibly():
    """UnpairedDataset's own generator is seeded per worker: the two workers do not repeat each other's negatives,
    a new pass draws new ones, and the same global seed gives the same batches."""
    dataset = UnpairedDataset(_entries(4, 6), Identityd("image"), label_key=None, seed=0)

    def passes() -> list[list[float]]:
        torch.manual_seed(0)
        loader = make_dataloader(dataset, num_workers=2, device="cpu", persistent_workers=False, batch_size=2)
        return [[float(x) for b in loader for x in b["negative"][:, 0, 0, 0]] for _ in range(2)]

    first, second = passes(), passes()
    assert first == second
    # worker 0 loads batch 0, worker 1 batch 1: unseeded copies would draw the same two negatives in both
    assert first[0][:2] != first[0][2:4] or first[1][:2] != first[1][2:4]
    assert first[0] != first[1]
    assert all(4 <= x < 10 for p in first for x in p)  # negatives only


def test_preprocess_once_keeps_the_items_and_their_order():
    """Caching the deterministic preprocessing gives the same items, with the same negative draws, as
    transforming each entry when it is drawn."""
    transform = Compose([Lambdad("image", lambda x: torch.as_tensor(x) * 2 + 1)])
    entries = _entries()
    lazy = UnpairedDataset(entries, transform, label_key=None, seed=3)
    cached = UnpairedDataset(preprocess_once(entries, transform), Identityd("image"), label_key=None, seed=3)
    for _ in range(2):
        for i in range(len(lazy)):
            a, b = lazy[i], cached[i]
            assert torch.equal(a["positive"], b["positive"]) and torch.equal(a["negative"], b["negative"])
    assert float(cached[1]["positive"][0, 0, 0]) == 3.0
    with pytest.raises(LoaderSettingError, match="RandFlipd"):
        preprocess_once(entries, Compose([transform, RandFlipd("image", prob=0.5)]))


#: training DataLoader workers on a CPU where a bundle uses any: the detector's whole-scan zoom and shift took 13 % of
#: an iteration in the training process (bundles/detection/docs/README.md, Data loading); the others load little.
CPU_WORKERS = {"detection": 1}


def test_bundles_load_with_workers_on_a_gpu_and_the_detector_on_a_cpu():
    """Every bundle's training loader is make_dataloader with the bundle's device; num_workers is 2 on CUDA, 0 on a
    CPU but for the bundles of CPU_WORKERS (the configs are parsed, not run: a CUDA device object needs no GPU)."""
    from pathlib import Path

    from monai.bundle import ConfigParser

    bundles = sorted((Path(__file__).resolve().parents[2] / "bundles").glob("*/configs/train.yaml"))
    assert len(bundles) >= 14
    for train in bundles:
        parser = ConfigParser()
        parser.read_config(str(train))
        assert parser["train"]["dataloader"]["_target_"] == "common.data.make_dataloader", train
        assert parser["train"]["dataloader"]["device"] == "@device", train
        workers = {}
        for device in ("cpu", "cuda:0"):
            parser["device"] = f"$torch.device('{device}')"
            workers[device] = parser.get_parsed_content("num_workers", lazy=False)
        assert workers == {"cpu": CPU_WORKERS.get(train.parents[1].name, 0), "cuda:0": 2}, train


def test_cycle_loader_iterates_each_pass_again_and_counts_epochs():
    from common.data import cycle_loader

    class Passes:
        def __init__(self):
            self.started = 0

        def __iter__(self):
            self.started += 1
            return iter([f"p{self.started}b0", f"p{self.started}b1"])

    loader = Passes()
    stream = cycle_loader(loader)
    assert loader.started == 0  # lazy: the first pass starts at the first next
    got = [next(stream) for _ in range(5)]
    assert got == [(1, "p1b0"), (1, "p1b1"), (2, "p2b0"), (2, "p2b1"), (3, "p3b0")]
    with pytest.raises(ValueError, match="no batch"):
        next(cycle_loader([]))
