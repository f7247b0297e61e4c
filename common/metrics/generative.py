"""Distribution and diversity metrics for generated images: FID, KID, MMD and SSIM diversity.

FID and MMD are computed with ``monai.metrics.FIDMetric`` and ``monai.metrics.MMDMetric``; SSIM diversity with
``monai.metrics.SSIMMetric`` / ``MultiScaleSSIMMetric``. KID (which MONAI lacks) is the unbiased polynomial-kernel
MMD^2 of Binkowski et al., "Demystifying MMD GANs", ICLR 2018. All functions return python floats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from monai.metrics import FIDMetric, MMDMetric, MultiScaleSSIMMetric, SSIMMetric
from monai.utils import convert_to_tensor

__all__ = ["fid", "kid", "mmd", "ssim_diversity", "polynomial_kernel", "unbiased_mmd2", "MS_SSIM_WEIGHTS"]

logger = logging.getLogger("common.metrics")

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Default MS-SSIM scale weights (Wang et al. 2003), as in ``monai.metrics.MultiScaleSSIMMetric``."""


def _check_features(real_features: torch.Tensor, fake_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    real = convert_to_tensor(real_features, track_meta=False)
    fake = convert_to_tensor(fake_features, track_meta=False)
    if real.ndim != 2 or fake.ndim != 2:
        raise ValueError(f"features must be (N, F), got {tuple(real.shape)} and {tuple(fake.shape)}.")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}.")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"at least 2 samples per set are needed, got {real.shape[0]} and {fake.shape[0]}.")
    return real.double().cpu(), fake.double().cpu()


def fid(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets, with ``monai.metrics.FIDMetric``.

    The value depends on the feature extractor; with fewer samples than feature dimensions the covariances are
    singular and the estimate is strongly biased upwards, so compare only values from equal set sizes.

    Args:
        real_features: features of real images ``(N, F)``.
        fake_features: features of generated images ``(M, F)``.

    Returns:
        the FID (float64 computation).
    """
    real, fake = _check_features(real_features, fake_features)
    return float(FIDMetric()(fake, real))


def polynomial_kernel(
    x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> torch.Tensor:
    """Polynomial kernel ``k(x, y) = (gamma * x.y + coef0) ** degree``.

    Args:
        x: ``(N, F)``.
        y: ``(M, F)``.
        degree: polynomial degree.
        gamma: scale of the dot product; ``None`` means ``1 / F``.
        coef0: additive constant.

    Returns:
        the kernel matrix ``(N, M)``.
    """
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (gamma * x @ y.T + coef0) ** degree


def unbiased_mmd2(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    """Unbiased estimator of MMD^2 from kernel matrices (Gretton et al. 2012, Lemma 6).

    ``sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1)) - 2 sum_{i,j} k(x_i, y_j) / (mn)``.

    Args:
        k_xx: ``(m, m)`` kernel matrix within the first set.
        k_yy: ``(n, n)`` kernel matrix within the second set.
        k_xy: ``(m, n)`` kernel matrix between the sets.

    Returns:
        scalar tensor; can be slightly negative when the distributions are equal.
    """
    m, n = k_xx.shape[0], k_yy.shape[0]
    term_xx = (k_xx.sum() - torch.diagonal(k_xx).sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - torch.diagonal(k_yy).sum()) / (n * (n - 1))
    return term_xx + term_yy - 2.0 * k_xy.sum() / (m * n)


def kid(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with the polynomial kernel ``(x.y / F + 1) ** 3``, averaged over
    random subsets (Binkowski et al. 2018).

    For each of ``num_subsets`` subsets, ``subset_size`` real and ``subset_size`` fake features are drawn without
    replacement (independently per subset, from a ``torch.Generator`` seeded with ``seed``; the global RNG is not
    used) and :func:`unbiased_mmd2` is computed in float64. ``subset_size`` is clipped to the smaller set size.

    Args:
        real_features: features of real images ``(N, F)``.
        fake_features: features of generated images ``(M, F)``.
        num_subsets: number of random subsets.
        subset_size: samples per set in each subset, clipped to ``min(N, M)``.
        degree: polynomial degree of the kernel.
        gamma: dot-product scale; ``None`` means ``1 / F``.
        coef0: additive constant of the kernel.
        seed: seed of the subset sampling.

    Returns:
        ``(mean, std)`` of the subset estimates (population standard deviation, 0 for one subset).
    """
    real, fake = _check_features(real_features, fake_features)
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be positive, got {num_subsets}.")
    size = min(int(subset_size), real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"subset_size must be at least 2, got {subset_size}.")
    generator = torch.Generator().manual_seed(seed)
    values = torch.empty(num_subsets, dtype=torch.float64)
    for s in range(num_subsets):
        x = real[torch.randperm(real.shape[0], generator=generator)[:size]]
        y = fake[torch.randperm(fake.shape[0], generator=generator)[:size]]
        values[s] = unbiased_mmd2(
            polynomial_kernel(x, x, degree, gamma, coef0),
            polynomial_kernel(y, y, degree, gamma, coef0),
            polynomial_kernel(x, y, degree, gamma, coef0),
        )
    return float(values.mean()), float(values.std(unbiased=False))


def mmd(
    real_images: torch.Tensor,
    fake_images: torch.Tensor,
    y_mapping: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Unbiased linear-kernel MMD between image sets, with ``monai.metrics.MMDMetric``.

    ``MMDMetric`` compares two batches of equal size; both sets are trimmed to their first ``min(N, M)`` images
    (in the given order). Since the estimator sums over all cross pairs, the pairing itself does not change the
    value, only which images are dropped. The images are flattened to vectors, so this measures the distance
    between the mean images (in intensity units squared, summed over voxels).

    Args:
        real_images: ``(N, C, *spatial)``.
        fake_images: ``(M, C, *spatial)`` with the same ``C`` and spatial size.
        y_mapping: optional transform applied to both sets before the metric (see ``MMDMetric``).

    Returns:
        the MMD value.
    """
    real = convert_to_tensor(real_images, track_meta=False).float()
    fake = convert_to_tensor(fake_images, track_meta=False).float()
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real and fake images must have the same channels and spatial size, got {tuple(real.shape[1:])} "
            f"and {tuple(fake.shape[1:])}."
        )
    n = min(real.shape[0], fake.shape[0])
    if n < 2:
        raise ValueError(f"MMD needs at least 2 images per set, got {real.shape[0]} and {fake.shape[0]}.")
    return float(MMDMetric(y_mapping=y_mapping)(real[:n], fake[:n]))


def _sample_pairs(n: int, num_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All unordered pairs of distinct indices when there are at most ``num_pairs``, else ``num_pairs`` random
    pairs of distinct indices (pairs may repeat)."""
    total = n * (n - 1) // 2
    if total <= num_pairs:
        idx = torch.triu_indices(n, n, offset=1)
        return idx[0], idx[1]
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, n, (num_pairs,), generator=generator)
    offset = torch.randint(1, n, (num_pairs,), generator=generator)
    return first, (first + offset) % n


def _ms_ssim_weights(spatial_shape: Sequence[int], win_size: int) -> tuple[float, ...]:
    """Largest number of MS-SSIM scales (at most 5) that ``MultiScaleSSIMMetric`` accepts for ``spatial_shape``,
    with the default weights truncated and renormalised to sum to 1."""
    smallest = min(spatial_shape)
    for scales in range(len(MS_SSIM_WEIGHTS), 1, -1):
        # MultiScaleSSIMMetric's own size check, and the coarsest scale must still hold one window
        if smallest // (scales - 1) ** 2 > win_size - 1 and smallest // 2 ** (scales - 1) >= win_size:
            weights = MS_SSIM_WEIGHTS[:scales]
            total = sum(weights)
            if scales < len(MS_SSIM_WEIGHTS):
                logger.warning(
                    "images of size %s are too small for %d-scale MS-SSIM; using %d scales.",
                    tuple(spatial_shape),
                    len(MS_SSIM_WEIGHTS),
                    scales,
                )
            return tuple(w / total for w in weights)
    raise ValueError(
        f"images of spatial size {tuple(spatial_shape)} are too small for multi-scale SSIM with win_size {win_size} "
        f"(2 scales need a smallest side of at least {2 * win_size}); use multiscale=False or a smaller win_size."
    )


def ssim_diversity(
    images: torch.Tensor,
    spatial_dims: int | None = None,
    num_pairs: int = 100,
    seed: int = 0,
    multiscale: bool = False,
    data_range: float | None = None,
    win_size: int = 11,
    batch_size: int = 16,
) -> float:
    """Mean (MS-)SSIM between random pairs of distinct samples of one set; lower means more diverse.

    Pairs: all unordered pairs of distinct images when there are at most ``num_pairs`` of them, otherwise
    ``num_pairs`` random pairs ``(i, j)``, ``i != j``, drawn with a ``torch.Generator`` seeded with ``seed``.
    SSIM uses ``monai.metrics.SSIMMetric`` with a Gaussian window of ``win_size`` (clipped to the smallest image
    side, kept odd); ``multiscale=True`` uses ``MultiScaleSSIMMetric`` with the default five scales, or with fewer
    scales (weights truncated and renormalised) when the images are too small, and raises ``ValueError`` when even
    two scales do not fit. The data range is ``max - min`` over the whole set unless given.

    Args:
        images: ``(N, C, H, W)`` or ``(N, C, H, W, D)`` with ``N >= 2``.
        spatial_dims: 2 or 3; inferred from ``images`` when ``None``.
        num_pairs: number of pairs to average over.
        seed: seed of the pair sampling.
        multiscale: use MS-SSIM instead of SSIM.
        data_range: intensity range for the SSIM constants; ``None`` takes it from the images.
        win_size: SSIM window size.
        batch_size: pairs evaluated at once.

    Returns:
        the mean similarity over the pairs.
    """
    images = convert_to_tensor(images, track_meta=False).float()
    if spatial_dims is None:
        spatial_dims = images.ndim - 2
    if spatial_dims not in (2, 3) or images.ndim != spatial_dims + 2:
        raise ValueError(f"images must be (N, C, *spatial) with 2 or 3 spatial dims, got {tuple(images.shape)}.")
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"SSIM diversity needs at least 2 images, got {n}.")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be positive, got {num_pairs}.")
    if data_range is None:
        data_range = float(images.max() - images.min()) or 1.0
    spatial_shape = tuple(images.shape[2:])
    if multiscale:
        metric = MultiScaleSSIMMetric(
            spatial_dims=spatial_dims,
            data_range=data_range,
            kernel_size=win_size,
            weights=_ms_ssim_weights(spatial_shape, win_size),
        )
    else:
        win = min(win_size, min(spatial_shape))
        win = win if win % 2 == 1 else win - 1
        metric = SSIMMetric(spatial_dims=spatial_dims, data_range=data_range, win_size=max(win, 1))
    first, second = _sample_pairs(n, num_pairs, seed)
    values = []
    for start in range(0, first.numel(), batch_size):
        i, j = first[start : start + batch_size], second[start : start + batch_size]
        values.append(metric(images[i], images[j]).reshape(-1))
    return float(torch.cat(values).mean())
