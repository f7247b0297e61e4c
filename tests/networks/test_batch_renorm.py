"""Batch renormalisation against its definition (Ioffe 2017, Algorithm 1 and sec. 4), computed in numpy."""

import io

import numpy as np
import pytest
import torch
from common.networks.blocks import BatchRenorm


def _reference(x, mu, sigma, r_max, d_max, gamma, beta, eps, momentum):
    """Ioffe 2017, Algorithm 1 in numpy: output, r, d (clipped and raw) and the updated running statistics."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean_b = x.mean(axis=axes)
    std_b = np.sqrt(x.var(axis=axes) + eps)
    r_raw, d_raw = std_b / sigma, (mean_b - mu) / sigma
    r, d = np.clip(r_raw, 1 / r_max, r_max), np.clip(d_raw, -d_max, d_max)
    x_hat = (x - mean_b.reshape(shape)) / std_b.reshape(shape) * r.reshape(shape) + d.reshape(shape)
    y = x_hat * gamma.reshape(shape) + beta.reshape(shape)
    return {
        "y": y,
        "r": r,
        "d": d,
        "r_raw": r_raw,
        "d_raw": d_raw,
        "mean_b": mean_b,
        "std_b": std_b,
        "mu": mu + momentum * (mean_b - mu),
        "sigma": sigma + momentum * (std_b - sigma),
    }


def _module(running_mean, running_std, **kwargs):
    """A renorm layer past its (zero) warm-up with given running statistics and a non-trivial affine map."""
    c = len(running_mean)
    kwargs = {"warmup_steps": 0, "r_ramp_steps": 0, "d_ramp_steps": 0, "r_max_final": 1.5, "d_max_final": 0.5} | kwargs
    m = BatchRenorm(c, momentum=0.1, **kwargs).double()
    m.running_mean.copy_(torch.as_tensor(running_mean))
    m.running_std.copy_(torch.as_tensor(running_std))
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 2.0, c))
        m.bias.copy_(torch.linspace(-1.0, 1.0, c))
    return m


def _batch(seed=0, shape=(3, 2, 4, 5)):
    rng = np.random.default_rng(seed)
    return rng.normal(0.3, 1.7, size=shape) + np.arange(shape[1]).reshape(1, -1, *([1] * (len(shape) - 2)))


# running statistics close to the batch ones (no clipping) and far from them (r and d clipped, in both directions)
CASES = {"unclipped": ([0.2, 1.1], [1.6, 1.8]), "clipped": ([-3.0, 4.0], [5.0, 0.4])}


@pytest.mark.parametrize("case", list(CASES))
def test_train_mode_matches_definition(case):
    mu, sigma = (np.array(v) for v in CASES[case])
    x = _batch()
    m = _module(mu, sigma)
    y = m(torch.from_numpy(x))
    ref = _reference(x, mu, sigma, 1.5, 0.5, m.weight.detach().numpy(), m.bias.detach().numpy(), m.eps, 0.1)
    clipped = (ref["r"] != ref["r_raw"]) | (ref["d"] != ref["d_raw"])
    assert clipped.all() if case == "clipped" else not clipped.any()
    if case == "clipped":  # both bounds of both corrections are exercised
        assert set(np.sign(np.log(ref["r_raw"]))) == {-1, 1} and set(np.sign(ref["d_raw"])) == {-1, 1}
    np.testing.assert_allclose(y.detach().numpy(), ref["y"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.running_mean.numpy(), ref["mu"], rtol=1e-12)
    np.testing.assert_allclose(m.running_std.numpy(), ref["sigma"], rtol=1e-12)
    assert int(m.num_batches_tracked) == 1
    if case == "unclipped":  # unclipped renorm gives the running-statistics normalisation, as at inference
        shape = (1, -1, 1, 1)
        expected = (x - mu.reshape(shape)) / sigma.reshape(shape)
        np.testing.assert_allclose(
            (y.detach().numpy() - m.bias.detach().numpy().reshape(shape)) / m.weight.detach().numpy().reshape(shape),
            expected,
            rtol=1e-10,
        )


@pytest.mark.parametrize("case", list(CASES))
def test_no_gradient_through_r_and_d(case):
    """Autograd equals batch norm's gradient scaled by the constant r (d constant: no term)."""
    mu, sigma = (np.array(v) for v in CASES[case])
    x_np = _batch(seed=1)
    w = np.random.default_rng(2).normal(size=x_np.shape)
    m = _module(mu, sigma)
    x = torch.from_numpy(x_np).requires_grad_(True)
    (m(x) * torch.from_numpy(w)).sum().backward()
    gamma = m.weight.detach().numpy()
    ref = _reference(x_np, mu, sigma, 1.5, 0.5, gamma, m.bias.detach().numpy(), m.eps, 0.1)
    shape, axes = (1, -1, 1, 1), (0, 2, 3)
    g = w * (gamma * ref["r"]).reshape(shape)  # dL/d((x - mu_B) / sigma_B) with r treated as a constant
    x_bn = (x_np - ref["mean_b"].reshape(shape)) / ref["std_b"].reshape(shape)
    mean = lambda a: a.mean(axis=axes, keepdims=True)  # noqa: E731
    expected = (g - mean(g) - x_bn * mean(g * x_bn)) / ref["std_b"].reshape(shape)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-9, atol=1e-12)
    if case == "unclipped":  # had r and d carried gradients, x_hat = (x - mu) / sigma would have a different one
        plain = np.broadcast_to(w * (gamma / sigma).reshape(shape), x_np.shape)
        assert np.abs(x.grad.numpy() - plain).max() > 1e-2


def test_warmup_is_batch_norm_and_eval_uses_running_stats():
    x = torch.from_numpy(_batch(seed=3))
    m = _module([5.0, -5.0], [3.0, 0.2], warmup_steps=10)  # r, d would be clipped, but the bounds are 1 and 0
    bn = torch.nn.functional.batch_norm(x, None, None, m.weight, m.bias, training=True, eps=m.eps)
    torch.testing.assert_close(m(x), bn)
    m.eval()
    before = (m.running_mean.clone(), m.running_std.clone(), m.num_batches_tracked.clone())
    y = m(x)
    expected = (x - m.running_mean.view(1, -1, 1, 1)) / m.running_std.view(1, -1, 1, 1)
    torch.testing.assert_close(y, expected * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1))
    assert all(torch.equal(a, b) for a, b in zip(before, (m.running_mean, m.running_std, m.num_batches_tracked)))
    # one sample is enough at inference; training needs more than one value per channel
    assert m(x[:1, :, :1, :1]).shape == (1, 2, 1, 1)
    with pytest.raises(ValueError, match="more than one value"):
        m.train()(x[:1, :, :1, :1])


def test_schedule():
    m = BatchRenorm(4)  # Ioffe 2017, sec. 4: batch norm for 5000 steps, r_max = 3 at 40k, d_max = 5 at 25k
    assert m.clip_limits(0) == (1.0, 0.0) and m.clip_limits(5000) == (1.0, 0.0)
    assert m.clip_limits(22500) == pytest.approx((2.0, 4.375))
    assert m.clip_limits(25000) == pytest.approx((1.0 + 2.0 * 20000 / 35000, 5.0))
    assert m.clip_limits(40000) == (3.0, 5.0) and m.clip_limits(10**6) == (3.0, 5.0)
    # the counter drives the schedule: one step per training batch, none in eval mode
    m = BatchRenorm(2, warmup_steps=2, r_ramp_steps=4, d_ramp_steps=2, r_max_final=2.0, d_max_final=1.0)
    x = torch.randn(4, 2, 3)
    for _ in range(3):
        m(x)
    m.eval()(x)
    assert int(m.num_batches_tracked) == 3 and m.clip_limits() == (1.25, 0.5)
    with pytest.raises(ValueError, match="r_max_final"):
        BatchRenorm(2, r_max_final=0.5)


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 5), (2, 3, 4, 5), (2, 3, 4, 5, 6)])
def test_shapes_and_normalisation(shape):
    m = BatchRenorm(3, affine=False)
    x = 2.0 + 3.0 * torch.randn(shape, dtype=torch.float64)
    y = m.double()(x)
    assert y.shape == shape
    dims = [0] + list(range(2, len(shape)))
    torch.testing.assert_close(y.mean(dims), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(y.var(dims, unbiased=False), torch.ones(3, dtype=torch.float64), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="expected input"):
        m(torch.randn(2, 4, 3))


def test_state_dict_round_trip():
    m = BatchRenorm(3, warmup_steps=1, r_ramp_steps=2, d_ramp_steps=2)
    for seed in range(3):
        m(torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(seed)) * 2 + 1)
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    assert set(state) == {"weight", "bias", "running_mean", "running_std", "num_batches_tracked"}
    other = BatchRenorm(3, warmup_steps=1, r_ramp_steps=2, d_ramp_steps=2)
    other.load_state_dict(state)
    assert int(other.num_batches_tracked) == 3 and other.clip_limits() == m.clip_limits() != (1.0, 0.0)
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(other.eval()(x), m.eval()(x))
    torch.testing.assert_close(other.train()(x), m.train()(x))  # same r and d from the restored statistics
