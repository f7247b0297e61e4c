"""Tests of the sample-grid utilities and of SampleGridHandler on a tiny ignite engine."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch
from common.handlers import SampleGridHandler, make_grid, save_png
from ignite.engine import Engine
from PIL import Image


def _engine() -> Engine:
    return Engine(lambda engine, batch: {"loss": 0.0})


def _gen2d(latent: int = 4) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(latent, 64), torch.nn.Unflatten(1, (1, 8, 8)))


def _gen3d(latent: int = 4) -> torch.nn.Module:
    # (B, latent, 1, 1, 1) -> (B, 2, 6, 8, 10)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(latent, 2 * 6 * 8 * 10), torch.nn.Unflatten(1, (2, 6, 8, 10))
    )


# ---------------------------------------------------------------- make_grid


@pytest.mark.parametrize(
    "shape, nrow, expected",
    [
        ((4, 1, 8, 8), None, (8 * 2 + 2, 8 * 2 + 2)),  # 2x2 grid of single tiles
        ((3, 4, 8, 8), None, (8 * 2 + 2, (4 * 8 + 3 * 2) * 2 + 2)),  # 2 per row, strips of 4 channels
        ((3, 4, 8, 8), 3, (8, (4 * 8 + 3 * 2) * 3 + 2 * 2)),
        ((1, 1, 5, 7), None, (5, 7)),
    ],
)
def test_make_grid_2d_shapes(shape, nrow, expected):
    grid = make_grid(torch.randn(shape), nrow=nrow)
    assert grid.dtype == np.uint8
    assert grid.ndim == 2
    assert grid.shape == expected
    assert grid.min() == 0 and grid.max() == 255


def test_make_grid_3d_shape_and_views():
    b, c, h, w, d = 2, 2, 6, 8, 10
    grid = make_grid(np.random.default_rng(0).normal(size=(b, c, h, w, d)), nrow=2)
    # per channel a row: axial (W, H) | coronal (D, H) | sagittal (D, W) after rot90, padded to height D
    panel_w, panel_h = h + h + w + 2 * 2, d * c + 2 * (c - 1)
    assert grid.shape == (panel_h, 2 * panel_w + 2)
    assert grid.dtype == np.uint8
    assert grid.min() == 0 and grid.max() == 255


def test_make_grid_3d_middle_slices():
    vol = np.zeros((1, 1, 5, 6, 7), dtype=np.float32)
    vol[0, 0, :, :, 3] = 1.0  # the middle axial slice is bright everywhere
    grid = make_grid(vol)
    axial = grid[:6, :5]  # rot90 of (H=5, W=6) -> (6, 5)
    assert axial.shape == (6, 5) and np.all(axial == 0)  # constant tile -> zeros, no division by zero
    coronal = grid[:7, 5 + 2 : 5 + 2 + 5]  # rot90 of (H=5, D=7) -> (7, 5): one bright row
    assert np.count_nonzero(coronal.max(axis=1) == 255) == 1
    assert np.all(coronal.max(axis=0) == 255)


def test_make_grid_first_channel_only():
    grid = make_grid(torch.randn(2, 4, 8, 8), nrow=2, channel_layout="first")
    assert grid.shape == (8, 8 * 2 + 2)


def test_make_grid_constant_and_nan_input():
    grid = make_grid(torch.full((2, 3, 4, 4), 7.0))
    assert grid.dtype == np.uint8 and grid.max() == 0
    x = torch.randn(1, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    assert make_grid(x).dtype == np.uint8


def test_make_grid_rejects_bad_input():
    with pytest.raises(ValueError):
        make_grid(torch.randn(1, 8, 8))
    with pytest.raises(ValueError):
        make_grid(torch.randn(1, 1, 8, 8), channel_layout="rgb")


def test_save_png_roundtrip(tmp_path):
    grid = make_grid(torch.randn(3, 2, 8, 8))
    path = tmp_path / "sub" / "grid.png"
    save_png(grid, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
    assert os.listdir(tmp_path / "sub") == ["grid.png"]


# ---------------------------------------------------------------- SampleGridHandler


def test_handler_generator_2d(tmp_path):
    torch.manual_seed(123)
    gen = _gen2d()
    gen.train()
    modes = []
    gen.register_forward_hook(lambda m, i, o: modes.append(m.training))
    handler = SampleGridHandler(tmp_path, generator=gen, latent_size=4, num_samples=6, summary_writer="auto")
    engine = _engine()
    handler.attach(engine)

    rng_before = torch.get_rng_state()
    engine.run(range(2), max_epochs=2)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the handler did not consume the global RNG

    assert modes == [False, False]  # sampled in eval mode, once per epoch
    assert gen.training  # previous mode restored
    files = sorted(glob.glob(str(tmp_path / "samples_epoch*.png")))
    assert [os.path.basename(f) for f in files] == ["samples_epoch0001.png", "samples_epoch0002.png"]
    with open(files[0], "rb") as f0, open(files[1], "rb") as f1:
        assert f0.read() == f1.read()  # fixed latent + unchanged generator -> identical grids
    grid = np.asarray(Image.open(files[0]))
    assert grid.shape == (8 * 2 + 2, 8 * 3 + 2 * 2)  # 6 samples, 3 per row
    assert handler.latent.shape == (6, 4)
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert not glob.glob(str(tmp_path / "*.tmp*")) and not glob.glob(str(tmp_path / ".*"))


def test_handler_grid_changes_with_generator(tmp_path):
    gen = _gen2d()
    handler = SampleGridHandler(tmp_path, generator=gen, latent_size=4, num_samples=4)

    def step(engine, batch):
        with torch.no_grad():
            gen[0].weight.mul_(-1.0)

    engine = Engine(step)
    handler.attach(engine)
    engine.run(range(1), max_epochs=2)
    a, b = (tmp_path / "samples_epoch0001.png").read_bytes(), (tmp_path / "samples_epoch0002.png").read_bytes()
    assert a != b


def test_handler_generator_3d_latent_tuple_iteration_level(tmp_path):
    gen = _gen3d()
    handler = SampleGridHandler(
        tmp_path, generator=gen, latent_size=(4, 1, 1, 1), num_samples=2, interval=3, epoch_level=False, prefix="g"
    )
    assert handler.latent.shape == (2, 4, 1, 1, 1)
    engine = _engine()
    handler.attach(engine)
    engine.run(range(2), max_epochs=3)  # iterations 1..6 -> written at 3 and 6
    names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.png")))
    assert names == ["g_iter0000003.png", "g_iter0000006.png"]
    grid = np.asarray(Image.open(tmp_path / "g_iter0000006.png"))
    panel_w, panel_h = 6 + 6 + 8 + 4, 10 * 2 + 2
    assert grid.shape == (panel_h, 2 * panel_w + 2)


def test_handler_same_latent_for_same_seed(tmp_path):
    a = SampleGridHandler(tmp_path, generator=_gen2d(), latent_size=4, seed=5)
    b = SampleGridHandler(tmp_path, generator=_gen2d(), latent_size=4, seed=5)
    c = SampleGridHandler(tmp_path, generator=_gen2d(), latent_size=4, seed=6)
    assert torch.equal(a.latent, b.latent) and not torch.equal(a.latent, c.latent)


def test_handler_sample_fn_and_writer(tmp_path):
    calls = []

    class Writer:
        def add_image(self, tag, img, step, dataformats):
            calls.append((tag, img.shape, img.dtype, step, dataformats))

        def flush(self):
            pass

    def sample_fn():
        return torch.randn(5, 2, 8, 8)  # global RNG inside the handler's forked, seeded RNG

    handler = SampleGridHandler(tmp_path, sample_fn=sample_fn, num_samples=4, summary_writer=Writer(), tag="gen")
    engine = _engine()
    handler.attach(engine)
    rng_before = torch.get_rng_state()
    engine.run(range(1), max_epochs=2)
    assert torch.equal(torch.get_rng_state(), rng_before)
    shape = (8 * 2 + 2, (2 * 8 + 2) * 2 + 2)  # 4 samples kept, 2 per row
    assert calls == [("gen", shape, np.uint8, 1, "HW"), ("gen", shape, np.uint8, 2, "HW")]
    assert (tmp_path / "samples_epoch0001.png").read_bytes() == (tmp_path / "samples_epoch0002.png").read_bytes()


def test_handler_unwraps_data_parallel(tmp_path):
    gen = _gen2d()
    handler = SampleGridHandler(tmp_path, generator=torch.nn.DataParallel(gen), latent_size=4, num_samples=2)
    assert handler._network() is gen
    engine = _engine()
    handler.attach(engine)
    engine.run(range(1), max_epochs=1)
    assert handler.last_path == str(tmp_path / "samples_epoch0001.png")


def test_handler_argument_checks(tmp_path):
    with pytest.raises(ValueError):
        SampleGridHandler(tmp_path)
    with pytest.raises(ValueError):
        SampleGridHandler(tmp_path, sample_fn=lambda: torch.zeros(1, 1, 2, 2), generator=_gen2d(), latent_size=4)
    with pytest.raises(ValueError):
        SampleGridHandler(tmp_path, generator=_gen2d())
    with pytest.raises(ValueError):
        SampleGridHandler(tmp_path, generator=_gen2d(), latent_size=4, summary_writer="tb")


def test_final_grid_written_when_interval_not_reached(tmp_path):
    from ignite.engine import Engine

    generator = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Unflatten(1, (1, 8, 8)))
    handler = SampleGridHandler(tmp_path, generator=generator, latent_size=4, num_samples=2, interval=10)
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run(range(2), max_epochs=3)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["samples_epoch0003.png"]
