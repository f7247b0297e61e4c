"""The thesis' classification head (Han sec. 4.2.4): dropout 0.5 -> dense -> batch norm -> sigmoid, BCE."""

import pytest
import torch
from common.networks import ClassifierHead, HeadedClassifier
from monai.networks.nets import resnet50


def test_head_structure_and_binary_logits_equal_sigmoid_bce():
    torch.manual_seed(0)
    head = ClassifierHead(in_features=12, num_classes=2, dropout=0.5)
    layers = list(head.children())
    assert [type(m) for m in layers] == [torch.nn.Dropout, torch.nn.Linear, torch.nn.BatchNorm1d]
    assert head.dropout.p == 0.5 and head.dense.out_features == 1 and head.norm.num_features == 1
    x = torch.randn(6, 12)
    logits = head(x)
    assert logits.shape == (6, 2)
    assert torch.all(logits[:, 0] == 0)
    z = logits[:, 1]
    target = torch.tensor([0, 1, 1, 0, 1, 0])
    ce = torch.nn.functional.cross_entropy(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, target.float())
    assert ce.item() == pytest.approx(bce.item(), rel=1e-6)
    assert torch.allclose(logits.softmax(1)[:, 1], torch.sigmoid(z), atol=1e-6)
    # batch norm of the single unit: zero mean, unit variance over the batch in training mode
    assert z.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert z.var(unbiased=False).item() == pytest.approx(1.0, rel=1e-3)


def test_head_multiclass_and_dropout_only_in_training():
    head = ClassifierHead(in_features=5, num_classes=3, dropout=0.5)
    assert head.dense.out_features == 3 and head(torch.randn(4, 5)).shape == (4, 3)
    head.eval()
    x = torch.randn(2, 5)
    assert torch.equal(head(x), head(x))
    with pytest.raises(ValueError):
        ClassifierHead(in_features=5, num_classes=1)


@pytest.mark.parametrize("spatial_dims,size", [(2, (32, 32)), (3, (16, 16, 16))])
def test_headed_resnet50_output_shape(spatial_dims, size):
    backbone = resnet50(spatial_dims=spatial_dims, n_input_channels=1, feed_forward=False, widen_factor=0.125)
    net = HeadedClassifier(backbone, num_classes=2)
    assert net.head.dense.in_features == int(512 * 0.125) * 4
    out = net(torch.rand(3, 1, *size))
    assert out.shape == (3, 2) and torch.all(out[:, 0] == 0)
    with pytest.raises(ValueError, match="in_features"):
        HeadedClassifier(resnet50(spatial_dims=2, n_input_channels=1, widen_factor=0.125))
