"""Tests of the pluggable feature extractors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from common.metrics import INCEPTION_FID_WEIGHTS, FeatureWeightsError, build_feature_extractor, extract_features
from common.utils import sha256_file
from common.utils.errors import UserInputError
from monai.data import DataLoader, Dataset
from monai.networks.nets import resnet10

from tests.networks.test_inception import scaled_inception


def _smooth(n: int, seed: int, size: int = 24, spatial_dims: int = 2, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, *([4] * spatial_dims), generator=g)
    mode = "bilinear" if spatial_dims == 2 else "trilinear"
    return F.interpolate(low, size=(size,) * spatial_dims, mode=mode, align_corners=False)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_fallback_shapes_determinism_and_name(spatial_dims):
    state = torch.random.get_rng_state()
    ext = build_feature_extractor(spatial_dims, 1, arch="resnet10", input_size=16)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG state must be untouched"
    images = _smooth(5, 0, size=20, spatial_dims=spatial_dims)
    feats = extract_features(ext, images, batch_size=2)
    assert feats.shape == (5, 512) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and feats.abs().sum() > 0
    rebuilt = build_feature_extractor(spatial_dims, 1, arch="resnet10", input_size=16)
    assert all(torch.equal(a, b) for a, b in zip(ext.state_dict().values(), rebuilt.state_dict().values()))
    assert torch.equal(feats, extract_features(rebuilt, images, batch_size=2))
    assert torch.allclose(feats, extract_features(rebuilt, images, batch_size=5), atol=1e-5)  # batching: round-off
    assert ext.name.startswith(f"fallback:random-init-resnet10-{spatial_dims}d-seed0")
    assert "not pretrained" in ext.name and "16x16" in ext.name
    assert not ext.training and not any(p.requires_grad for p in ext.parameters())
    other_seed = build_feature_extractor(spatial_dims, 1, arch="resnet10", input_size=16, seed=1)
    assert "seed1" in other_seed.name
    assert not torch.allclose(extract_features(other_seed, images), feats)


def test_extract_features_inputs():
    ext = build_feature_extractor(2, 1, arch="resnet10", input_size=16)
    images = _smooth(6, 1)
    full = extract_features(ext, images, batch_size=16)
    ds = Dataset([{"image": img, "label": 0} for img in images])
    from_loader = extract_features(ext, DataLoader(ds, batch_size=4), batch_size=3)
    assert torch.allclose(full, from_loader, atol=1e-5)
    pairs = extract_features(ext, [(images[:2], 0), (images[2:], 1)])
    assert torch.allclose(full, pairs, atol=1e-5)
    feats, imgs = extract_features(ext, [{"img": images}], image_key="img", return_images=True)
    assert torch.allclose(full, feats, atol=1e-5) and torch.equal(imgs, images)
    with pytest.raises(KeyError, match="image"):
        extract_features(ext, [{"img": images}])
    with pytest.raises(ValueError, match="no images"):
        extract_features(ext, [])
    with pytest.raises(ValueError, match="channels"):
        extract_features(ext, torch.rand(2, 3, 16, 16))


def test_minmax_normalisation_is_intensity_invariant():
    ext = build_feature_extractor(2, 1, arch="resnet10", input_size=16, normalize="minmax")
    images = _smooth(3, 2)
    assert torch.allclose(extract_features(ext, images), extract_features(ext, 5 * images - 2), atol=1e-4)
    zs = build_feature_extractor(2, 1, arch="resnet10", input_size=16, normalize="zscore", mean=0.1, std=2.0)
    assert "normalize zscore" in zs.name
    assert torch.allclose(extract_features(zs, images), extract_features(zs, 3 * images + 1), atol=1e-4)
    with pytest.raises(ValueError, match="normalize"):
        build_feature_extractor(2, 1, arch="resnet10", normalize="unknown")
    with pytest.raises(ValueError, match="arch"):
        build_feature_extractor(2, 1, arch="inception")


def test_weights_file_2d_wrapped_with_channel_adaptation(tmp_path):
    net = resnet10(spatial_dims=2, n_input_channels=3, num_classes=7)  # has an fc head, dropped on load
    path = tmp_path / "resnet10_2d.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, path)

    ext1 = build_feature_extractor(2, 1, weights_path=str(path), arch="resnet10", input_size=16)
    assert "resnet10 from weights resnet10_2d.pth sha256:" in ext1.name and "fallback" not in ext1.name
    assert "replicated to 3" in ext1.name
    assert torch.equal(ext1.backbone.conv1.weight, net.conv1.weight)

    ext2 = build_feature_extractor(2, 2, weights_path=str(path), arch="resnet10", input_size=16)
    two = _smooth(3, 3, channels=2)
    feats2 = extract_features(ext2, two)
    per_channel = torch.stack([extract_features(ext1, two[:, i : i + 1]) for i in range(2)]).mean(0)
    assert feats2.shape == (3, 512)
    assert torch.allclose(feats2, per_channel, atol=1e-5)

    ext3 = build_feature_extractor(2, 3, weights_path=str(path), arch="resnet10", input_size=16)
    assert extract_features(ext3, _smooth(2, 4, channels=3)).shape == (2, 512)


def test_weights_file_3d_medicalnet_layout(tmp_path):
    # MedicalNet resnet10/18/34 layout: parameter-free shortcut "A", single input channel, weights under "state_dict"
    net = resnet10(spatial_dims=3, n_input_channels=1, shortcut_type="A", feed_forward=False)
    path = tmp_path / "medicalnet_resnet10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    ext = build_feature_extractor(3, 1, weights_path=str(path), arch="resnet10", input_size=16)
    assert "medicalnet_resnet10.pth" in ext.name
    assert extract_features(ext, _smooth(2, 5, size=12, spatial_dims=3)).shape == (2, 512)


def test_wrong_weights_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        build_feature_extractor(2, 1, weights_path=str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="could not load"):
        build_feature_extractor(2, 1, weights_path=str(garbage))
    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(ValueError, match="state dict"):
        build_feature_extractor(2, 1, weights_path=str(tensor_file))
    r10 = tmp_path / "r10.pth"
    torch.save(resnet10(spatial_dims=2, n_input_channels=1, feed_forward=False).state_dict(), r10)
    with pytest.raises(ValueError, match="do not fit a MONAI resnet18"):
        build_feature_extractor(2, 1, weights_path=str(r10), arch="resnet18")
    with pytest.raises(ValueError, match="2D weights but spatial_dims=3"):
        build_feature_extractor(3, 1, weights_path=str(r10), arch="resnet10")


def test_inception_fid_extractor_loads_the_weights_file_2d_and_3d(tmp_path):
    net = scaled_inception()
    path = tmp_path / "fid_inception.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)  # DataParallel prefix is accepted
    ext = build_feature_extractor(2, 1, weights_path=str(path), arch="inception_v3_fid")
    assert ext.name.startswith("Inception-v3 FID pool3 (pt_inception-2015-12-05 layout) from weights fid_inception.pth")
    assert f"sha256:{sha256_file(path)[:12]}" in ext.name and "fallback" not in ext.name
    assert "input 299x299, in_channels 1 replicated to 3" in ext.name and "[0, 1] mapped to [-1, 1]" in ext.name
    loaded = ext.backbone.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in net.state_dict().items())
    assert not ext.training and not any(p.requires_grad for p in ext.parameters())
    images = _smooth(2, 6, size=20)
    feats = extract_features(ext, images)
    with torch.no_grad():
        direct = net(images)
    assert feats.shape == (2, 2048) and torch.allclose(feats, direct, rtol=1e-4, atol=1e-6)

    ext3 = build_feature_extractor(3, 1, weights_path=str(path), arch="inception_v3_fid")
    assert "3 central orthogonal slices" in ext3.name and "not comparable with 2D FID" in ext3.name
    volume = _smooth(1, 7, size=9, spatial_dims=3)
    with torch.no_grad():
        slices = [volume[:, :, 4], volume[:, :, :, 4], volume[..., 4]]
        expected = torch.stack([net(s) for s in slices]).mean(0)
    assert torch.allclose(extract_features(ext3, volume), expected, rtol=1e-4, atol=1e-6)


def test_inception_fid_extractor_clear_errors(tmp_path):
    for missing in (None, str(tmp_path / INCEPTION_FID_WEIGHTS)):
        with pytest.raises(FeatureWeightsError) as info:
            build_feature_extractor(2, 1, weights_path=missing, arch="inception_v3_fid")
        assert isinstance(info.value, UserInputError)
        message = str(info.value)
        assert INCEPTION_FID_WEIGHTS in message and "github.com/mseitzer/pytorch-fid/releases" in message
    r10 = tmp_path / "r10.pth"
    torch.save(resnet10(spatial_dims=2, n_input_channels=1, feed_forward=False).state_dict(), r10)
    with pytest.raises(FeatureWeightsError, match=r"r10.pth do not fit the FID Inception-v3.*missing keys.*unexpected"):
        build_feature_extractor(2, 1, weights_path=str(r10), arch="inception_v3_fid")
    with pytest.raises(ValueError, match="input_size must be None or 299"):
        build_feature_extractor(2, 1, weights_path=str(r10), arch="inception_v3_fid", input_size=64)
    with pytest.raises(ValueError, match="do not apply"):
        build_feature_extractor(2, 1, weights_path=str(r10), arch="inception_v3_fid", mean=0.5)
