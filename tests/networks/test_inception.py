"""Tests of the FID Inception-v3 (``common.networks.inception``): layout of the published weights, the FID-specific
pooling, input convention and output shape."""

from __future__ import annotations

import torch
import torch.nn as nn
from common.networks import FIDInceptionV3
from common.networks.inception import _avg_pool_same

# shapes of a few entries of pt_inception-2015-12-05-6726825d.pth (torchvision's Inception-v3 naming, 1008 classes)
PUBLISHED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def scaled_inception() -> FIDInceptionV3:
    """A fresh network whose features do not vanish (He-normal convolutions; PyTorch's default shrinks them)."""
    net = FIDInceptionV3()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.eval()


def test_layout_matches_the_published_state_dict_and_round_trips(tmp_path):
    net = FIDInceptionV3()
    state = net.state_dict()
    assert {k: tuple(state[k].shape) for k in PUBLISHED_SHAPES} == PUBLISHED_SHAPES
    assert sum(p.numel() for p in net.parameters()) == 23_850_960  # torchvision's count without aux, 1008 classes
    assert not any(k.startswith("AuxLogits") for k in state)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 94 and all(c.bias is None for c in convs)
    assert all(n.eps == 1e-3 for n in norms)
    path = tmp_path / "fid_inception.pth"
    torch.save(state, path)
    other = FIDInceptionV3()
    other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in state.items())


def test_fid_pooling_patches():
    ones = torch.ones(1, 2, 5, 5)
    assert torch.equal(_avg_pool_same(ones), ones)  # TensorFlow pooling: zero padding left out of border averages
    net = FIDInceptionV3()
    assert net.Mixed_7c.max_pool and not net.Mixed_7b.max_pool
    x = torch.randn(1, 2048, 8, 8)
    block = net.Mixed_7c.eval()
    with torch.no_grad():
        out = block(x)
        block.max_pool = False
        assert not torch.allclose(out, block(x))  # the pool branch really differs
    assert out.shape == (1, 2048, 8, 8)


def test_features_shape_channels_and_input_mapping():
    net = scaled_inception()
    g = torch.Generator().manual_seed(1)
    grey = torch.rand(2, 1, 40, 36, generator=g)
    with torch.no_grad():
        feats = net(grey)
        rgb = net(grey[:1].expand(-1, 3, -1, -1))
        raw = FIDInceptionV3(normalize_input=False)
        raw.load_state_dict(net.state_dict())
        signed = raw.eval()(2.0 * grey[:1] - 1.0)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert feats.abs().mean() > 1e-3 and not torch.allclose(feats[0], feats[1])
    assert torch.allclose(feats[:1], rgb, rtol=1e-4, atol=1e-6)  # grey is replicated to RGB
    assert torch.allclose(feats[:1], signed, rtol=1e-4, atol=1e-6)  # [0, 1] mapped to [-1, 1]
    assert (feats >= 0).all()  # average of ReLU outputs
