"""WGAN-GP gradient penalty, Gulrajani et al. 2017 ("Improved training of Wasserstein GANs"), eq. 3.

Used by WGAN-GP critics in this project: the PGGAN/CPGGAN critics and the MCGAN nodule discriminator
(Han thesis, sec. 4.2.2, 5.2.2 and 6.2.1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["gradient_penalty", "interpolate_samples"]


def interpolate_samples(
    real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random points on straight lines between paired real and fake samples.

    Args:
        real: real samples ``(B, C, *spatial)``.
        fake: fake samples of the same shape.
        generator: optional random generator for the interpolation weights.

    Returns:
        ``eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample, detached from both inputs
        and requiring gradients.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    mixed = eps * real.detach() + (1.0 - eps) * fake.detach()
    return mixed.requires_grad_(True)


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *critic_args: torch.Tensor,
    target_norm: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Two-sided gradient penalty ``E[(||grad_x D(x_hat)|| - 1)^2]`` at random interpolates ``x_hat``.

    For a patch critic, whose output is a map ``(B, 1, *patches)``, the per-sample score is the mean of the map,
    so each sample contributes one gradient norm (the penalty is on the critic's per-sample score, as in the
    original formulation for a scalar critic).

    Args:
        critic: the critic; called as ``critic(x_hat, *critic_args)``.
        real: real samples ``(B, C, *spatial)``.
        fake: generated samples, same shape (detached inside).
        critic_args: extra inputs passed to the critic unchanged (e.g. conditions).
        target_norm: the target gradient norm (1 in WGAN-GP).
        generator: optional random generator for the interpolation weights.

    Returns:
        The scalar penalty (multiply by ``gp_weight``, 10 in the paper).
    """
    x_hat = interpolate_samples(real, fake, generator=generator)
    with torch.autocast(device_type=x_hat.device.type, enabled=False):
        score = critic(x_hat, *critic_args)
        if isinstance(score, (list, tuple)):
            score = torch.stack([s.float().reshape(s.shape[0], -1).mean(1) for s in score], 0).sum(0)
        else:
            score = score.float().reshape(score.shape[0], -1).mean(1)
        (grads,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norms = grads.flatten(1).norm(2, dim=1)
    return ((norms - target_norm) ** 2).mean()
