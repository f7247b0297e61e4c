"""Weights files written by ``common.utils.save_atomic``: atomic, loadable with ``weights_only=True``, and the same
bytes for the same weights (synthetic datalists record their generator checkpoint's SHA-256)."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from common.utils import latest_checkpoint, save_atomic, sha256_file


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return torch.nn.Conv2d(2, 3, 3).state_dict()


def test_equal_weights_give_equal_files(tmp_path):
    save_atomic(_state(), tmp_path / "model.pt")
    first = sha256_file(tmp_path / "model.pt")
    save_atomic(_state(), tmp_path / "model.pt")  # saved again over itself
    save_atomic(_state(), tmp_path / "other" / "model.pt")  # and to another folder
    assert sha256_file(tmp_path / "model.pt") == first
    assert sha256_file(tmp_path / "other" / "model.pt") == first
    save_atomic(_state(seed=1), tmp_path / "changed.pt")
    assert sha256_file(tmp_path / "changed.pt") != first
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in _state().items())
    assert sorted(os.listdir(tmp_path)) == ["changed.pt", "model.pt", "other"]  # no temporary file left


def test_failed_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.pt"
    save_atomic(_state(), path)
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError)):  # which one depends on the Python version
        save_atomic({"weights": lambda: None}, path)  # not picklable
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pt"]


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (5, 40, 300):
        save_atomic({"step": torch.tensor(step)}, tmp_path / f"checkpoint_{step}.pt")
    save_atomic({}, tmp_path / "model.pt")
    assert latest_checkpoint(tmp_path).name == "checkpoint_300.pt"
