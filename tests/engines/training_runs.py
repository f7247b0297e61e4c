"""Tiny bundle trainings for the exact-resume and SIGTERM tests of test_exact_resume.py.

Imported by the tests (pytest puts this folder on ``sys.path``) and run as a script in the subprocess that is
interrupted: ``python training_runs.py SPEC.json`` where the spec is ``{"threads": int, "mode": "kill" | "term",
"runs": [{"root", "name", "ckpt_dir", "max_epochs", "save_interval", "iteration_level", "at", "losses"}, ...]}``.

- ``kill``: the first run starts; when run ``i`` completes iteration ``at`` (after its checkpoint is written), run
  ``i + 1`` starts inside it, and the last run sends SIGKILL to the process at its iteration ``at``. One process
  (one ``import monai``) thus leaves several trainings killed mid-run, with no chance to clean up.
- ``term``: the single run writes ``<ckpt_dir>/started`` at iteration ``at`` and trains on until a SIGTERM stops it.

Each run writes the losses of its iterations to its ``losses`` file as they are computed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

#: id of the CheckpointHandler in each bundle's train.yaml.
CHECKPOINT_HANDLER = {
    "dcgan_wgan": "train#handlers#1",
    "ga_unet": "train#handlers#1",
    "stylegan2": "train#handlers#1",
    "classification": "train#logging_handlers#0",
}


def build(
    root: str | os.PathLike,
    name: str,
    ckpt_dir: str | os.PathLike,
    max_epochs: int,
    save_interval: int = 1,
    iteration_level: bool = True,
    resume: bool = False,
) -> Any:
    """The initialised training workflow of a bundle copy at ``root`` with its tiny variant.

    Args:
        root: the bundle copy.
        name: the bundle (a key of :data:`CHECKPOINT_HANDLER`).
        ckpt_dir: checkpoint folder (also the parent of the outputs).
        max_epochs: epochs of the run.
        save_interval: checkpoint interval.
        iteration_level: count the interval in iterations (else epochs).
        resume: continue from the latest checkpoint in ``ckpt_dir``.

    Returns:
        the ``ConfigWorkflow`` (its trainer is ``train#trainer``).
    """
    configs = Path(root) / "configs"
    override = {
        "ckpt_dir": str(ckpt_dir),
        "output_dir": str(Path(ckpt_dir) / "eval"),
        "max_epochs": max_epochs,
        "save_interval": save_interval,
        f"{CHECKPOINT_HANDLER[name]}#epoch_level": not iteration_level,
        "resume": resume,
    }
    if name == "dcgan_wgan":
        override.update(summary_metrics=False, sample_interval=10**6)
    if name == "ga_unet":
        override.update(sample_interval=10**6)
    if name == "stylegan2":  # ADA adjusting p every iteration: its state must survive the kill too
        override.update(sample_interval=10**6, augment="ada", ada_interval=1, ada_kimg=0.01)
    wf = ConfigWorkflow(
        config_file=[str(configs / "train.yaml"), str(configs / "variants" / "tiny.yaml")],
        workflow_type="train",
        logging_file=False,
        **override,
    )
    wf.initialize()
    return wf


def loss_values(output: Any) -> dict[str, float]:
    """The scalar losses of one iteration: a step's dict, or MONAI's decollated ``SupervisedTrainer`` output."""
    if isinstance(output, dict):
        return {k: float(v) for k, v in output.items()}
    return {"loss": float(output[0]["loss"])}


def record_losses(trainer: Any, path: str | os.PathLike | None = None) -> list[dict[str, float]]:
    """Collect the losses of every iteration of ``trainer`` (and rewrite them to ``path`` each time)."""
    losses: list[dict[str, float]] = []

    def _record(engine: Any) -> None:
        losses.append(loss_values(engine.state.output))
        if path is not None:
            Path(path).write_text(json.dumps(losses))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, _record)
    return losses


def _start(runs: list[dict[str, Any]], mode: str) -> None:
    run, rest = runs[0], runs[1:]
    wf = build(
        run["root"],
        run["name"],
        run["ckpt_dir"],
        run["max_epochs"],
        run.get("save_interval", 1),
        run.get("iteration_level", True),
    )
    trainer = wf.parser.get_parsed_content("train#trainer")
    record_losses(trainer, run["losses"])

    def _at(engine: Any) -> None:
        if mode == "term":
            (Path(run["ckpt_dir"]) / "started").touch()
        elif rest:
            _start(rest, mode)
        else:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=run["at"]), _at)
    wf.run()


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(int(spec["threads"]))
    _start(spec["runs"], spec["mode"])


if __name__ == "__main__":
    main(sys.argv[1])
