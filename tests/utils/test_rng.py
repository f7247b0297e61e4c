"""common.utils.rng: every random state captured, saved with torch.save, loaded with weights_only and restored."""

import random

import numpy as np
import torch
from common.utils import object_rng_states, rng_state, set_object_rng_states, set_rng_state
from monai.transforms import Compose, RandFlipd, RandGaussianNoised


def _draws(pipeline: Compose, sampler_generator: torch.Generator, dataset_rng: np.random.Generator) -> list:
    """Draws from every global generator and from the objects' own generators."""
    pipeline.randomize(None)
    return [
        random.random(),
        random.gauss(0.0, 1.0),
        float(np.random.rand()),
        float(np.random.standard_normal()),
        torch.rand(3).tolist(),
        [float(t.R.rand()) for t in pipeline.transforms],
        torch.randperm(5, generator=sampler_generator).tolist(),
        dataset_rng.integers(1000, size=3).tolist(),
    ]


def test_states_round_trip_through_weights_only_checkpoint(tmp_path):
    pipeline = Compose([RandFlipd("image", prob=0.5), RandGaussianNoised("image", prob=0.5)])
    pipeline.set_random_state(seed=3)
    generator = torch.Generator().manual_seed(7)
    dataset_rng = np.random.default_rng(11)
    roots = [{"transforms": pipeline, "sampler": [generator]}, (dataset_rng,)]
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0.0, 1.0)  # leaves a cached Gaussian in Python's state
    np.random.standard_normal()  # and in NumPy's
    torch.save({"global": rng_state(), "objects": object_rng_states(roots)}, tmp_path / "rng.pt")
    expected = _draws(pipeline, generator, dataset_rng)
    assert _draws(pipeline, generator, dataset_rng) != expected  # the generators moved on

    saved = torch.load(tmp_path / "rng.pt", weights_only=True)
    set_rng_state(saved["global"])
    assert set_object_rng_states(roots, saved["objects"])
    assert _draws(pipeline, generator, dataset_rng) == expected


def test_objects_found_in_a_fixed_order_and_mismatch_rejected():
    pipeline = Compose([RandFlipd("image", prob=0.5)])
    pipeline.set_random_state(seed=0)
    generator = torch.Generator().manual_seed(0)
    shared = [pipeline, generator, pipeline]  # each generator once, however often it is referenced
    states = object_rng_states([shared])
    assert [type(s) for s in states] == [dict, dict, torch.Tensor]  # Compose.R, RandFlipd.R, the torch generator
    assert set_object_rng_states([shared], states)
    before = generator.get_state()
    assert not set_object_rng_states([[generator]], states)  # other objects than captured: nothing restored
    assert torch.equal(generator.get_state(), before)
