"""The benchmark's plain PyTorch CycleGAN has the same networks as the project's ``cyclegan`` variant."""

import sys
from pathlib import Path

import torch
from common.networks import PatchGANDiscriminator, ResNetGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from reference_cyclegan import ReferenceCycleGAN, ReferenceDiscriminator, ReferenceGenerator  # noqa: E402


def _shapes(module, weights_only=False):
    return sorted(tuple(p.shape) for n, p in module.named_parameters() if not weights_only or n.endswith("weight"))


def test_reference_networks_match_the_project_cyclegan():
    """Same layers, so the step-time comparison compares implementations, not architectures."""
    assert _shapes(ReferenceGenerator(1, 9)) == _shapes(ResNetGenerator(2, 1, 1, num_res_blocks=9))
    assert _shapes(ReferenceGenerator(4, 6)) == _shapes(ResNetGenerator(2, 4, 4, num_res_blocks=6))
    # the project's discriminator drops the biases of instance-normalised convolutions (the norm removes them)
    assert _shapes(ReferenceDiscriminator(1), True) == _shapes(PatchGANDiscriminator(2, 1), True)
    x = torch.randn(1, 1, 64, 64)
    assert ReferenceGenerator(1, 2)(x).shape == x.shape
    assert ReferenceDiscriminator(1)(x).shape == PatchGANDiscriminator(2, 1)(x).shape == (1, 1, 6, 6)


def test_reference_step_trains_every_network():
    torch.manual_seed(0)
    model = ReferenceCycleGAN(1, num_res_blocks=1)
    before = {
        name: [p.detach().clone() for p in net.parameters()]
        for name, net in vars(model).items()
        if isinstance(net, torch.nn.Module)
    }
    losses = model.step(torch.rand(1, 1, 32, 32) * 2 - 1, torch.rand(1, 1, 32, 32) * 2 - 1)
    assert set(losses) == {"loss_g", "loss_d"} and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    for name, params in before.items():
        after = list(getattr(model, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, params)), f"{name} was not updated"
    assert len(model.pool_a.images) == len(model.pool_b.images) == 1
