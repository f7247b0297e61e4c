import hashlib
import os

import pytest
import torch
from common.engines import (
    CheckpointHandler,
    DivergenceError,
    GANStep,
    ResumeHandler,
    StepTrainer,
    TrainingStep,
    latest_checkpoint,
    rank_seed,
    require_file,
)
from common.networks import DCGANDiscriminator, DCGANGenerator
from ignite.engine import Events

LATENT = 8


def make_step(spatial_dims=2, loss="bce", n_critic=1, clip_value=None, gp_weight=0.0, amp=False, seed=0):
    torch.manual_seed(seed)
    norm = None if gp_weight else "batch"
    g = DCGANGenerator(spatial_dims, LATENT, 1, 16, base_channels=2)
    d = DCGANDiscriminator(spatial_dims, 1, 16, base_channels=2, norm=norm)
    return GANStep(
        g,
        d,
        torch.optim.Adam(g.parameters(), 1e-3),
        torch.optim.Adam(d.parameters(), 1e-3),
        LATENT,
        loss=loss,
        n_critic=n_critic,
        clip_value=clip_value,
        gp_weight=gp_weight,
        amp=amp,
    )


def make_data(spatial_dims=2, n_batches=3, batch=4):
    gen = torch.Generator().manual_seed(1)
    return [{"image": torch.rand(batch, 1, *(16,) * spatial_dims, generator=gen) * 2 - 1} for _ in range(n_batches)]


def adam_steps(optimizer):
    states = list(optimizer.state.values())
    return int(states[0]["step"]) if states else 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("loss,kwargs", [("bce", {}), ("wgan", {"clip_value": 0.01}), ("wgan", {"gp_weight": 10.0})])
def test_gan_step_trains(spatial_dims, loss, kwargs):
    step = make_step(spatial_dims, loss=loss, **kwargs)
    before = [p.detach().clone() for p in step.networks["generator"].parameters()]
    trainer = StepTrainer("cpu", 2, make_data(spatial_dims), step, seed=0)
    trainer.run()
    out = trainer.state.output
    assert {"loss_d", "loss_g"} <= set(out) and all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, step.networks["generator"].parameters()))
    if kwargs.get("clip_value"):
        assert all(p.abs().max() <= 0.01 + 1e-7 for p in step.networks["discriminator"].parameters())
    if kwargs.get("gp_weight"):
        assert "gradient_penalty" in out


def test_n_critic_counts_updates():
    step = make_step(loss="wgan", n_critic=3, clip_value=0.01)
    trainer = StepTrainer("cpu", 2, make_data(n_batches=3), step)
    trainer.run()
    assert adam_steps(step.optimizers["discriminator"]) == 6  # one critic update per iteration
    assert adam_steps(step.optimizers["generator"]) == 2  # one generator update every 3 iterations


def test_frozen_restores_and_blocks_gradients():
    step = make_step()
    d = step.networks["discriminator"]
    with step.frozen("discriminator"):
        assert not any(p.requires_grad for p in d.parameters())
        out = d(torch.randn(2, 1, 16, 16)).sum()
        assert not out.requires_grad
    assert all(p.requires_grad for p in d.parameters())


def test_generator_update_does_not_touch_discriminator():
    step = make_step(n_critic=1)
    d_before = [p.detach().clone() for p in step.networks["discriminator"].parameters()]
    # make the discriminator's own update a no-op so that only the generator update could change it
    for group in step.optimizers["discriminator"].param_groups:
        group["lr"] = 0.0
    StepTrainer("cpu", 1, make_data(n_batches=1), step).run()
    assert all(torch.equal(a, b) for a, b in zip(d_before, step.networks["discriminator"].parameters()))


def test_amp_bfloat16_on_cpu():
    step = make_step(amp=True)
    trainer = StepTrainer("cpu", 1, make_data(n_batches=2), step)
    trainer.run()
    assert all(torch.isfinite(torch.tensor(v)) for v in trainer.state.output.values())
    assert not step.scalers["generator"].is_enabled()  # gradient scaling is for float16 on CUDA only


def test_checkpoint_contents_atomic_and_weights_only(tmp_path):
    step = make_step()
    trainer = StepTrainer(
        "cpu",
        2,
        make_data(n_batches=2),
        step,
        handlers=[CheckpointHandler(tmp_path, step, n_saved=1, model_files={"model.pt": "generator"})],
    )
    trainer.run()
    files = sorted(os.listdir(tmp_path))
    assert files == ["checkpoint_4.pt", "model.pt"], files  # n_saved=1, no temporary files left
    ckpt = torch.load(tmp_path / "checkpoint_4.pt", weights_only=True)
    assert {"generator", "discriminator", "optimizer_generator", "optimizer_discriminator", "trainer"} <= set(ckpt)
    assert {"scaler_generator", "scaler_discriminator"} <= set(ckpt)
    assert ckpt["trainer"]["iteration"] == 4
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert model.keys() == step.networks["generator"].state_dict().keys()


class _Kill(Exception):
    pass


def test_killed_run_resumes_from_checkpoint_counters(tmp_path):
    data = make_data(n_batches=3)
    step = make_step()
    trainer = StepTrainer("cpu", 3, data, step, handlers=[CheckpointHandler(tmp_path, step)])

    @trainer.on(Events.ITERATION_COMPLETED(once=5))
    def kill(_):  # dies in the middle of epoch 2, after the epoch-1 checkpoint
        raise _Kill()

    with pytest.raises(_Kill):
        trainer.run()
    assert latest_checkpoint(tmp_path).name == "checkpoint_3.pt"

    step2 = make_step(seed=123)  # fresh weights: everything must come from the checkpoint
    resume = ResumeHandler(tmp_path, step2, resume=True)
    trainer2 = StepTrainer("cpu", 3, data, step2, handlers=[resume, CheckpointHandler(tmp_path, step2)])
    seen = []
    trainer2.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append((e.state.epoch, e.state.iteration)))
    trainer2.run()
    assert resume.loaded_from.name == "checkpoint_3.pt"
    assert seen[0] == (2, 4)  # continues with epoch 2, iteration 4
    assert trainer2.state.iteration == 9 and trainer2.state.epoch == 3
    assert adam_steps(step2.optimizers["discriminator"]) == 9  # optimiser state restored and continued
    assert latest_checkpoint(tmp_path).name == "checkpoint_9.pt"


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    step = make_step()
    handler = ResumeHandler(tmp_path / "none", step, resume=True)
    trainer = StepTrainer("cpu", 1, make_data(n_batches=1), step, handlers=[handler])
    trainer.run()
    assert handler.loaded_from is None and trainer.state.iteration == 1
    with pytest.raises(FileNotFoundError):
        ResumeHandler(tmp_path, step, resume=str(tmp_path / "missing.pt")).resolve()


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    step = make_step()
    data = make_data(n_batches=2)
    trainer = StepTrainer("cpu", 3, data, step, handlers=[CheckpointHandler(tmp_path, step, n_saved=3)])

    @trainer.on(Events.EPOCH_COMPLETED(once=1))
    def poison(_):
        with torch.no_grad():
            next(step.networks["discriminator"].parameters()).fill_(float("nan"))

    with pytest.raises(DivergenceError, match="discriminator loss.*nan.*epoch 2, iteration 3"):
        trainer.run()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_2.pt"]  # nothing saved after the NaN
    ckpt = torch.load(tmp_path / "checkpoint_2.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["discriminator"].values() if v.is_floating_point())


def test_step_argument_validation():
    g, d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="n_critic"):
        TrainingStep({"g": g}, {"g": torch.optim.SGD(g.parameters(), 0.1)}, n_critic=0)
    with pytest.raises(ValueError, match="not in"):
        TrainingStep({"g": g}, {"d": torch.optim.SGD(d.parameters(), 0.1)})
    with pytest.raises(ValueError, match="amp_dtype"):
        TrainingStep({"g": g}, {}, amp_dtype="int8")


def test_rank_seed_and_require_file(tmp_path):
    assert rank_seed(7) == 7  # not distributed: rank 0
    with pytest.raises(FileNotFoundError, match="train it first"):
        require_file(tmp_path / "model.pt", "train it first")
    f = tmp_path / "x.pt"
    f.write_bytes(b"1")
    assert require_file(f, "x") == str(f)


def test_same_seed_same_training():
    def run():
        step = make_step(seed=3)
        StepTrainer("cpu", 1, make_data(n_batches=2), step, seed=5).run()
        blob = b"".join(p.detach().numpy().tobytes() for p in step.networks["generator"].parameters())
        return hashlib.sha256(blob).hexdigest()

    assert run() == run()


def test_model_files_skip_missing_and_load_network_files(tmp_path):
    from common.engines import load_network_files

    step = make_step()
    with pytest.raises(ValueError, match="attn"):
        CheckpointHandler(tmp_path, step, model_files={"model.pt": "generator", "attn.pt": "attn"})
    handler = CheckpointHandler(
        tmp_path, step, model_files={"model.pt": "generator", "a.pt": "attn"}, skip_missing=True
    )
    StepTrainer("cpu", 1, make_data(n_batches=1), step, handlers=[handler]).run()
    assert (tmp_path / "model.pt").is_file() and not (tmp_path / "a.pt").exists()
    fresh = DCGANGenerator(2, LATENT, 1, 16, base_channels=2)
    assert load_network_files(tmp_path, {"model.pt": fresh, "a.pt": None}).endswith("model.pt")
    for a, b in zip(fresh.state_dict().values(), step.networks["generator"].state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="b.pt"):
        load_network_files(tmp_path, {"b.pt": fresh})


def test_training_state_checkpoints_a_supervised_trainer(tmp_path):
    """TrainingState lets CheckpointHandler/ResumeHandler save and restore a MONAI SupervisedTrainer's objects."""
    from common.engines import CheckpointHandler, ResumeHandler, TrainingState, latest_checkpoint
    from monai.engines import SupervisedTrainer

    def make():
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        data = [{"image": torch.randn(4, 3), "label": torch.randn(4, 1)} for _ in range(2)]
        trainer = SupervisedTrainer("cpu", 2, data, net, opt, torch.nn.MSELoss())
        return net, opt, trainer

    net, opt, trainer = make()
    state = TrainingState({"net": net}, optimizer=opt, scheduler=None)
    assert set(state.state_objects()) == {"net", "optimizer"}
    CheckpointHandler(tmp_path, state, model_files={"model.pt": "net"}).attach(trainer)
    trainer.run()
    assert latest_checkpoint(tmp_path).name == "checkpoint_4.pt" and (tmp_path / "model.pt").is_file()

    net2, opt2, trainer2 = make()
    trainer2.state.max_epochs = 2
    ResumeHandler(tmp_path, TrainingState({"net": net2}, optimizer=opt2), resume=True).attach(trainer2)
    trainer2.run()  # resumes at iteration 4 of 4: nothing left to do
    assert trainer2.state.iteration == 4
    assert torch.equal(net2.weight, net.weight)
    with pytest.raises(ValueError, match="both"):
        TrainingState({"a": net}, a=opt)
