"""Every bundle's ``multi_gpu_train.yaml`` trains under ``torchrun`` with 2 gloo processes on CPU (tiny sizes)."""

import pytest
import torch
from common.engines import latest_checkpoint
from helpers import cli_list, free_port, run_cli

# bundle -> the variants merged after train.yaml and multi_gpu_train.yaml (tiny sizes)
BUNDLES = {
    "classification": ["tiny.yaml"],
    "segmentation": ["tiny.yaml"],
    "detection": ["2d.yaml", "tiny_2d.yaml"],
    "mcgan_3d": ["tiny.yaml"],
    "pggan": ["tumour.yaml", "tiny.yaml"],
    "cpggan": ["tiny.yaml"],
    "pix2pix": ["tiny.yaml"],
    "munit": ["tiny.yaml"],
    "simgan": ["tiny.yaml"],
    "ga_unet": ["tiny.yaml"],
    "stylegan2": ["tiny.yaml"],
    "msg_gan": ["tumour.yaml", "tiny.yaml"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_multi_gpu_train_two_gloo_processes(bundle_copy, name):
    root = bundle_copy(name)
    cfg = root / "configs"
    files = [cfg / "train.yaml", *[cfg / "variants" / v for v in BUNDLES[name]], cfg / "multi_gpu_train.yaml"]
    run_cli(
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
            cli_list([str(f) for f in files]),
        ],
        cwd=root,
    )
    ckpt = latest_checkpoint(root / "models")
    assert ckpt is not None, f"{name}: no checkpoint written under torchrun"
    state = torch.load(ckpt, weights_only=True)
    assert state["trainer"]["iteration"] > 0
    # rank 0 alone writes: one checkpoint series, no per-rank duplicates or leftover temporary files
    assert not [p for p in (root / "models").iterdir() if ".tmp" in p.name]
