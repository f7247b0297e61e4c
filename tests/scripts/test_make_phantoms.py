import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from common.handlers.sample_grid import make_grid
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def test_preview_draws_the_bundles_preprocessed_phantom_images(tmp_path):
    cfg = REPO / "bundles" / "dcgan_wgan" / "configs"
    configs = f"['{cfg / 'train.yaml'}','{cfg / 'variants' / 'tiny.yaml'}']"
    out = tmp_path / "grid.png"
    args = ["preview", "--config_file", configs, "--output", str(out), "--num", "4", "--bundle_root", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_phantoms.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().endswith(str(out))
    grid = np.asarray(Image.open(out))
    # the phantom was created in the bundle root; 4 images -> 2 x 2 strips of 4 channels of 16x16 (tiny variant)
    dataset = tmp_path / "data" / "brain_mr_2d"
    entries = json.loads((dataset / "datalist.json").read_text())["training"]
    chosen = np.sort(np.random.default_rng(0).choice(len(entries), size=4, replace=False))
    assert grid.shape == (2 * 16 + 2, 2 * (4 * 16 + 3 * 2) + 2)
    # independent reference: the four sequence files, area-resized to 16x16 (the per-channel scaling to [-1, 1] of
    # the bundle is affine, which the per-tile percentile scaling of the grid removes)
    images = []
    for i in chosen:
        chans = [torch.as_tensor(nib.load(dataset / f).get_fdata(), dtype=torch.float32) for f in entries[i]["image"]]
        images.append(torch.nn.functional.interpolate(torch.stack(chans)[None], size=(16, 16), mode="area")[0])
    expected = make_grid(torch.stack(images))
    assert np.abs(grid.astype(int) - expected.astype(int)).max() <= 1
    assert grid.std() > 30  # heads on a black background, not a blank picture
