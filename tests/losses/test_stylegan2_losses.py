"""Tests of the StyleGAN2 regularisers: R1 and the path-length penalty, against hand-computed values.

R1 uses the discriminator ``D(x) = sum(a * x^2)``, whose gradient ``2 a x`` is known. The path-length penalty uses a
synthesis linear in ``ws``, ``image = sum_l M_l ws_l``, whose transposed Jacobian with respect to a broadcast ``w``
is ``sum_l M_l^T``.
"""

import math

import pytest
import torch
from common.losses import PathLengthPenalty, path_length_penalty, r1_penalty


def test_r1_penalty_equals_squared_gradient_norm():
    torch.manual_seed(0)
    a = torch.randn(1, 2, 3, 3, requires_grad=True)
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    logits = (a * x.square()).flatten(1).sum(1, keepdim=True)
    penalty = r1_penalty(logits, x)
    expected = (2 * a.detach() * x.detach()).square().flatten(1).sum(1).mean()
    torch.testing.assert_close(penalty, expected)
    # the penalty has a graph into the discriminator: d/da mean_b sum(4 a^2 x_b^2) = mean_b 8 a x_b^2
    penalty.backward()
    torch.testing.assert_close(a.grad, (8 * a.detach() * x.detach().square()).mean(0, keepdim=True))


def test_r1_penalty_needs_images_with_gradients():
    x = torch.randn(2, 1, 2, 2)
    with pytest.raises(ValueError, match="require gradients"):
        r1_penalty(x.flatten(1).sum(1), x)


def linear_synthesis(ws: torch.Tensor, matrices: torch.Tensor, shape: tuple) -> torch.Tensor:
    """``image_b = sum_l M_l^T ws_{b,l}``, ``matrices (num_ws, style_dim, pixels)``."""
    return torch.einsum("bld,ldp->bp", ws, matrices).reshape(ws.shape[0], *shape)


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 2, 3, 2)])
def test_path_length_penalty_equals_hand_computed(shape):
    torch.manual_seed(1)
    batch, num_ws, style_dim = 3, 4, 5
    pixels = math.prod(shape)
    matrices = torch.randn(num_ws, style_dim, pixels, requires_grad=True)
    w = torch.randn(batch, style_dim)
    ws = w[:, None, :].expand(batch, num_ws, style_dim).clone().requires_grad_(True)
    images = linear_synthesis(ws, matrices, shape)
    noise = torch.randn_like(images)
    pl_mean = torch.tensor(0.7)
    penalty, new_mean, lengths = path_length_penalty(images, ws, pl_mean, decay=0.1, noise=noise)

    # by hand: y = n / sqrt(voxels of one channel); J_w^T y = sum_l M_l y
    y = noise.reshape(batch, pixels) / math.sqrt(math.prod(shape[1:]))
    jty = torch.einsum("ldp,bp->bd", matrices.detach(), y)
    expected_lengths = jty.norm(dim=1)
    expected_mean = 0.7 + 0.1 * (expected_lengths.mean() - 0.7)
    torch.testing.assert_close(lengths, expected_lengths)
    torch.testing.assert_close(new_mean, expected_mean)
    torch.testing.assert_close(penalty.detach(), (expected_lengths - expected_mean).square().mean())
    assert not new_mean.requires_grad and not lengths.requires_grad
    penalty.backward()  # the penalty back-propagates into the synthesis
    assert matrices.grad is not None and matrices.grad.abs().sum() > 0


def test_path_length_of_one_w_equals_that_of_its_broadcast():
    torch.manual_seed(2)
    matrices = torch.randn(3, 4, 6)
    w = torch.randn(2, 4, requires_grad=True)
    images = linear_synthesis(w[:, None, :].expand(2, 3, 4), matrices, (1, 2, 3))
    noise = torch.randn_like(images)
    _, _, from_w = path_length_penalty(images, w, torch.tensor(0.0), noise=noise)
    ws = w.detach()[:, None, :].expand(2, 3, 4).clone().requires_grad_(True)
    _, _, from_ws = path_length_penalty(linear_synthesis(ws, matrices, (1, 2, 3)), ws, torch.tensor(0.0), noise=noise)
    torch.testing.assert_close(from_w, from_ws)


def test_path_length_module_keeps_and_restores_its_running_mean():
    torch.manual_seed(3)
    module = PathLengthPenalty(decay=0.5)
    matrices = torch.randn(2, 3, 4)
    ws = torch.randn(2, 2, 3, requires_grad=True)
    images = linear_synthesis(ws, matrices, (1, 2, 2))
    noise = torch.randn_like(images)
    _, lengths = module(images, ws, noise)
    torch.testing.assert_close(module.mean, 0.5 * lengths.mean())
    restored = PathLengthPenalty(decay=0.5)
    restored.load_state_dict(module.state_dict())
    assert restored.mean.item() == module.mean.item() != 0.0
    with pytest.raises(ValueError, match="decay"):
        PathLengthPenalty(decay=0.0)
