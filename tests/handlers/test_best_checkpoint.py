"""BestCheckpointHandler: model selection by a validation score inside a window of steps (Han's thesis sec. 5.2.3 and
6.2.2), its record, resume and clean start; select_checkpoint's fallback."""

import json
import logging

import pytest
import torch
from common.handlers.best_checkpoint import BestCheckpointHandler, select_checkpoint
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator


class ScriptedScore(Metric):
    """A validation 'metric' that returns the next value of a fixed sequence at each validation run."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0
        super().__init__(output_transform=lambda out: (None, None))

    def reset(self):
        pass

    def update(self, output):
        pass

    def compute(self):
        self.calls += 1
        return self.values[self.calls - 1]


def make_run(tmp_path, scores, window=None, interval=1, epoch_level=False):
    """A trainer whose step sets the network's weight to the iteration number, validated by a scripted score."""
    network = torch.nn.Linear(1, 1, bias=False)

    def step(engine, batch):
        with torch.no_grad():
            network.weight.fill_(float(engine.state.iteration))
        return {}

    trainer = Engine(step)
    validator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=[{"image": torch.zeros(1, 1)}],
        network=network,
        key_val_metric={"val_score": ScriptedScore(scores)},
        decollate=False,
    )
    handler = BestCheckpointHandler(
        tmp_path / "models", network, validator, "val_score", interval, epoch_level, window, description="test"
    )
    handler.attach(trainer)
    return trainer, handler


def saved_step(tmp_path):
    """The iteration whose weights model_best.pt holds (the step wrote the iteration number into the weight)."""
    return int(torch.load(tmp_path / "models" / "model_best.pt", weights_only=True)["weight"].item())


def test_keeps_the_step_with_the_best_validation_score_inside_the_window(tmp_path):
    # validation after iterations 1..6; window [2, 5]: 0.9 at step 1 and 0.95 at step 6 are outside, 0.5 at step 4
    # equals the best 0.5 of step 3 and replaces it (ties go to the later step), 0.3 at step 5 does not, NaN never
    trainer, handler = make_run(tmp_path, [0.9, 0.2, 0.5, 0.5, 0.3, 0.95], window=[2, 5])
    trainer.run([0] * 6, max_epochs=1)
    record = json.loads((tmp_path / "models" / "model_best.json").read_text())
    assert (handler.best_step, handler.best_score) == (4, 0.5) and saved_step(tmp_path) == 4
    assert record == {
        "file": "model_best.pt",
        "step": 4,
        "epoch": 1,
        "metric": "val_score",
        "description": "test",
        "score": 0.5,
        "window": [2, 5],
    }
    # the whole run (no window): 0.95 at step 6; a NaN after it is never kept
    trainer, handler = make_run(tmp_path, [0.9, 0.2, 0.5, 0.5, 0.95, float("nan")])
    trainer.run([0] * 6, max_epochs=1)
    assert handler.best_step == 5 and saved_step(tmp_path) == 5


def test_epoch_level_interval_and_lower_is_better(tmp_path):
    trainer, handler = make_run(tmp_path, [3.0, 1.0, 2.0], interval=2, epoch_level=True)
    handler.higher_is_better = False
    trainer.run([0] * 2, max_epochs=6)  # validation after epochs 2, 4, 6 = iterations 4, 8, 12
    assert handler.validator.state.metrics["val_score"] == 2.0
    assert (handler.best_step, handler.best_score) == (8, 1.0) and saved_step(tmp_path) == 8


def test_best_survives_a_resume_and_a_new_run_clears_it(tmp_path, caplog):
    trainer, handler = make_run(tmp_path, [0.1, 0.7, 0.3])
    trainer.run([0] * 3, max_epochs=1)
    assert handler.best_step == 2
    # resumed at iteration 3 (as after ResumeHandler's loader): 0.6 and 0.65 do not beat 0.7, 0.8 at step 6 does
    trainer, handler = make_run(tmp_path, [0.6, 0.65, 0.8])
    trainer.load_state_dict({"iteration": 3, "epoch_length": 3, "max_epochs": 1})
    with caplog.at_level(logging.INFO, logger="common.handlers.best_checkpoint"):
        trainer.run([0] * 3, max_epochs=2)
    assert "resumed the best val_score 0.7000 at step 2" in caplog.text
    assert (handler.best_step, handler.best_score) == (6, 0.8) and saved_step(tmp_path) == 6
    trainer, handler = make_run(tmp_path, [0.1, 0.7, 0.3])
    trainer.load_state_dict({"iteration": 6, "epoch_length": 3, "max_epochs": 2})
    trainer.run([0] * 3, max_epochs=3)  # 0.1, 0.7, 0.3 < 0.8: the best stays
    assert saved_step(tmp_path) == 6
    # a run from scratch removes the earlier run's best model before validating: none is kept here (window)
    trainer, handler = make_run(tmp_path, [0.1], window=[5, None])
    trainer.run([0], max_epochs=1)
    assert handler.best_score is None and not (tmp_path / "models" / "model_best.pt").exists()
    assert not (tmp_path / "models" / "model_best.json").exists()


def test_without_validator_nothing_is_selected_and_bad_windows_raise(tmp_path):
    network = torch.nn.Linear(1, 1)
    trainer = Engine(lambda e, b: {})
    handler = BestCheckpointHandler(tmp_path, network, None)
    handler.attach(trainer)
    trainer.run([0, 0], max_epochs=1)
    assert handler.best_score is None and not (tmp_path / "model_best.pt").exists()
    with pytest.raises(ValueError, match="first step is after the last"):
        BestCheckpointHandler(tmp_path, network, None, window=[10, 5])
    with pytest.raises(ValueError, match="window"):
        BestCheckpointHandler(tmp_path, network, None, window=[1, 2, 3])


def test_select_checkpoint_falls_back_to_the_last_model(tmp_path, caplog):
    best, last = tmp_path / "model_best.pt", tmp_path / "model.pt"
    with pytest.raises(FileNotFoundError, match="run the training workflow first"):
        select_checkpoint(best, last)
    last.write_bytes(b"0")
    with caplog.at_level(logging.WARNING, logger="common.handlers.best_checkpoint"):
        assert select_checkpoint(best, last) == str(last)
    assert "using the last model" in caplog.text
    best.write_bytes(b"0")
    assert select_checkpoint(best, last) == str(best)
    with pytest.raises(FileNotFoundError):
        select_checkpoint(tmp_path / "other.pt", None)
