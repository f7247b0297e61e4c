"""End-to-end tests of bundles/dcgan_wgan through MONAI's bundle runner, on tiny phantom data."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import DatalistError, prepare_phantom, validate_datalist
from common.engines import DiffAugment, latest_checkpoint, resolve_precision
from common.networks import DCGANDiscriminator, DCGANGenerator
from helpers import check_run_summary, cli_list, configs, evaluate_configs, free_port, run_cli, run_workflow
from monai.bundle import ConfigWorkflow

NAME = "dcgan_wgan"


@pytest.mark.parametrize(
    "variants,spatial_shape,channels",
    [
        (("tiny.yaml",), (16, 16), 4),
        (("wgan.yaml", "t1.yaml", "tiny.yaml"), (16, 16), 1),
        (("3d.yaml", "tiny_3d.yaml"), (16, 16, 16), 4),
    ],
    ids=["dcgan-concat-2d", "wgan-t1-2d", "dcgan-concat-3d"],
)
def test_train_infer_evaluate(bundle_copy, variants, spatial_shape, channels):
    root = bundle_copy(NAME)
    quick_metrics = "wgan.yaml" not in variants  # the switch off once (the 2D check already runs for dcgan)
    wf, _ = run_workflow(configs(root, "train.yaml", *variants), "training", summary_metrics=quick_metrics)
    ckpt = latest_checkpoint(root / "models")
    assert ckpt is not None and (root / "models" / "model.pt").is_file()
    state = torch.load(ckpt, weights_only=True)
    assert {"generator", "discriminator", "optimizer_generator", "optimizer_discriminator", "trainer"} <= set(state)
    assert state["trainer"]["iteration"] == wf.parser.get_parsed_content("train#trainer").state.iteration > 0
    assert list((root / "eval" / "samples").glob("samples_epoch*.png"))
    assert list((root / "eval" / "samples").glob("events.out.tfevents*"))
    summary = check_run_summary(root, sample_grid=True, metrics=quick_metrics)
    assert summary["checkpoint"] == str(ckpt) and summary["iteration"] == state["trainer"]["iteration"]
    if variants == ("tiny.yaml",):  # a resumed run that was already complete summarises the same files and numbers
        run_workflow(configs(root, "train.yaml", *variants), "training", resume=True)
        again = check_run_summary(root, sample_grid=True, metrics=True)
        assert again["checkpoint"] == str(ckpt) and again["iteration"] == summary["iteration"]
        assert again["metrics"]["generated"] == summary["metrics"]["generated"]
    if "wgan.yaml" in variants:
        d = state["discriminator"]
        assert max(v.abs().max().item() for k, v in d.items() if "weight" in k or "bias" in k) <= 0.01 + 1e-6

    wf, _ = run_workflow(configs(root, "inference.yaml", *variants), "inference")
    num_samples = wf.parser.get_parsed_content("num_samples")
    synthetic = root / "eval" / "synthetic" / "datalist.json"
    summary = validate_datalist(synthetic, spatial_dims=len(spatial_shape), num_channels=channels)
    assert summary["num_entries"]["training"] == num_samples
    data = json.loads(synthetic.read_text())
    entry = data["training"][0]
    assert entry["synthetic"] is True and entry["generator"]["bundle"] and entry["method"] in ("dcgan", "wgan")
    assert (
        entry["generator"]["checkpoint_sha256"]
        == hashlib.sha256((root / "models" / "model.pt").read_bytes()).hexdigest()
    )
    first = entry["image"][0] if isinstance(entry["image"], list) else entry["image"]
    arr = nib.load(synthetic.parent / first).get_fdata()
    assert arr.shape == spatial_shape and 0.0 <= arr.min() and arr.max() <= 1.0

    run_workflow(evaluate_configs(root, *variants), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "fallback" in metrics["feature_extractor"]
    for key in ("fid", "kid_mean", "mmd"):
        assert np.isfinite(metrics[key]), key


def test_bad_data_rejected_before_training(bundle_copy):
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml")
    # make the phantom the bundle would make, then corrupt one training image with NaNs and delete another file
    tiny = ConfigWorkflow(config_file=files, workflow_type=None, logging_file=False).parser.get("phantom_args")
    prepare_phantom(root / "data" / "brain_mr_2d", "brain_mr_2d", **tiny)
    datalist = json.loads((root / "data" / "brain_mr_2d" / "datalist.json").read_text())
    bad = root / "data" / "brain_mr_2d" / datalist["training"][0]["image"][1]
    img = nib.load(bad)
    arr = img.get_fdata().astype(np.float32)
    arr[0, 0] = np.nan
    nib.save(nib.Nifti1Image(arr, img.affine), bad)
    missing = root / "data" / "brain_mr_2d" / datalist["training"][1]["image"][0]
    missing.unlink()
    with pytest.raises(Exception) as err:
        run_workflow(files, "training")
    cause = err.value  # MONAI wraps errors of config expressions: find ours in the chain
    while cause is not None and not isinstance(cause, DatalistError):
        cause = cause.__cause__
    assert isinstance(cause, DatalistError) and len(cause.problems) == 2
    text = str(cause)
    assert str(bad) in text and "NaN" in text
    assert str(missing) in text and "not found" in text
    assert not (root / "models").exists() or latest_checkpoint(root / "models") is None


def test_cli_from_elsewhere_then_killed_run_resumes(bundle_copy, tmp_path):
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml")
    cfg = cli_list(files)
    # started from another folder: outputs go to the bundle's own folder (bundle_root found from the config path)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", cfg, "--max_epochs", "500"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and (latest_checkpoint(root / "models") is None or proc.poll() is not None):
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, "training finished or failed before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # killed without any chance to clean up
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = latest_checkpoint(root / "models")
    assert ckpt is not None
    # nothing half-written under a final name: every checkpoint and model file loads (a SIGKILL during a write can
    # only leave a hidden temporary file, which the resumed run removes: checked below)
    for path in (root / "models").glob("[!.]*.pt"):
        torch.load(path, weights_only=True)
    saved = torch.load(ckpt, weights_only=True)["trainer"]
    done_epochs = saved["iteration"] // saved["epoch_length"]
    target = done_epochs + 1
    out = run_cli(
        [
            "-m",
            "monai.bundle",
            "run",
            "training",
            "--config_file",
            cfg,
            "--resume",
            "true",
            "--max_epochs",
            str(target),
        ],
        cwd=root,
    )
    log = out.stdout + out.stderr
    assert f"resumed from {ckpt}" in log
    assert not list((root / "models").glob(".*tmp*")), "temporary files of the killed run were left behind"
    final = torch.load(latest_checkpoint(root / "models"), weights_only=True)["trainer"]
    assert final["iteration"] == saved["iteration"] + saved["epoch_length"]  # exactly one more epoch


def test_torchrun_two_processes_gloo(bundle_copy):
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml")
    files.insert(1, str(root / "configs" / "multi_gpu_train.yaml"))
    cfg = cli_list(files)
    out = run_cli(
        [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "-m",
            "monai.bundle",
            "run",
            "training",
            "--config_file",
            cfg,
            "--max_epochs",
            "2",
        ],
        cwd=root,
    )
    ckpt = latest_checkpoint(root / "models")
    assert ckpt is not None, out.stdout[-2000:]
    state = torch.load(ckpt, weights_only=True)
    # each rank saw half of the data: the epoch length is half of the single-process one
    wf = ConfigWorkflow(config_file=configs(root, "train.yaml", "tiny.yaml"), workflow_type=None, logging_file=False)
    wf.initialize()
    single_len = len(wf.parser.get_parsed_content("train#dataloader"))
    assert state["trainer"]["epoch_length"] < single_len
    assert state["trainer"]["iteration"] == 2 * state["trainer"]["epoch_length"]


def _parsed_hyper_parameters(files, tmp_path):
    """The training step, networks, optimisers and sizes that a config list gives (parsed only, no training)."""
    override = {"bundle_root": str(tmp_path), "device": "$torch.device('cpu')"}
    parser = ConfigWorkflow(config_file=files, workflow_type=None, logging_file=False, **override).parser
    step = parser.get_parsed_content("train#step")
    sizes = {k: parser.get_parsed_content(k) for k in ("batch_size", "image_size", "max_epochs", "method")}
    return step, sizes


@pytest.mark.parametrize("variant", ["dcgan_paper.yaml", "wgan.yaml"])
def test_paper_variants_keep_the_thesis_hyper_parameters(variant, bundle_copy, tmp_path):
    """variants/dcgan_paper.yaml and variants/wgan.yaml give the DCGAN and WGAN of sec. 3.2.2 (bundle 0.1.1 values)."""
    root = bundle_copy(NAME)
    step, sizes = _parsed_hyper_parameters(configs(root, "train.yaml", variant), tmp_path)
    wgan = variant == "wgan.yaml"
    assert sizes == {"batch_size": 64, "image_size": 64, "max_epochs": 150, "method": "wgan" if wgan else "dcgan"}
    assert step.adversarial.criterion == ("wgan" if wgan else "bce")
    assert (step.n_critic, step.clip_value) == ((5, 0.01) if wgan else (1, None))
    assert (step.gp_weight, step.drift_weight, step.adversarial.real_label) == (0.0, 0.0, 1.0)
    # precision is no thesis hyper-parameter: the variants keep the bundle's amp: auto (bf16 only where it is faster)
    assert step.precision == resolve_precision("auto", step.device)
    assert step.schedulers == {}  # constant learning rates
    assert step.augment is None  # no DiffAugment
    # the networks of the thesis: half channels (base 32), no tanh, ELU, batch norm, no spectral norm
    torch.manual_seed(0)
    reference_g = DCGANGenerator(2, latent_size=100, out_channels=4, image_size=64, base_channels=32)
    reference_d = DCGANDiscriminator(2, in_channels=4, image_size=64, base_channels=32, norm="batch", act="elu")
    assert repr(step.networks["generator"]) == repr(reference_g)
    assert repr(step.networks["discriminator"]) == repr(reference_d)
    for name, net in (("generator", reference_g), ("discriminator", reference_d)):
        optimizer = step.optimizers[name]
        if wgan:
            reference = torch.optim.RMSprop(net.parameters(), lr=5e-5)
        else:
            reference = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
        assert type(optimizer) is type(reference) and optimizer.defaults == reference.defaults, name


def test_default_differs_from_the_paper_dcgan_only_where_the_card_says(bundle_copy, tmp_path):
    root = bundle_copy(NAME)
    step, sizes = _parsed_hyper_parameters(configs(root, "train.yaml"), tmp_path)
    d = step.networks["discriminator"]
    assert step.adversarial.criterion == "hinge" and (step.n_critic, step.clip_value) == (1, None)
    assert sum(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in d.modules()) == 5  # spectral norm
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    assert isinstance(list(step.networks["generator"].up.children())[-1], torch.nn.Tanh)
    assert step.optimizers["generator"].defaults["lr"] < step.optimizers["discriminator"].defaults["lr"]  # TTUR
    for name, scheduler in step.schedulers.items():  # linear decay to 0 over the run
        assert scheduler.optimizer is step.optimizers[name] and scheduler.end_factor == 0.0
        assert scheduler.total_iters == sizes["max_epochs"]
    assert set(step.schedulers) == {"generator", "discriminator"}
    assert sizes["image_size"] == 64 and sizes["method"] == "dcgan"
    assert isinstance(step.augment, DiffAugment) and step.augment.policy == ("translation",)  # Zhao et al. 2020
    assert (step.augment.ratio, step.augment.fill) == (0.125, -1.0)
