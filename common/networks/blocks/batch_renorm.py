"""Batch renormalisation (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch Dependence in
Batch-Normalized Models"), used by the GA-UNet generator (paper 002, sec. II-C, its reference [27]).

Neither torch nor MONAI provide it. Training mode normalises with the minibatch statistics and corrects them towards
the running statistics (Ioffe 2017, Algorithm 1):

``x_hat = (x - mu_B) / sigma_B * r + d``, ``r = clip(sigma_B / sigma, 1 / r_max, r_max)``,
``d = clip((mu_B - mu) / sigma, -d_max, d_max)``, ``y = gamma * x_hat + beta``

where ``r`` and ``d`` are constants for back-propagation (``stop_gradient``), ``mu_B`` and
``sigma_B = sqrt(var_B + eps)`` are the per-channel minibatch mean and (biased) standard deviation, and ``mu`` and
``sigma`` the running mean and standard deviation, updated after the output is computed:
``mu += momentum * (mu_B - mu)``, ``sigma += momentum * (sigma_B - sigma)``. Evaluation mode uses
``(x - mu) / sigma``, which is what training mode computes when no clipping is active: the model trains with the
output it will have at inference.

Clipping schedule (Ioffe 2017, sec. 4): ``r_max = 1`` and ``d_max = 0`` (plain batch normalisation) for the first
``warmup_steps`` training batches, then relaxed linearly to ``r_max_final`` after ``r_ramp_steps`` more batches and to
``d_max_final`` after ``d_ramp_steps`` more batches; the defaults reproduce Ioffe's experiment: 5000 warm-up steps,
``r_max = 3`` reached at 40k steps and ``d_max = 5`` at 25k steps. The step counter ``num_batches_tracked`` is a
buffer, so the schedule resumes from a checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["BatchRenorm"]


class BatchRenorm(nn.Module):
    """Batch renormalisation over every dimension but the channel one, for any number of spatial dimensions.

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance before the square root.
        momentum: update rate ``alpha`` of the running mean and standard deviation.
        affine: learn a per-channel scale ``gamma`` (initialised to 1) and shift ``beta`` (initialised to 0).
        r_max_final: final bound of ``r`` (3 in Ioffe 2017, sec. 4).
        d_max_final: final bound of ``|d|`` (5 in Ioffe 2017, sec. 4).
        warmup_steps: training batches with ``r_max = 1`` and ``d_max = 0``, i.e. batch normalisation (5000).
        r_ramp_steps: batches after the warm-up over which ``r_max`` grows linearly from 1 to ``r_max_final``
            (35000: reached at 40k steps); 0 jumps at the end of the warm-up.
        d_ramp_steps: batches after the warm-up over which ``d_max`` grows linearly from 0 to ``d_max_final``
            (20000: reached at 25k steps); 0 jumps at the end of the warm-up.

    Shapes:
        input ``(B, C, *spatial)`` with any number (0 included) of spatial dimensions; output of the same shape.
        Training mode needs more than one value per channel.
    """

    running_mean: torch.Tensor
    running_std: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.01,
        affine: bool = True,
        r_max_final: float = 3.0,
        d_max_final: float = 5.0,
        warmup_steps: int = 5000,
        r_ramp_steps: int = 35000,
        d_ramp_steps: int = 20000,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}.")
        if r_max_final < 1.0 or d_max_final < 0.0:
            raise ValueError(f"need r_max_final >= 1 and d_max_final >= 0, got {r_max_final} and {d_max_final}.")
        if min(warmup_steps, r_ramp_steps, d_ramp_steps) < 0:
            raise ValueError("warmup_steps, r_ramp_steps and d_ramp_steps must be non-negative.")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.r_max_final = r_max_final
        self.d_max_final = d_max_final
        self.warmup_steps = warmup_steps
        self.r_ramp_steps = r_ramp_steps
        self.d_ramp_steps = d_ramp_steps
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_std", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _ramp(self, step: int, ramp_steps: int) -> float:
        """Fraction in ``[0, 1]`` of the relaxation reached at ``step``."""
        if step < self.warmup_steps:
            return 0.0
        if ramp_steps == 0:
            return 1.0
        return min(1.0, (step - self.warmup_steps) / ramp_steps)

    def clip_limits(self, step: int | None = None) -> tuple[float, float]:
        """The bounds ``(r_max, d_max)`` used at a training step.

        Args:
            step: number of training batches already seen; ``num_batches_tracked`` when ``None``.

        Returns:
            ``(r_max, d_max)``: ``(1, 0)`` during the warm-up, then relaxed linearly to the final values.
        """
        step = int(self.num_batches_tracked) if step is None else step
        r_max = 1.0 + (self.r_max_final - 1.0) * self._ramp(step, self.r_ramp_steps)
        d_max = self.d_max_final * self._ramp(step, self.d_ramp_steps)
        return r_max, d_max

    def reset_running_stats(self) -> None:
        """Running mean 0, running standard deviation 1 and step counter 0."""
        self.running_mean.zero_()
        self.running_std.fill_(1.0)
        self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: features ``(B, C, *spatial)``.

        Returns:
            The renormalised features, ``(B, C, *spatial)``.
        """
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input (B, {self.num_features}, *spatial), got shape {tuple(x.shape)}.")
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training:
            dims = [0] + list(range(2, x.ndim))
            if x.numel() // self.num_features < 2:
                raise ValueError(f"batch renormalisation needs more than one value per channel, got {tuple(x.shape)}.")
            mean_b = x.mean(dim=dims)
            std_b = torch.sqrt(x.var(dim=dims, unbiased=False) + self.eps)
            r_max, d_max = self.clip_limits()
            with torch.no_grad():  # r and d are constants for back-propagation (Ioffe 2017, Algorithm 1)
                r = (std_b / self.running_std).clamp(1.0 / r_max, r_max)
                d = ((mean_b - self.running_mean) / self.running_std).clamp(-d_max, d_max)
                self.running_mean.add_(self.momentum * (mean_b - self.running_mean))
                self.running_std.add_(self.momentum * (std_b - self.running_std))
                self.num_batches_tracked.add_(1)
            x_hat = (x - mean_b.view(shape)) / std_b.view(shape) * r.view(shape) + d.view(shape)
        else:
            x_hat = (x - self.running_mean.view(shape)) / self.running_std.view(shape)
        if self.affine:
            x_hat = x_hat * self.weight.view(shape) + self.bias.view(shape)
        return x_hat

    def extra_repr(self) -> str:
        r_max, d_max = self.clip_limits()
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"r_max={r_max:g}/{self.r_max_final:g}, d_max={d_max:g}/{self.d_max_final:g}"
        )
