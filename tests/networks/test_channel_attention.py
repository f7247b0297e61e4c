import numpy as np
import pytest
import torch
from common.networks import AMSEBlock, CBAMBlock, SEBlock, get_channel_attention
from monai.networks.blocks import ChannelSELayer

W1 = [[1.0, -1.0], [0.5, 2.0]]
B1 = [0.1, -0.2]
W2 = [[1.0, 0.0], [-1.0, 1.0]]
B2 = [0.0, 0.5]


def _set_fc(block: SEBlock) -> None:
    with torch.no_grad():
        block.fc[0].weight.copy_(torch.tensor(W1))
        block.fc[0].bias.copy_(torch.tensor(B1))
        block.fc[2].weight.copy_(torch.tensor(W2))
        block.fc[2].bias.copy_(torch.tensor(B2))


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def test_amse_hand_computed_2d():
    """Eq. 1-3 on a 2-channel 2x2 input, every intermediate value written out by hand."""
    block = AMSEBlock(2, channels=2, reduction=1)
    _set_fc(block)
    u = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[-1.0, 0.0], [1.0, -4.0]]]])
    # eq. 1: channel 0: mean 3 + max 6 = 9; channel 1: mean -1 + max 1 = 0
    assert block.squeeze(u).tolist() == [[9.0, 0.0]]
    # FC1: [1*9 - 1*0 + 0.1, 0.5*9 + 2*0 - 0.2] = [9.1, 4.3]; ReLU keeps both
    # FC2: [1*9.1 + 0*4.3 + 0, -1*9.1 + 1*4.3 + 0.5] = [9.1, -4.3]; sigmoid
    z_prime = [1.0 / (1.0 + np.exp(-9.1)), 1.0 / (1.0 + np.exp(4.3))]
    expected = np.array(u[0].tolist()) * np.array(z_prime)[:, None, None]
    np.testing.assert_allclose(block(u)[0].detach().numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_amse_matches_numpy(spatial_dims):
    torch.manual_seed(0)
    block = AMSEBlock(spatial_dims, channels=2, reduction=1)
    _set_fc(block)
    u = torch.randn(3, 2, *([2] * spatial_dims))
    un = u.numpy().reshape(3, 2, -1)
    z = un.mean(-1) + un.max(-1)  # eq. 1, summed before the shared FC
    h = np.maximum(z @ np.array(W1).T + np.array(B1), 0.0)
    z_prime = _sigmoid(h @ np.array(W2).T + np.array(B2))  # eq. 2
    expected = (un * z_prime[..., None]).reshape(u.shape)  # Z' * U (eq. 3 without the residual)
    out = block(u)
    assert out.shape == u.shape
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_amse_differs_from_se_with_the_same_weights(spatial_dims):
    torch.manual_seed(1)
    amse = AMSEBlock(spatial_dims, channels=8, reduction=2)
    se = SEBlock(spatial_dims, channels=8, reduction=2)
    se.load_state_dict(amse.state_dict())  # same parameters: fc.0 and fc.2
    x = torch.randn(2, 8, *([4] * spatial_dims))  # max != mean in every channel
    assert not torch.allclose(amse(x), se(x), atol=1e-4)
    # the only difference is the squeeze: SE applied to a map whose mean equals AMSE's mean + max matches AMSE
    flat = x.flatten(2)
    shift = flat.amax(-1).view(2, 8, *([1] * spatial_dims))
    assert torch.allclose(se.excite(se.squeeze(x + shift)), amse.excite(amse.squeeze(x)), atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_se_is_monai_channel_se_layer(spatial_dims):
    torch.manual_seed(2)
    se = SEBlock(spatial_dims, channels=16, reduction=4)
    assert isinstance(se, ChannelSELayer)
    ref = ChannelSELayer(spatial_dims, 16, r=4)
    ref.load_state_dict(se.state_dict())
    x = torch.randn(2, 16, *([3] * spatial_dims))
    assert torch.allclose(se(x), ref(x), atol=1e-6)
    assert se.fc[0].out_features == 4


@pytest.mark.parametrize("cls", [SEBlock, AMSEBlock])
def test_hidden_size_at_least_one(cls):
    block = cls(2, channels=4, reduction=16)
    assert block.fc[0].out_features == 1
    assert block(torch.randn(1, 4, 3, 3)).shape == (1, 4, 3, 3)
    assert CBAMBlock(2, channels=4, reduction=16).mlp[0].out_features == 1


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cbam(spatial_dims):
    torch.manual_seed(3)
    block = CBAMBlock(spatial_dims, channels=8, reduction=2)
    x = torch.randn(2, 8, *([6] * spatial_dims))
    with torch.no_grad():
        _check_cbam(block, x, spatial_dims)


def _check_cbam(block, x, spatial_dims):
    out = block(x)
    assert out.shape == x.shape
    # channel attention: avg- and max-pooled descriptors EACH through the shared MLP, then added (Woo et al. eq. 2)
    flat = x.flatten(2)
    m_c = torch.sigmoid(block.mlp(flat.mean(-1)) + block.mlp(flat.amax(-1)))
    assert torch.allclose(block.channel_attention(x).flatten(1), m_c, atol=1e-6)
    # spatial attention: channel-wise mean and max maps -> 7^d conv -> sigmoid (Woo et al. eq. 3)
    assert block.spatial_conv.kernel_size == (7,) * spatial_dims
    assert block.spatial_conv.in_channels == 2 and block.spatial_conv.out_channels == 1
    refined = x * block.channel_attention(x)
    m_s = block.spatial_attention(refined)
    assert m_s.shape == (2, 1, *([6] * spatial_dims))
    assert float(m_s.std()) > 1e-3  # the spatial weights vary over space
    assert torch.allclose(out, refined * m_s, atol=1e-6)
    # so, unlike SE/AMSE, the output is not a per-channel rescaling of the input
    ratio = (out / x).flatten(2)
    assert float((ratio.amax(-1) - ratio.amin(-1)).min()) > 1e-4


def test_get_channel_attention():
    assert isinstance(get_channel_attention(None, 2, 8), torch.nn.Identity)
    assert isinstance(get_channel_attention("none", 2, 8), torch.nn.Identity)
    assert type(get_channel_attention("AMSE", 3, 8)) is AMSEBlock
    assert type(get_channel_attention("se", 3, 8)) is SEBlock
    assert type(get_channel_attention("cbam", 2, 8)) is CBAMBlock
    with pytest.raises(ValueError, match="unknown attention"):
        get_channel_attention("eca", 2, 8)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_amse_gradients_equal_the_pooling_formulation(spatial_dims):
    """The fused squeeze and rescale give the values and gradients of ``(avgpool + maxpool)`` and ``Z' * U``."""
    torch.manual_seed(0)
    block = AMSEBlock(spatial_dims, channels=6, reduction=2).double()
    x = torch.randn(2, 6, *([5] * spatial_dims), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))

    reference_x = x.detach().clone().requires_grad_()
    flat = reference_x.flatten(2)
    weights = block.fc(flat.mean(-1) + torch.nn.functional.adaptive_max_pool1d(flat, 1).squeeze(-1))
    reference = reference_x * weights.view(2, 6, *([1] * spatial_dims))
    grad = torch.randn_like(reference)
    reference.backward(grad)
    reference_weight_grad = block.fc[0].weight.grad.clone()
    block.zero_grad()
    out = block(x)
    out.backward(grad)
    assert torch.allclose(out, reference)
    assert torch.allclose(x.grad, reference_x.grad)
    assert torch.allclose(block.fc[0].weight.grad, reference_weight_grad)
    # the maximum's gradient reaches exactly one position per channel, as max pooling's does
    grad_one = torch.autograd.grad(block.squeeze(x)[0, 0], x)[0][0, 0]
    positions = grad_one.numel()
    assert torch.isclose(grad_one.sum(), torch.tensor(2.0, dtype=torch.float64))
    assert int((grad_one > 1.5 / positions).sum()) == 1


def test_se_rescale_under_bf16_autocast_matches_eager_multiplication():
    torch.manual_seed(0)
    block = SEBlock(2, channels=8, reduction=2)
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
        weights = block.excite(block.squeeze(x))
    expected = x * weights[..., None, None]
    assert out.dtype == expected.dtype
    assert torch.equal(out, expected)
    (grad_x,) = torch.autograd.grad(out.sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    assert torch.allclose(grad_x, expected_grad)


@pytest.mark.parametrize("cls", [SEBlock, AMSEBlock])
def test_blocks_script_for_export_with_the_same_values(cls):
    torch.manual_seed(0)
    block = cls(2, channels=8, reduction=2).eval()
    x = torch.randn(2, 8, 6, 6)
    scripted = torch.jit.script(block)
    assert torch.allclose(scripted(x), block(x))
