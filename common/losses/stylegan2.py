"""The regularisers of StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN").

- :func:`r1_penalty`: the R1 regulariser of the discriminator (Mescheder et al. 2018, used by StyleGAN and StyleGAN2),
  the squared norm of the gradient of the discriminator's logits with respect to real images, ``E[||grad_x D(x)||^2]``;
  the step multiplies it by ``gamma / 2`` (and, with lazy regularisation, by the interval).
- :func:`path_length_penalty` and its stateful form :class:`PathLengthPenalty`: the path-length regulariser of the
  generator (sec. 3.2 and appendix B), ``E_{w,y}[(||J_w^T y||_2 - a)^2]`` with ``y`` a random image whose pixel
  intensities are normally distributed and ``a`` the exponential moving average of the lengths.

Both compute their gradients with ``create_graph=True`` in float32 (autocast off), so that the penalties can be
back-propagated into the networks' parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["PathLengthPenalty", "path_length_penalty", "r1_penalty"]


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 penalty: the per-sample squared gradient norm of the discriminator's logits, averaged over the batch.

    Args:
        real_logits: the discriminator's outputs ``(B, 1)`` (or ``(B,)``) on ``real_images``, computed from them with
            autograd recording.
        real_images: the images ``(B, C, *spatial)`` the logits were computed from; they must require gradients.

    Returns:
        ``mean_b ||d sum(real_logits) / d real_images[b]||^2``, a scalar with a graph back into the discriminator
        (multiply by ``gamma / 2``).
    """
    if not real_images.requires_grad:
        raise ValueError("real_images must require gradients (call .detach().requires_grad_() before the forward).")
    with torch.autocast(device_type=real_images.device.type, enabled=False):
        (grads,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
        return grads.float().square().flatten(1).sum(1).mean()


def path_length_penalty(
    images: torch.Tensor,
    ws: torch.Tensor,
    pl_mean: torch.Tensor,
    decay: float = 0.01,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path-length penalty of StyleGAN2 (sec. 3.2, appendix B).

    The length of a sample is ``||J_w^T y||_2``, with ``J_w`` the Jacobian of the generated image with respect to
    the intermediate latent ``w`` and ``y = n / sqrt(N)``, ``n`` standard normal of the image's shape and ``N`` the
    number of pixels (voxels in 3D) of one channel, so that the lengths do not depend on the resolution. It is
    computed as the gradient of ``sum(images * y)`` with respect to ``ws``. When ``ws`` is ``(B, num_ws, style_dim)``,
    the same ``w`` broadcast to every layer of the synthesis network, the gradient with respect to ``w`` is the sum of
    the gradients with respect to its ``num_ws`` copies (chain rule), which is what is taken here. (The reference
    implementation of StyleGAN2 uses ``sqrt(mean_i ||g_i||^2)`` over the per-layer gradients ``g_i`` instead; the
    paper's definition is followed here, so pass ``ws`` without style mixing.)

    The running mean ``a`` is updated as ``a + decay * (mean_b(length_b) - a)`` and the penalty is
    ``mean_b (length_b - a_new)^2`` (the new mean keeps its small graph through the batch mean, as in the reference).

    Args:
        images: generated images ``(B, C, *spatial)`` computed from ``ws`` with autograd recording.
        ws: the intermediate latents ``(B, num_ws, style_dim)`` (one ``w`` broadcast) or ``(B, style_dim)``.
        pl_mean: the running mean ``a`` of the lengths, a scalar tensor (0 before the first update).
        decay: the update rate of the running mean (0.01 in StyleGAN2).
        noise: ``n``, standard normal of the images' shape (default: drawn here with ``torch.randn_like``).

    Returns:
        ``(penalty, new_mean, lengths)``: the scalar penalty with a graph into the generator (multiply by the
        path-length weight), the updated running mean (detached, scalar) and the per-sample lengths ``(B,)``
        (detached).
    """
    if ws.ndim not in (2, 3) or ws.shape[0] != images.shape[0]:
        raise ValueError(
            f"ws must be (B, num_ws, style_dim) or (B, style_dim) with the images' batch size {images.shape[0]}, "
            f"got {tuple(ws.shape)}."
        )
    if noise is None:
        noise = torch.randn_like(images, dtype=torch.float32)
    elif noise.shape != images.shape:
        raise ValueError(f"noise must have the images' shape {tuple(images.shape)}, got {tuple(noise.shape)}.")
    num_pixels = math.prod(images.shape[2:])
    with torch.autocast(device_type=images.device.type, enabled=False):
        y = noise.float() / math.sqrt(num_pixels)
        (grads,) = torch.autograd.grad((images.float() * y).sum(), ws, create_graph=True)
        grads = grads.float()
        if grads.ndim == 3:
            grads = grads.sum(1)
        lengths = grads.square().sum(1).sqrt()
        new_mean = pl_mean.float() + decay * (lengths.mean() - pl_mean.float())
        penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean.detach(), lengths.detach()


class PathLengthPenalty(nn.Module):
    """:func:`path_length_penalty` with its running mean ``a`` kept in a buffer (saved with the module's state).

    Args:
        decay: the update rate of the running mean (0.01 in StyleGAN2).

    Attributes:
        mean: buffer, the running mean of the path lengths (scalar, 0 at the start).
    """

    mean: torch.Tensor

    def __init__(self, decay: float = 0.01) -> None:
        super().__init__()
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}.")
        self.decay = float(decay)
        self.register_buffer("mean", torch.zeros(()))

    def forward(
        self, images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the penalty and update the running mean (see :func:`path_length_penalty` for the shapes).

        Returns:
            ``(penalty, lengths)``: the scalar penalty and the per-sample lengths ``(B,)`` (detached).
        """
        penalty, new_mean, lengths = path_length_penalty(images, ws, self.mean, self.decay, noise)
        self.mean.copy_(new_mean)
        return penalty, lengths

    def extra_repr(self) -> str:
        return f"decay={self.decay}"
