import pytest
import torch
from common.networks import DCGANDiscriminator, DCGANGenerator, dcgan


@pytest.mark.parametrize("spatial_dims,size", [(2, 64), (2, 128), (2, (32, 48)), (3, 32)])
@pytest.mark.parametrize("channels", [1, 4])
def test_shapes(spatial_dims, size, channels):
    g = DCGANGenerator(spatial_dims, latent_size=8, out_channels=channels, image_size=size, base_channels=4)
    d = DCGANDiscriminator(spatial_dims, in_channels=channels, image_size=size, base_channels=4)
    x = g(torch.randn(2, 8))
    expected = (size,) * spatial_dims if isinstance(size, int) else tuple(size)
    assert x.shape == (2, channels, *expected)
    assert d(x).shape == (2, 1)
    # a (B, latent, 1, 1) latent is accepted as well
    assert g(torch.randn(2, 8, 1, 1)).shape == x.shape


def test_paper_architecture_choices():
    g = DCGANGenerator(2, 100, 4, 128)
    d = DCGANDiscriminator(2, 4, 128)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert all(m.kernel_size == (4, 4) for m in convs)  # all filters 4x4
    assert [m.out_channels for m in convs] == [128, 64, 32, 4]  # half of the reference 256/128/64 (+ output)
    assert not any(isinstance(m, torch.nn.Tanh) for m in g.modules())  # no tanh in the generator
    assert any(isinstance(m, torch.nn.ELU) for m in d.modules())  # ELU in the discriminator
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in d.modules())
    dconvs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.kernel_size == (4, 4) for m in dconvs)
    # the output layer is the last transposed conv itself: no output activation bounds the values
    assert isinstance(list(g.up.children())[-1], torch.nn.ConvTranspose2d)
    assert isinstance(list(DCGANGenerator(2, 8, 1, 16, output_act="tanh").up.children())[-1], torch.nn.Tanh)


def test_invalid_sizes():
    with pytest.raises(ValueError, match="divisible"):
        DCGANGenerator(2, 8, 1, 40)
    with pytest.raises(ValueError, match="spatial_dims"):
        DCGANDiscriminator(1, 1, 64)


def test_gradients_flow_2d_3d():
    for dims in (2, 3):
        g = DCGANGenerator(dims, 8, 2, 16, base_channels=2)
        d = DCGANDiscriminator(dims, 2, 16, base_channels=2)
        d(g(torch.randn(2, 8))).sum().backward()
        assert all(p.grad is not None for p in g.parameters())


def _reference_dcgan_init(module: torch.nn.Module) -> None:
    """The DCGAN initialisation by its definition (Radford et al. 2016, sec. 4), in module order."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
            torch.nn.init.zeros_(m.bias)
        elif isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)


@pytest.mark.parametrize(
    "build",
    [
        lambda: DCGANGenerator(2, 8, 4, 32, base_channels=4),
        lambda: DCGANGenerator(3, 8, 1, 16, base_channels=4),
        lambda: DCGANDiscriminator(2, 4, 32, base_channels=4),
        lambda: DCGANDiscriminator(3, 1, 16, base_channels=4, norm="instance"),
        lambda: DCGANDiscriminator(2, 1, 32, base_channels=4, norm=None),
    ],
)
def test_initialisation_is_dcgan(build, monkeypatch):
    """MONAI's normal_init gives, for a fixed seed, exactly the weights of the DCGAN initialisation."""
    torch.manual_seed(3)
    net = build()
    monkeypatch.setattr(dcgan, "normal_init", lambda m: None)
    torch.manual_seed(3)
    reference = build()
    _reference_dcgan_init(reference)
    for (name, value), expected in zip(net.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(value, expected), name
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            assert torch.all(m.bias == 0) and torch.all((m.weight - 1.0).abs() < 0.1)  # 5 standard deviations
        elif hasattr(m, "weight") and m.weight is not None and m.weight.numel() > 200:
            assert abs(m.weight.std().item() - 0.02) < 0.004 and abs(m.weight.mean().item()) < 0.004
        if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and m.bias is not None:
            assert torch.all(m.bias == 0)


def test_spectral_norm_option():
    torch.manual_seed(0)
    plain = DCGANDiscriminator(2, 4, 32, base_channels=4, norm=None)
    torch.manual_seed(0)
    sn = DCGANDiscriminator(2, 4, 32, base_channels=4, norm=None, spectral_norm=True)
    assert not any("parametrizations" in k for k in plain.state_dict())  # off by default: the thesis' keys
    # the unnormalised weights are the DCGAN initialisation of the plain network
    originals = {k.replace(".parametrizations.weight.original", ".weight"): v for k, v in sn.state_dict().items()}
    for key, value in plain.state_dict().items():
        assert torch.equal(originals[key], value), key
    layers = [m for m in sn.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) == 5 and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    x = torch.randn(8, 4, 32, 32)
    for _ in range(30):  # each training forward runs one power iteration
        sn(x)
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        assert abs(sigma - 1.0) < 0.05, sigma
