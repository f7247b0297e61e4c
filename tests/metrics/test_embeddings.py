"""t-SNE of image features (paper 003 sec. 4.2.6)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import draw_per_class, read_datalist_images
from common.evaluation.embeddings import tsne_real_vs_synthetic
from common.metrics.embeddings import image_features, tsne_embedding
from monai.data import load_decathlon_datalist


def _two_clusters(n_per=10, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.1, (n_per, dim))
    b = rng.normal(5.0, 0.1, (n_per, dim))
    return np.concatenate([a, b]), np.array([0] * n_per + [1] * n_per)


def _separated(coords, labels):
    """Every point is nearer to its own cluster's centroid than to the other's."""
    c0, c1 = coords[labels == 0].mean(0), coords[labels == 1].mean(0)
    d0 = np.linalg.norm(coords - c0, axis=1)
    d1 = np.linalg.norm(coords - c1, axis=1)
    return bool(np.all((d0 < d1) == (labels == 0)))


def test_tsne_shape_and_separation():
    x, y = _two_clusters()
    coords, info = tsne_embedding(x, perplexity=100, max_iter=300, seed=0)
    assert coords.shape == (20, 2)
    assert np.all(np.isfinite(coords))
    assert info["perplexity"] == pytest.approx(19 / 3)  # lowered below N
    assert _separated(coords, y)


def test_tsne_rejects_tiny_sets():
    with pytest.raises(ValueError, match="at least 4"):
        tsne_embedding(np.zeros((3, 5)))


@pytest.mark.parametrize("shape", [(6, 2, 20, 20), (6, 1, 12, 12, 12)])
def test_pixel_features_named(shape):
    feats, name = image_features(torch.rand(shape), kind="pixels", size=8)
    assert feats.shape == (6, shape[1] * 8 ** (len(shape) - 2))
    assert float(feats.min()) == 0.0 and float(feats.max()) == 1.0
    assert name.startswith("pixels: area-resized to 8x8")


def test_extractor_features_named():
    feats, name = image_features(torch.rand(5, 1, 16, 16), kind="extractor")
    assert feats.shape[0] == 5 and feats.ndim == 2
    assert "fallback:random-init" in name


def _write_set(folder, name, values_by_class, n_per_class=6, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    rng = np.random.default_rng(len(name))
    for cls, value in values_by_class.items():
        for i in range(n_per_class):
            img = rng.normal(0, 0.05, (size, size)).astype(np.float32)
            half = slice(0, size // 2) if value else slice(size // 2, size)
            img[half] += 1.0  # class 1: bright top half, class 0: bright bottom half
            f = f"{name}_{cls}_{i}.nii.gz"
            nib.save(nib.Nifti1Image(img, np.eye(4)), str(folder / f))
            entries.append({"image": f, "class": cls})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": entries}))
    return str(path)


def test_real_vs_synthetic_from_datalists(tmp_path):
    real = _write_set(tmp_path / "real", "real", {0: 0, 1: 1})
    syn = _write_set(tmp_path / "syn", "syn", {0: 0, 1: 1})
    entries = draw_per_class(load_decathlon_datalist(real, True, "training"), max_per_class=4, seed=1)
    images, classes = read_datalist_images(entries, None, 8, scale=False), [e["class"] for e in entries]
    assert images.shape == (8, 1, 8, 8)
    assert sorted(classes) == [0] * 4 + [1] * 4
    out = tsne_real_vs_synthetic(real, syn, per_class=5, spatial_size=16, perplexity=100, max_iter=300)
    coords = np.array(out["coords"])
    assert coords.shape == (20, 2)
    assert out["sources"] == ["real"] * 10 + ["synthetic"] * 10
    assert out["features"].startswith("pixels")
    # the two classes differ far more than real and synthetic do: t-SNE separates the classes
    assert _separated(coords, np.array(out["classes"]))


def test_real_vs_synthetic_with_their_own_channel_layouts(tmp_path):
    """4-channel-style real slices (an entry lists one file per channel; the class shows in channel 1) against a
    generator's one-channel images: ``channels=[1]`` with ``synthetic_channels=[0]`` compares like with like."""
    syn = _write_set(tmp_path / "syn", "syn", {0: 0, 1: 1})
    real_one = _write_set(tmp_path / "real", "real", {0: 0, 1: 1})
    data = json.loads(Path(real_one).read_text())
    noise = tmp_path / "real" / "noise.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)), str(noise))
    data["training"] = [{**e, "image": [noise.name, e["image"]]} for e in data["training"]]
    real = tmp_path / "real" / "two_channels.json"
    real.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="syn/datalist.json: channel indices \\[1\\] out of range"):
        tsne_real_vs_synthetic(str(real), syn, per_class=5, spatial_size=16, channels=[1], max_iter=300)
    out = tsne_real_vs_synthetic(
        str(real), syn, per_class=5, spatial_size=16, channels=[1], synthetic_channels=[0], max_iter=300
    )
    coords = np.array(out["coords"])
    assert coords.shape == (20, 2) and _separated(coords, np.array(out["classes"]))
