"""GA-UNet generator and DenseNet critic (paper 002, sec. II-B, II-C) at tiny widths."""

import pytest
import torch
from common.networks import GAUNetCritic, GAUNetGenerator
from common.networks.blocks import BatchRenorm
from common.networks.ga_unet import SamplingDropout

TINY_G = {"channels": (2, 3, 4, 4), "latent_dim": 5, "latent_channels": 2, "class_channels": 2}
TINY_D = {"growth_rate": 2, "init_channels": 3}


def _generator(spatial_dims, size, channels=1, **kwargs):
    torch.manual_seed(0)
    return GAUNetGenerator(spatial_dims, channels, channels, image_size=size, **(TINY_G | kwargs))


@pytest.mark.parametrize(
    "spatial_dims,size,channels", [(2, 16, 1), (2, (16, 32), 3), (2, 48, 1), (3, 16, 1), (3, (16, 16, 32), 2)]
)
def test_shapes(spatial_dims, size, channels):
    g = _generator(spatial_dims, size, channels)
    d = GAUNetCritic(spatial_dims, channels, **TINY_D)
    shape = (size,) * spatial_dims if isinstance(size, int) else tuple(size)
    x = torch.rand(2, channels, *shape) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0
    assert d(y, x).shape == (2,)
    with pytest.raises(ValueError, match="spatial size"):
        g(torch.zeros(2, channels, *(s * 2 for s in shape)))


def _calibrated(g, *args):
    """The generator in eval mode with the running statistics of every (re)normalisation set from one batch.

    A fresh network's running statistics (mean 0, deviation 1) do not match its activations, whose scale shrinks
    layer after layer at initialisation, so an untrained network in eval mode hardly reacts to anything; training
    sets them, and this does at once, from a batch of 8 random images.
    """
    for m in g.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: after one batch, that batch's statistics
            m.reset_running_stats()
        elif isinstance(m, BatchRenorm):
            m.momentum = 1.0
    with torch.no_grad():
        g.train()(torch.randn(8, 1, *g.image_size), None, *args)
    return g.eval()


def test_latent_dependence_and_determinism():
    g = _calibrated(_generator(2, 32))
    x = torch.randn(2, 1, 32, 32)
    z1, z2 = torch.randn(2, 5), torch.randn(2, 5)
    with torch.no_grad():
        a, b, c = g(x, z1), g(x, z1), g(x, z2)
        drawn = g(x), g(x)  # z ~ N(0, I) is drawn when not given
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # every sample depends on its latent
    assert (drawn[0] - drawn[1]).abs().max() > 1e-4
    with torch.no_grad():  # and on the conditioning image
        assert (g(x.flip(0), z1) - a).abs().max() > 1e-4
    with pytest.raises(ValueError, match="z must have shape"):
        g(x, torch.randn(2, 4))


def test_class_conditioning():
    g = _calibrated(_generator(2, 32, num_classes=3), torch.arange(8) % 3)
    x, z = torch.randn(2, 1, 32, 32), torch.randn(2, 5)
    d = GAUNetCritic(2, 1, num_classes=3, **TINY_D).eval()
    with torch.no_grad():
        y0, y1 = g(x, z, torch.tensor([0, 0])), g(x, z, torch.tensor([2, 2]))
        s0, s1 = d(y0, x, torch.tensor([0, 0])), d(y0, x, torch.tensor([2, 2]))
    assert (y0 - y1).abs().max() > 1e-4 and (s0 - s1).abs().min() > 1e-6
    with pytest.raises(ValueError, match="labels"):
        g(x, z)
    with pytest.raises(ValueError, match="labels"):
        _generator(2, 32)(x, z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        d(y0, x)


def test_critic_judges_both_members_per_sample():
    torch.manual_seed(0)
    d = GAUNetCritic(3, 1, **TINY_D).eval()
    image, condition = torch.randn(3, 1, 16, 16, 16), torch.randn(3, 1, 16, 16, 16)
    with torch.no_grad():
        score = d(image, condition)
        assert (d(image + torch.randn_like(image), condition) - score).abs().min() > 1e-6
        assert (d(image, condition + torch.randn_like(condition)) - score).abs().min() > 1e-6
        assert (d(condition, image) - score).abs().max() > 1e-6  # the pair is ordered (x_i, x)
    # per-sample scores (no batch statistics, in training mode too): sample 0's score ignores samples 1 and 2
    d.train()
    x = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x, condition)[0], x)
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    with pytest.raises(ValueError, match="at least 16"):
        d(image[..., :8], condition[..., :8])
    with pytest.raises(ValueError, match="image and condition"):
        d(image, condition[:2])


def test_paper_architecture_counts():
    """Sec. II-C: 8 blocks of four 3x3 convs with batch renorm; DenseNet critic with 4 x 4 convs, 4 transitions."""
    g = _generator(2, 16)
    blocks = list(g.encoder) + list(g.decoder)
    assert len(g.encoder) == len(g.decoder) == 4
    for i, block in enumerate(blocks):
        convs = [m for m in block.body if isinstance(m, torch.nn.Conv2d)]
        assert [m.kernel_size for m in convs] == [(3, 3)] * 4
        assert sum(isinstance(m, BatchRenorm) for m in block.body) == 4
        assert block.shortcut.kernel_size == (1, 1)  # the 1x1 convolution passing features between blocks
        resample, act, norm, dropout = block.scale
        if i < 4:  # downscaling: stride-2 conv, leaky ReLU, batch norm, dropout
            assert isinstance(resample, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)
        else:  # upscaling: stride-2 transposed conv, leaky ReLU, batch renorm, dropout
            assert isinstance(resample, torch.nn.ConvTranspose2d) and isinstance(norm, BatchRenorm)
        assert resample.stride == (2, 2) and isinstance(dropout, torch.nn.Dropout)
        assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.01
    assert all(m.negative_slope == 0.01 for m in g.modules() if isinstance(m, torch.nn.LeakyReLU))
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.Sigmoid)) for m in g.modules())
    assert isinstance(list(g.output)[-1], torch.nn.Tanh)

    d = GAUNetCritic(2, 3)  # paper defaults: growth rate 64
    assert d.stem.in_channels == 6  # the pair, concatenated on channels
    assert len(d.dense_blocks) == len(d.transitions) == 4
    for block in d.dense_blocks:
        convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 4 and {m.out_channels for m in convs} == {64}
        assert isinstance(list(block.children())[-1], torch.nn.Dropout)  # each dense block ends with dropout
    assert not any(
        isinstance(m, (torch.nn.modules.batchnorm._NormBase, BatchRenorm)) and not isinstance(m, torch.nn.GroupNorm)
        for m in d.modules()
    )
    norms = [m for m in d.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 4 * 4 + 4 + 1 and all(m.num_groups == 1 for m in norms)  # layer norm everywhere


def test_training_step_gradients_and_renorm_counters():
    g = _generator(3, 16, num_classes=2)
    d = GAUNetCritic(3, 1, num_classes=2, **TINY_D)
    x, labels = torch.randn(2, 1, 16, 16, 16), torch.tensor([0, 1])
    (-d(g(x, labels=labels), x, labels).mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert all(int(m.num_batches_tracked) == 1 for m in g.modules() if isinstance(m, BatchRenorm))
    # the renorm schedule is set through the generator's arguments
    g = _generator(2, 16, renorm={"warmup_steps": 0, "r_ramp_steps": 0, "d_ramp_steps": 0})
    assert {m.clip_limits() for m in g.modules() if isinstance(m, BatchRenorm)} == {(3.0, 5.0)}


def test_invalid_arguments():
    with pytest.raises(ValueError, match="divisible"):
        _generator(2, 24)
    with pytest.raises(ValueError, match="spatial_dims"):
        GAUNetGenerator(1, 1, 1, image_size=16)
    with pytest.raises(ValueError, match="spatial_dims"):
        GAUNetCritic(4, 1)


def test_sampling_dropout_keeps_the_generator_stochastic_in_eval_mode():
    kwargs = {"latent_dim": 8, "image_size": 16, "channels": (4, 8), "latent_channels": 4}
    x, z = torch.randn(2, 3, 16, 16), torch.randn(2, 8)
    plain = GAUNetGenerator(2, 3, 3, **kwargs).eval()
    assert torch.equal(plain(x, z), plain(x, z))
    noisy = GAUNetGenerator(2, 3, 3, sampling_dropout=True, **kwargs).eval()
    assert not torch.equal(noisy(x, z), noisy(x, z))
    assert sum(isinstance(m, SamplingDropout) for m in noisy.modules()) == 4  # every scaling layer of 2 + 2 blocks
