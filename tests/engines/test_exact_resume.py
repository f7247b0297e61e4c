"""Exact resume after SIGKILL, and a checkpoint on SIGTERM, with tiny bundle trainings on a CPU."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common.data import make_dataloader
from common.engines import (
    CheckpointHandler,
    ProgressiveBatchSampler,
    ProgressiveGANStep,
    ProgressiveSchedule,
    ResumeHandler,
    StepTrainer,
    TrainingState,
    latest_checkpoint,
)
from common.engines.checkpoint import RANDOM_STATE_KEY
from common.networks import ProgressiveDiscriminator, ProgressiveGenerator
from ignite.engine import Engine, Events
from monai.data import Dataset
from monai.transforms import RandGaussianNoised
from training_runs import build, record_losses

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _bundle_copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(REPO / "bundles" / name, dst, ignore=shutil.ignore_patterns("models", "eval", "data", "runs"))
    return dst


def _spawn(spec: dict, tmp_path: Path) -> subprocess.Popen:
    spec_file = tmp_path / f"spec_{spec['mode']}.json"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(HERE / "training_runs.py"), str(spec_file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _assert_same(a, b, where: str = "") -> None:
    """Recursive equality of two loaded checkpoints: tensors with ``torch.equal``, everything else with ``==``."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} vs {b}"


def _engine_run(ckpt_dir, resume=False, stop_at=None, epoch_length=4, max_epochs=3, num_workers=0):
    """A plain ignite engine over a shuffled loader (6 batches, random transform) with a random draw per iteration;
    the loader of the bundles (``common.data.make_dataloader``: with workers, non-persistent ones under ``fork``).

    Returns:
        ``(engine, records)``: per iteration the batch's item ids, its noisy values' sum and the draw.
    """
    torch.manual_seed(0)
    np.random.seed(0)
    data = [{"id": i, "x": torch.full((1, 2), float(i))} for i in range(12)]
    dataset = Dataset(data, RandGaussianNoised("x", prob=1.0))
    loader = make_dataloader(dataset, num_workers=num_workers, device="cpu", batch_size=2, shuffle=True)
    net = torch.nn.Linear(2, 1)
    records = []

    def _update(engine, batch):
        records.append((batch["id"].tolist(), float(batch["x"].sum()), float(torch.rand(())), float(np.random.rand())))
        return {}

    engine = Engine(_update)
    state = TrainingState({"net": net})
    ResumeHandler(ckpt_dir, state, resume=resume).attach(engine)
    CheckpointHandler(ckpt_dir, state, save_interval=1, epoch_level=False, n_saved=None).attach(engine)
    if stop_at is not None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate(skip_completed=True))
    engine.run(loader, max_epochs=max_epochs, epoch_length=epoch_length)
    return engine, records


def test_resume_within_an_iterator_that_spans_epochs(tmp_path):
    """Epochs of 4 batches over a loader of 6: the data iterator outlives epochs; resume at every iteration."""
    _, full = _engine_run(tmp_path / "full")
    assert len(full) == 12 and full[:6] != full[6:]  # a second pass over the data with another order and noise
    for stop_at in (3, 5, 6, 8):
        killed = tmp_path / f"killed_{stop_at}"
        _, before = _engine_run(killed, stop_at=stop_at)
        saved = torch.load(latest_checkpoint(killed), weights_only=True)["trainer"]["iteration"]
        # stopped after the last iteration of an epoch but before its EPOCH_COMPLETED save: resumed from the one before
        assert saved == (stop_at - 1 if stop_at % 4 == 0 else stop_at)
        engine, after = _engine_run(killed, resume=True)
        assert before[:saved] + after == full, stop_at
        assert engine.state.iteration == 12


def test_resume_with_non_persistent_workers_is_exact(tmp_path):
    """Two non-persistent workers (a GPU's default): each pass forks workers seeded from the global generator, which
    the checkpoint restores, so the resumed run draws the same order and the same noise."""
    assert make_dataloader([0], num_workers=2).persistent_workers is False  # this platform starts workers by fork
    _, full = _engine_run(tmp_path / "full", num_workers=2)
    _, in_process = _engine_run(tmp_path / "no_workers")
    assert len(full) == 12 and full[:6] != full[6:] and full != in_process
    for stop_at in (3, 6):
        killed = tmp_path / f"killed_{stop_at}"
        _, before = _engine_run(killed, stop_at=stop_at, num_workers=2)
        saved = torch.load(latest_checkpoint(killed), weights_only=True)["trainer"]["iteration"]
        _, after = _engine_run(killed, resume=True, num_workers=2)
        assert before[:saved] + after == full, stop_at


def test_checkpoint_without_random_state_still_resumes(tmp_path, caplog):
    """A checkpoint of an earlier version (no random state) resumes its counters, with a warning."""
    _engine_run(tmp_path, stop_at=3)
    path = latest_checkpoint(tmp_path)
    state = torch.load(path, weights_only=True)
    del state[RANDOM_STATE_KEY]
    torch.save(state, path, _use_new_zipfile_serialization=False)  # also: a format that cannot be memory-mapped
    with caplog.at_level("WARNING", logger="common.engines"):
        engine, after = _engine_run(tmp_path, resume=True)
    assert engine.state.iteration == 12 and len(after) == 9
    assert "holds no random state" in caplog.text


def test_sigterm_at_an_epoch_end_saves_after_the_epoch_handlers(tmp_path):
    """SIGTERM in the last iteration of an epoch: the checkpoint follows the epoch-end handlers attached before it,
    the run ends without COMPLETED, and the signal goes on to the previous handler, which is put back."""
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        engine = Engine(lambda e, b: signal.raise_signal(signal.SIGTERM) if e.state.iteration == 2 else None)
        epochs_done = []
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs_done.append(e.state.epoch))
        handler = CheckpointHandler(tmp_path, TrainingState({"net": torch.nn.Linear(1, 1)}), save_interval=10)
        handler.attach(engine)
        completed = []
        engine.add_event_handler(Events.COMPLETED, lambda e: completed.append(True))
        engine.run([0, 1], max_epochs=5)
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert engine.state.iteration == 2 and epochs_done == [1] and not completed
    assert received == [signal.SIGTERM]  # raised again once, to the handler that was there before the run
    assert restored is not handler._on_sigterm and restored.__name__ == "<lambda>"
    state = torch.load(latest_checkpoint(tmp_path), weights_only=True)
    assert latest_checkpoint(tmp_path).name == "checkpoint_2.pt" and state["trainer"]["iteration"] == 2


def test_sigkilled_runs_resume_exactly(tmp_path):
    """N+M iterations uninterrupted == N iterations, SIGKILL mid-epoch, resume to N+M: losses and whole checkpoints.

    Three adversarial bundles (dcgan_wgan: GANStep on a StepTrainer; ga_unet: GAUNetStep with its same-class pair
    dataset, batch renormalisation and sampling dropout; stylegan2: the moving-average generator, ADA's probability
    and the path-length mean) and one downstream bundle (classification: MONAI's
    SupervisedTrainer with validation); all are killed in one subprocess (see training_runs.py), at
    iteration 3 of 2-iteration epochs, with a checkpoint every iteration; the full runs have 4 epochs (8 iterations).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess: the same kernels; and no thread oversubscription on a busy CI host
    try:
        _killed_and_resumed(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _killed_and_resumed(tmp_path: Path) -> None:
    names = ("dcgan_wgan", "ga_unet", "stylegan2", "classification")
    roots = {name: _bundle_copy(tmp_path, name) for name in names}
    runs = [
        {
            "root": str(roots[n]),
            "name": n,
            "ckpt_dir": str(tmp_path / f"{n}_killed"),
            "max_epochs": 4,
            "at": 3,
            "losses": str(tmp_path / f"{n}_killed.json"),
        }
        for n in names
    ]
    proc = _spawn({"threads": 1, "mode": "kill", "runs": runs}, tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out[-4000:]

    for run in runs:
        killed = Path(run["ckpt_dir"])
        ckpt = latest_checkpoint(killed)
        assert ckpt is not None and ckpt.name == "checkpoint_3.pt", (run["name"], sorted(os.listdir(killed)))
        before = json.loads(Path(run["losses"]).read_text())
        assert len(before) == 3

        resumed_wf = build(run["root"], run["name"], killed, max_epochs=4, resume=True)
        resumed_trainer = resumed_wf.parser.get_parsed_content("train#trainer")
        after = record_losses(resumed_trainer)
        resumed_wf.run()

        full = tmp_path / f"{run['name']}_full"
        full_wf = build(run["root"], run["name"], full, max_epochs=4)
        losses = record_losses(full_wf.parser.get_parsed_content("train#trainer"))
        full_wf.run()

        assert len(losses) == 8 and before + after == losses, (run["name"], before, after, losses)
        last_full, last_resumed = latest_checkpoint(full), latest_checkpoint(killed)
        assert last_full.name == last_resumed.name == "checkpoint_8.pt"
        state = torch.load(last_resumed, weights_only=True)
        assert RANDOM_STATE_KEY in state
        _assert_same(torch.load(last_full, weights_only=True), state, run["name"])


def test_sigterm_writes_checkpoint_and_ends_with_the_signal(tmp_path):
    """SIGTERM to a training subprocess: a checkpoint of the current iteration, no traceback, exit by SIGTERM."""
    root = _bundle_copy(tmp_path, "classification")
    ckpt_dir = tmp_path / "models"
    run = {
        "root": str(root),
        "name": "classification",
        "ckpt_dir": str(ckpt_dir),
        "max_epochs": 10**4,
        "save_interval": 10**4,  # no interval checkpoint during the test: any checkpoint is the SIGTERM one
        "iteration_level": False,
        "at": 3,
        "losses": str(tmp_path / "losses.json"),
    }
    proc = _spawn({"threads": 1, "mode": "term", "runs": [run]}, tmp_path)
    try:
        deadline = time.time() + 120
        while not (ckpt_dir / "started").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert latest_checkpoint(ckpt_dir) is None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM, out[-4000:]
    assert "Traceback" not in out
    ckpt = latest_checkpoint(ckpt_dir)
    assert ckpt is not None, out[-4000:]
    state = torch.load(ckpt, weights_only=True)
    done = len(json.loads(Path(run["losses"]).read_text()))
    assert state["trainer"]["iteration"] == done >= 3 and ckpt.name == f"checkpoint_{done}.pt"
    assert RANDOM_STATE_KEY in state and "network" in state and "optimizer" in state
    assert f"stopped on SIGTERM at iteration {done}" in out


def test_progressive_batch_sampler_continues_the_stream_at_the_schedule_position():
    """A new iterator at iteration k yields what an iterator running since iteration 0 yields from k on (5 samples,
    batches of 4 then 2: passes end inside batches)."""
    schedule = ProgressiveSchedule([4, 8], 8, 8, [4, 2])
    sampler = ProgressiveBatchSampler(list(range(5)), schedule, seed=3)
    stream = iter(sampler)
    batches = []
    for i in range(schedule.total_iterations):
        schedule.iteration = i
        batches.append(next(stream))
    for k in range(schedule.total_iterations):
        schedule.iteration = k
        resumed = iter(sampler)
        for i in range(k, schedule.total_iterations):
            schedule.iteration = i
            assert next(resumed) == batches[i], (k, i)


def _progressive_run(ckpt_dir, resume=False, stop_at=None):
    """A tiny PGGAN training (3 stages, 5 images, batches of 4, 4 and 2); returns the losses of its iterations."""
    torch.manual_seed(0)
    generator = ProgressiveGenerator(2, 4, 1, 16, fmap_base=16, fmap_max=4)
    discriminator = ProgressiveDiscriminator(2, 1, 16, fmap_base=16, fmap_max=4)
    schedule = ProgressiveSchedule(generator.resolutions, 8, 8, [4, 4, 2])
    step = ProgressiveGANStep(
        generator,
        discriminator,
        torch.optim.Adam(generator.parameters(), 1e-3, betas=(0.0, 0.99)),
        torch.optim.Adam(discriminator.parameters(), 1e-3, betas=(0.0, 0.99)),
        schedule,
        latent_size=4,
    )
    data = [{"image": torch.linspace(-1, 1, 256).roll(17 * i).reshape(1, 16, 16)} for i in range(5)]
    loader = torch.utils.data.DataLoader(data, batch_sampler=ProgressiveBatchSampler(data, schedule, seed=0))
    handlers = [
        ResumeHandler(ckpt_dir, step, resume=resume),
        CheckpointHandler(ckpt_dir, step, save_interval=1, epoch_level=False, model_files={"model.pt": "generator"}),
    ]
    trainer = StepTrainer("cpu", 1, loader, step, epoch_length=schedule.total_iterations, handlers=handlers)
    losses = record_losses(trainer)
    if stop_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda engine: engine.terminate())
    trainer.run()
    return losses


def test_progressive_training_resumes_exactly(tmp_path):
    """PGGAN's endless batch sampler: stopped after 3 iterations (12 images: the 3rd pass over the 5 images, from
    its 3rd index) and resumed, the losses are those of the uninterrupted run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels in every run, and no thread oversubscription on a busy host
    try:
        full = _progressive_run(tmp_path / "full")
        before = _progressive_run(tmp_path / "stopped", stop_at=3)
        after = _progressive_run(tmp_path / "stopped", resume=True)
    finally:
        torch.set_num_threads(threads)
    assert len(before) == 3 and len(full) == len(before) + len(after)
    assert before + after == full
