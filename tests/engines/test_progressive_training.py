"""Tests of the progressive training schedule, batch sampler and step, including a resume in the middle of a stage."""

import pytest
import torch
from common.engines import (
    CheckpointHandler,
    ProgressiveBatchSampler,
    ProgressiveGANStep,
    ProgressiveSchedule,
    ResumeHandler,
    StepTrainer,
    latest_checkpoint,
)
from common.networks import ProgressiveDiscriminator, ProgressiveGenerator
from ignite.engine import Events
from torch.utils.data import DataLoader


def test_schedule_arithmetic():
    s = ProgressiveSchedule([4, 8, 16], fade_in_images=[0, 10, 12], stabilise_images=[8, 8, 5], batch_sizes=[4, 4, 2])
    # phases: s0 stab 2 it (bs 4) | s1 fade 3 it, stab 2 it (bs 4) | s2 fade 6 it, stab 3 it (bs 2)
    assert [p[2] for p in s.phases] == [2, 3, 2, 6, 3]
    assert s.total_iterations == 16 and s.total_images == 8 + 12 + 8 + 12 + 6
    p = s.position(0)
    assert (p["stage"], p["alpha"], p["images_shown"], p["batch_size"]) == (0, 1.0, 0, 4)
    p = s.position(3)  # second iteration of stage 1's fade-in
    assert (p["stage"], p["alpha"], p["images_shown"], p["fading"]) == (1, pytest.approx(1 / 3), 12, True)
    p = s.position(5)  # stage 1 stabilisation
    assert (p["stage"], p["alpha"], p["images_shown"]) == (1, 1.0, 20)
    p = s.position(10)  # stage 2 fade-in, k = 3 of 6, batch 2
    assert (p["stage"], p["alpha"], p["images_shown"], p["batch_size"]) == (2, 0.5, 28 + 3 * 2, 2)
    assert s.position(16)["done"] and s.position(16)["images_shown"] == 46


def test_schedule_state_dict_round_trip_and_mismatch():
    s = ProgressiveSchedule([4, 8], 8, 8, 4)
    s.iteration = 3
    state = s.state_dict()
    assert state == {"iteration": 3, "stage": 1, "alpha": 0.5, "images_shown": 12, "resolutions": [4, 8]}
    t = ProgressiveSchedule([4, 8], 8, 8, 4)
    t.load_state_dict(state)
    assert (t.stage, t.alpha, t.images_shown) == (1, 0.5, 12)
    with pytest.raises(ValueError, match="does not match"):
        ProgressiveSchedule([4, 8], 8, 16, 4).load_state_dict(state)


def test_batch_sampler_follows_schedule():
    s = ProgressiveSchedule([4, 8], 4, 4, [4, 2])
    it = iter(ProgressiveBatchSampler(list(range(5)), s, seed=0))
    sizes = []
    for i in range(s.total_iterations):
        s.iteration = i
        sizes.append(len(next(it)))
    assert sizes == [4, 2, 2, 2, 2]


def _trainer(ckpt_dir, resume=False, stop_at=None, record=None):
    torch.manual_seed(0)
    g = ProgressiveGenerator(2, 4, 1, 16, fmap_base=16, fmap_max=4)
    d = ProgressiveDiscriminator(2, 1, 16, fmap_base=16, fmap_max=4)
    schedule = ProgressiveSchedule(g.resolutions, 8, 8, [4, 4, 2])
    step = ProgressiveGANStep(
        g,
        d,
        torch.optim.Adam(g.parameters(), 1e-3, betas=(0.0, 0.99)),
        torch.optim.Adam(d.parameters(), 1e-3, betas=(0.0, 0.99)),
        schedule,
        latent_size=4,
    )
    data = [{"image": torch.rand(1, 16, 16) * 2 - 1} for _ in range(6)]
    loader = DataLoader(data, batch_sampler=ProgressiveBatchSampler(data, schedule, seed=0))
    handlers = [
        ResumeHandler(ckpt_dir, step, resume=resume),
        CheckpointHandler(ckpt_dir, step, save_interval=3, epoch_level=False, model_files={"model.pt": "generator"}),
    ]
    trainer = StepTrainer("cpu", 1, loader, step, epoch_length=schedule.total_iterations, handlers=handlers)

    @trainer.on(Events.ITERATION_COMPLETED)
    def _(engine):
        if record is not None:
            out = engine.state.output
            record[engine.state.iteration] = (out["stage"], out["alpha"], out["images_shown"], out["resolution"])
        if stop_at is not None and engine.state.iteration == stop_at:
            engine.terminate()

    return trainer, schedule


def test_resume_mid_stage_continues_schedule(tmp_path):
    reference = {}
    trainer, schedule = _trainer(tmp_path / "ref", record=reference)
    trainer.run()
    total = schedule.total_iterations
    assert trainer.state.iteration == total and reference[total][0] == 2
    # stop inside stage 1's fade-in (iterations 3-4 fade stage 1 in at batch 4), then resume
    first = {}
    trainer, _ = _trainer(tmp_path / "run", stop_at=3, record=first)
    trainer.run()
    ckpt = latest_checkpoint(tmp_path / "run")
    saved = torch.load(ckpt, weights_only=True)
    assert saved["trainer"]["iteration"] == 3
    assert saved["schedule"] == {
        "iteration": 3,
        "stage": 1,
        "alpha": 0.5,
        "images_shown": 12,
        "resolutions": [4, 8, 16],
    }
    resumed = {}
    trainer, schedule2 = _trainer(tmp_path / "run", resume=True, record=resumed)
    trainer.run()
    assert min(resumed) == 4 and max(resumed) == total
    assert resumed[4][:3] == (1.0, 0.5, 16.0)  # the fade-in's second iteration: alpha 1/2, 12 + 4 images
    for it in range(4, total + 1):
        assert resumed[it] == reference[it], it
    assert schedule2.iteration == total
