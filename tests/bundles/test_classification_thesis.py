"""The thesis preset of bundles/classification (Han sec. 4.2.4): ResNet-50 with the dropout/dense/BN head, SGD,
early stopping, optional ImageNet weights from a local file; through MONAI's bundle runner at tiny sizes."""

import json

import pytest
import torch
from common.networks import HeadedClassifier, PretrainedWeightsError
from helpers import configs, evaluate_configs, run_workflow
from monai.networks.nets import resnet50

NAME = "classification"
TINY = {"image_size": 16, "batch_size": 4, "widen_factor": 0.125}


def _chain(err: BaseException) -> list[BaseException]:
    out = []
    while err is not None:
        out.append(err)
        err = err.__cause__ or err.__context__
    return out


def test_thesis_preset_stops_early_and_evaluates(bundle_copy):
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml", "thesis.yaml")
    # a frozen learning rate: the validation accuracy cannot keep improving, so patience 1 must end the run early
    wf, _ = run_workflow(files, "training", max_epochs=8, early_stop_patience=1, learning_rate=0.0, **TINY)
    network = wf.parser.get_parsed_content("network")
    assert isinstance(network, HeadedClassifier) and network.head.dropout.p == 0.5
    assert network.head.dense.out_features == 1 and network.backbone.fc is None
    optimizer = wf.parser.get_parsed_content("optimizer")
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0.0
    scheduler = wf.parser.get_parsed_content("lr_scheduler")
    assert (scheduler.step_size, scheduler.gamma) == (20, 0.1)  # from scratch
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert 2 <= trainer.state.epoch < 8  # stopped by the early-stopping handler, not by max_epochs
    assert wf.parser.get_parsed_content("in_channels") == 1  # T1c only

    run_workflow(evaluate_configs(root, "tiny.yaml", "thesis.yaml"), "evaluating", **TINY)
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["arch"] == "resnet50" and 0.0 <= metrics["acc"] <= 1.0 and metrics["num_samples"] > 0


def test_thesis_preset_with_imagenet_weights(bundle_copy, tmp_path):
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml", "thesis.yaml")
    missing = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(Exception) as err:
        run_workflow(files, "training", max_epochs=1, pretrained_weights=str(missing), **TINY)
    errors = [e for e in _chain(err.value) if isinstance(e, PretrainedWeightsError)]
    assert errors and str(missing) in str(errors[0])

    torch.manual_seed(0)
    source = resnet50(spatial_dims=2, n_input_channels=3, conv1_t_stride=2, bias_downsample=False, num_classes=1000)
    weights = tmp_path / "resnet50.pth"
    torch.save(source.state_dict(), weights)  # torchvision's key layout, with its 1000-class fc
    overrides = {**TINY, "widen_factor": 1.0, "max_epochs": 1, "learning_rate": 0.0, "pretrained_weights": str(weights)}
    wf, _ = run_workflow(files, "training", **overrides)
    scheduler = wf.parser.get_parsed_content("lr_scheduler")
    assert (scheduler.step_size, scheduler.gamma) == (5, 0.5)  # the pre-trained schedule
    network = wf.parser.get_parsed_content("network")
    expected = source.conv1.weight.sum(1, keepdim=True)  # three RGB channels folded onto the one T1c channel
    assert torch.allclose(network.backbone.conv1.weight.detach().cpu(), expected, atol=1e-6)
    assert torch.equal(network.backbone.layer4[2].conv3.weight.detach().cpu(), source.layer4[2].conv3.weight.detach())
