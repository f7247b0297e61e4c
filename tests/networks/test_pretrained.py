"""ImageNet weights of torchvision's ResNet layout loaded from a local file into MONAI's ResNet-50 (no download)."""

import pytest
import torch
from common.networks import HeadedClassifier, PretrainedWeightsError, load_imagenet_resnet
from common.utils.errors import UserInputError
from monai.networks.nets import resnet18, resnet50

BLOCKS = {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet50_keys() -> list[str]:
    """The parameter and buffer names of torchvision's resnet50 state dict (its documented module layout)."""
    keys = ["conv1.weight"] + [f"bn1.{b}" for b in BN]
    for layer, n in BLOCKS.items():
        for i in range(n):
            for j in (1, 2, 3):
                keys += [f"{layer}.{i}.conv{j}.weight"] + [f"{layer}.{i}.bn{j}.{b}" for b in BN]
        keys += [f"{layer}.0.downsample.0.weight"] + [f"{layer}.0.downsample.1.{b}" for b in BN]
    return keys + ["fc.weight", "fc.bias"]


def _backbone(in_channels: int):
    return resnet50(
        spatial_dims=2, n_input_channels=in_channels, conv1_t_stride=2, bias_downsample=False, feed_forward=False
    )


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A randomly initialised ResNet-50 written under torchvision's key names, with a 1000-class fc and the
    ``module.`` prefix of a DataParallel save; and the source network (3 channels, no fc) to compare with."""
    torch.manual_seed(0)
    source = _backbone(3)
    for m in source.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = source.state_dict()
    file_state = {}
    for key in torchvision_resnet50_keys():
        if key.startswith("fc."):
            file_state[key] = torch.randn(1000, 2048) if key == "fc.weight" else torch.zeros(1000)
        else:
            file_state[key] = state[key].clone()
    assert len(file_state) == len(state) + 2  # the layouts match key for key, plus torchvision's fc
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save({"module." + k: v for k, v in file_state.items()}, path)
    return path, source.eval()


def test_loads_torchvision_layout_and_adapts_channels(imagenet_file):
    path, source = imagenet_file
    x = torch.rand(2, 3, 64, 64)
    rgb = load_imagenet_resnet(_backbone(3), str(path)).eval()
    with torch.no_grad():
        assert torch.allclose(rgb(x), source(x), atol=1e-5)
    # one channel: the response to a grey image equals the RGB network's response to it replicated to R, G, B
    net = HeadedClassifier(_backbone(1), num_classes=2)
    head_before = {k: v.clone() for k, v in net.head.state_dict().items()}
    load_imagenet_resnet(net, path, prefix="backbone.")
    net.eval()
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net.backbone(grey), source(grey.expand(-1, 3, -1, -1)), atol=1e-4)
    assert all(torch.equal(v, net.head.state_dict()[k]) for k, v in head_before.items())  # the head is untouched
    four = _backbone(4)
    load_imagenet_resnet(four, path)
    assert torch.allclose(four.conv1.weight.sum(1), source.conv1.weight.sum(1), atol=1e-6)
    assert load_imagenet_resnet(_backbone(1), None) is not None  # no file: from scratch


def test_missing_or_unfitting_weights_raise_clear_errors(imagenet_file, tmp_path):
    missing = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(PretrainedWeightsError, match="not found") as err:
        load_imagenet_resnet(_backbone(1), str(missing))
    assert str(missing) in str(err.value) and isinstance(err.value, UserInputError)
    path, _ = imagenet_file
    with pytest.raises(PretrainedWeightsError, match="do not fit") as err:  # a ResNet-50 file for a ResNet-18
        load_imagenet_resnet(resnet18(spatial_dims=2, n_input_channels=1, feed_forward=False), path)
    assert str(path) in str(err.value) and "file keys the backbone lacks" in str(err.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="weights_only"):
        load_imagenet_resnet(_backbone(1), str(garbage))
