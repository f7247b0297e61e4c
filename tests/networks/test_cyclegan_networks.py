import pytest
import torch
import torch.nn as nn
from common.networks import (
    AMSEBlock,
    CBAMBlock,
    PatchGANDiscriminator,
    ResidualAttentionBlock,
    ResNetGenerator,
    SEBlock,
    SpatialAttentionNetwork,
    attention_composite,
    patchgan_receptive_field,
)
from torch.nn.utils import parametrize

ATTENTION_TYPES = {None: nn.Identity, "none": nn.Identity, "se": SEBlock, "amse": AMSEBlock, "cbam": CBAMBlock}
CONVS = (nn.Conv2d, nn.Conv3d)


def _size(spatial_dims, n):
    return (n,) * spatial_dims


# ---------------------------------------------------------------- residual block


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", list(ATTENTION_TYPES))
def test_residual_block_shapes_and_attention(spatial_dims, attention):
    torch.manual_seed(0)
    block = ResidualAttentionBlock(spatial_dims, 16, attention=attention, reduction=4)
    assert type(block.attention) is ATTENTION_TYPES[attention]
    convs = [m for m in block.modules() if isinstance(m, CONVS) and m.kernel_size == (3,) * spatial_dims]
    assert len(convs) == 2 and all(c.padding_mode == "reflect" for c in convs)
    x = torch.randn(2, 16, *_size(spatial_dims, 4))
    out = block(x)
    assert out.shape == x.shape
    with torch.no_grad():  # eq. 3: X' = A(U) + X with U the conv branch
        assert torch.allclose(out, block.attention(block.conv_block(x)) + x, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", ["none", "se", "amse", "cbam"])
@pytest.mark.parametrize("norm", ["instance", None])
def test_residual_block_with_zero_convs_is_identity(spatial_dims, attention, norm):
    block = ResidualAttentionBlock(spatial_dims, 8, attention=attention, norm=norm, reduction=2)
    with torch.no_grad():
        for m in block.conv_block.modules():
            if isinstance(m, CONVS):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
    x = torch.randn(2, 8, *_size(spatial_dims, 4))
    assert torch.equal(block(x), x)


def test_residual_block_dropout_and_padding():
    block = ResidualAttentionBlock(2, 8, dropout=0.5, padding_mode="zeros")
    assert any(isinstance(m, nn.Dropout) for m in block.modules())
    assert all(m.padding_mode == "zeros" for m in block.modules() if isinstance(m, nn.Conv2d))


# ---------------------------------------------------------------- generators


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (3, 16)])
@pytest.mark.parametrize("attention", list(ATTENTION_TYPES))
def test_resnet_generator(spatial_dims, size, attention):
    torch.manual_seed(0)
    g = ResNetGenerator(spatial_dims, 2, 3, base_channels=4, num_res_blocks=2, attention=attention, reduction=4)
    x = torch.randn(2, 2, *_size(spatial_dims, size))
    with torch.no_grad():
        y = g(x)
    assert y.shape == (2, 3, *_size(spatial_dims, size))
    assert float(y.abs().max()) <= 1.0 and isinstance(g.output[-1], nn.Tanh)
    blocks = list(g.res_blocks)
    assert len(blocks) == 2 and all(type(b) is ResidualAttentionBlock for b in blocks)
    assert all(type(b.attention) is ATTENTION_TYPES[attention] for b in blocks)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_resnet_generator_layout(spatial_dims):
    g = ResNetGenerator(spatial_dims, 1, 1, base_channels=8, num_res_blocks=1, num_downsamplings=2)
    k = lambda n: (n,) * spatial_dims  # noqa: E731
    convs = [m for m in g.encoder if isinstance(m, CONVS)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [
        (k(7), k(1), 8),
        (k(3), k(2), 16),
        (k(3), k(2), 32),
    ]
    assert convs[0].padding == k(3) and convs[0].padding_mode == "reflect"
    ups = [m for m in g.decoder if isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d))]
    assert [(u.kernel_size, u.stride, u.padding, u.output_padding, u.out_channels) for u in ups] == [
        (k(3), k(2), k(1), k(1), 16),
        (k(3), k(2), k(1), k(1), 8),
    ]
    out_conv = g.output[0]
    assert out_conv.kernel_size == k(7) and out_conv.padding_mode == "reflect" and out_conv.out_channels == 1
    norms = (nn.InstanceNorm2d, nn.InstanceNorm3d)
    assert sum(isinstance(m, norms) for m in g.modules()) == 1 + 2 + 2 * 1 + 2
    linear = ResNetGenerator(spatial_dims, 1, 1, base_channels=4, num_res_blocks=1, output_act=None)
    assert len(linear.output) == 1 and isinstance(linear.output[0], CONVS)  # no output activation


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (3, 16)])
def test_resnet_generator_attention_head(spatial_dims, size):
    torch.manual_seed(0)
    g = ResNetGenerator(spatial_dims, 1, 1, base_channels=4, num_res_blocks=1, attention="amse", attention_head=True)
    x = torch.randn(2, 1, *_size(spatial_dims, size))
    image, mask = g(x)
    assert image.shape == (2, 1, *_size(spatial_dims, size))
    assert mask.shape == (2, 1, *_size(spatial_dims, size))
    assert float(mask.detach().min()) >= 0.0 and float(mask.detach().max()) <= 1.0
    # AGGAN: the mask shares the generator: it depends on the stem and on the residual blocks
    mask.sum().backward()
    assert float(g.encoder[0].weight.grad.abs().sum()) > 0
    assert float(g.res_blocks[0].conv_block[0].weight.grad.abs().sum()) > 0
    assert g.output[0].weight.grad is None  # the image head is not on the mask's path


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (3, 16)])
def test_spatial_attention_network(spatial_dims, size):
    torch.manual_seed(0)
    a = SpatialAttentionNetwork(spatial_dims, 2, base_channels=4, num_res_blocks=1)
    assert isinstance(a, ResNetGenerator) and isinstance(a.output[-1], nn.Sigmoid) and a.mask_output is None
    assert all(isinstance(b.attention, nn.Identity) for b in a.res_blocks)
    with torch.no_grad():
        m = a(torch.randn(3, 2, *_size(spatial_dims, size)))
    assert m.shape == (3, 1, *_size(spatial_dims, size))
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0


def test_generator_rejects_bad_sizes():
    g = ResNetGenerator(2, 1, 1, base_channels=4, num_res_blocks=1)
    with pytest.raises(ValueError, match="divisible"):
        g(torch.randn(1, 1, 30, 32))
    with pytest.raises(ValueError, match="spatial_dims"):
        ResNetGenerator(1, 1, 1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_attention_composite(spatial_dims, channels):
    torch.manual_seed(0)
    shape = (2, channels, *_size(spatial_dims, 4))
    image, generated = torch.randn(shape), torch.randn(shape)
    mask = torch.rand(2, 1, *_size(spatial_dims, 4))
    mask[..., 0] = 0.0  # background
    mask[..., 1] = 1.0  # foreground
    out = attention_composite(image, generated, mask)
    assert out.shape == shape
    assert torch.equal(out[..., 0], image[..., 0])  # exactly the input where the mask is 0
    assert torch.equal(out[..., 1], generated[..., 1])  # exactly the generated image where it is 1
    assert torch.allclose(out, mask * generated + (1 - mask) * image)
    with pytest.raises(ValueError):
        attention_composite(image, generated, mask[:, 0])


# ---------------------------------------------------------------- PatchGAN


@pytest.mark.parametrize(
    "spatial_dims,size,patches", [(2, 64, 6), (2, 256, 30), (3, 32, 2)]  # 256 -> 30x30 as in pix2pix/CycleGAN
)
def test_patchgan_shapes_and_layout(spatial_dims, size, patches):
    d = PatchGANDiscriminator(spatial_dims, 2, base_channels=2)
    out = d(torch.randn(2, 2, *_size(spatial_dims, size)))
    assert out.shape == (2, 1, *_size(spatial_dims, patches))
    convs = [m for m in d.modules() if isinstance(m, CONVS)]
    k = lambda n: (n,) * spatial_dims  # noqa: E731
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [
        (k(4), k(2), 2),
        (k(4), k(2), 4),
        (k(4), k(2), 8),
        (k(4), k(1), 16),
        (k(4), k(1), 1),
    ]
    acts = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.2 for a in acts)
    norms = [m for m in d.modules() if isinstance(m, (nn.InstanceNorm2d, nn.InstanceNorm3d))]
    assert [n.num_features for n in norms] == [4, 8, 16]  # no norm after the first conv


@pytest.mark.parametrize("spatial_dims,num_layers", [(2, 1), (2, 2), (2, 3), (3, 3)])
def test_patchgan_receptive_field(spatial_dims, num_layers):
    """One output patch sees exactly an RF^d input window (70x70 for num_layers=3), measured by its gradient."""
    torch.manual_seed(0)
    rf = patchgan_receptive_field(num_layers)
    assert rf == {1: 16, 2: 34, 3: 70}[num_layers]
    d = PatchGANDiscriminator(spatial_dims, 1, base_channels=2, num_layers=num_layers, norm=None)
    assert d.receptive_field == rf
    with torch.no_grad():  # positive weights: no cancellation, every path contributes a non-zero gradient
        for m in d.modules():
            if isinstance(m, CONVS):
                m.weight.uniform_(0.05, 0.1)
    size = 80 if num_layers == 3 else 48
    x = torch.randn(1, 1, *_size(spatial_dims, size), requires_grad=True)
    out = d(x)
    centre = tuple(s // 2 for s in out.shape[2:])
    out[(0, 0, *centre)].backward()
    nonzero = (x.grad[0, 0] != 0).nonzero()
    lo, hi = nonzero.amin(0), nonzero.amax(0)
    assert (hi - lo + 1).tolist() == [rf] * spatial_dims
    assert int(lo.min()) > 0 and int(hi.max()) < size - 1  # the window is not clipped by the image border
    stride = 2**num_layers
    padding = sum(2**i for i in range(num_layers)) + 2 * stride  # padding 1 at each layer, scaled by the jump
    assert lo.tolist() == [c * stride - padding for c in centre]


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (3, 32)])
def test_patchgan_spectral_norm(spatial_dims, size):
    torch.manual_seed(0)
    x = torch.randn(2, 1, *_size(spatial_dims, size))

    def sigmas(d):
        convs = [m for m in d.modules() if isinstance(m, CONVS)]
        assert len(convs) == 5
        return convs, [float(torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2)) for c in convs]

    d = PatchGANDiscriminator(spatial_dims, 1, base_channels=8, spectral_norm=True).train()
    for _ in range(10):  # power iterations, one per forward pass in train mode
        d(x)
    convs, values = sigmas(d.eval())
    assert all(parametrize.is_parametrized(c, "weight") for c in convs)  # EVERY conv, the first and last included
    assert all(abs(s - 1) < 0.05 for s in values), values
    _, plain = sigmas(PatchGANDiscriminator(spatial_dims, 1, base_channels=8, spectral_norm=False))
    # the "w/o SN" ablation: N(0, 0.02) weights, spectral norms far from 1 (the first conv's is ~0.1-0.2)
    assert not all(abs(s - 1) < 0.05 for s in plain) and plain[0] < 0.5, plain


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_patchgan_attention_input(spatial_dims):
    torch.manual_seed(0)
    d = PatchGANDiscriminator(spatial_dims, 2, base_channels=4, attention_input=True)
    first = next(m for m in d.modules() if isinstance(m, CONVS))
    assert first.in_channels == 3  # image channels + the one-channel attention map (eq. 7-8)
    x = torch.randn(2, 2, *_size(spatial_dims, 32), requires_grad=True)
    m = torch.rand(2, 1, *_size(spatial_dims, 32), requires_grad=True)
    out = d(x, m)
    assert out.shape[:2] == (2, 1)
    with torch.no_grad():
        assert torch.allclose(out, nn.Sequential.forward(d.model, torch.cat([x, m], 1)))
        assert not torch.allclose(out, d(x, torch.zeros_like(m)))
    out.mean().backward()
    assert m.grad is None  # the map is detached: no gradient into the attention network through D
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="attention_map"):
        d(x)
    with pytest.raises(ValueError, match="attention_map"):
        d(x, torch.rand(2, 2, *_size(spatial_dims, 32)))
    with pytest.raises(ValueError, match="attention_map"):
        PatchGANDiscriminator(spatial_dims, 2, base_channels=4)(x, m)
    with pytest.raises(ValueError, match="image channels"):
        d(torch.randn(2, 3, *_size(spatial_dims, 32)), m)
