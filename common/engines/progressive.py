"""Progressive growing: stage schedule, fade-in, per-stage batches and the WGAN-GP training step of PGGAN/CPGGAN.

Karras et al. 2018 (sec. 2, 4 and appendix A.1) train a progressively grown GAN in phases measured in images shown
to the discriminator: the first resolution is trained ("stabilised") for a number of images, then every further
resolution is first faded in (``alpha`` rises linearly from 0 to 1) and then stabilised. Han's thesis uses this
for PGGAN (sec. 4.2.2: WGAN-GP, Adam 1e-3, batch 16) and CPGGAN (sec. 5.2.2: WGAN-GP, Adam 2e-4, batch 4).

- :class:`ProgressiveSchedule`: the phases in iterations (``ceil(images / batch_size)`` per phase), and the position
  of any iteration in them (stage, ``alpha``, images shown, batch size). It is a checkpointed object
  (``state_dict``): a run resumed in the middle of a stage continues with the same stage, ``alpha`` and image count.
- :class:`ProgressiveBatchSampler`: an endless batch sampler whose batch size is the schedule's current one.
- :class:`ProgressiveGANStep`: one WGAN-GP critic update (with the drift term ``eps_drift * E[D(x)^2]``) and one
  generator update per iteration at the schedule's stage and ``alpha``; real images are resized to the stage's
  resolution (area averaging) and, during a fade-in, blended with their up-sampled half-resolution version as in
  Karras et al. (the discriminator then sees the same transition as the generator's output).

The trainer is :class:`common.engines.StepTrainer` with one epoch of ``schedule.total_iterations``
iterations, so checkpoints, resume and the other ignite handlers work unchanged.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from common.losses import AdversarialLoss
from common.utils import get_rank, get_world_size
from torch.utils.data import Sampler

from .step import TrainingStep, unwrap

__all__ = ["ProgressiveBatchSampler", "ProgressiveGANStep", "ProgressiveSchedule"]


def _per_stage(value: int | Sequence[int], num_stages: int, name: str) -> list[int]:
    values = [int(value)] * num_stages if isinstance(value, (int, float)) else [int(v) for v in value]
    if len(values) != num_stages:
        raise ValueError(f"{name} needs one value per stage ({num_stages}), got {len(values)}.")
    return values


class ProgressiveSchedule:
    """Phases of progressive training and the position of an iteration in them.

    Phases: stage 0 stabilises for ``stabilise_images[0]`` images; every stage ``s >= 1`` fades in for
    ``fade_in_images[s]`` images (``alpha`` from 0 towards 1), then stabilises for ``stabilise_images[s]`` images
    (``alpha = 1``). A phase lasts ``ceil(images / batch_sizes[s])`` iterations. ``alpha`` at the ``k``-th iteration
    (from 0) of a fade-in of ``n`` iterations is ``k / n``.

    Args:
        resolutions: resolution of each stage, e.g. ``[4, 8, ..., 256]``.
        fade_in_images: images shown during each stage's fade-in (an int for all stages; stage 0's is ignored).
        stabilise_images: images shown during each stage's stabilisation (int or one per stage).
        batch_sizes: batch size of each stage (int or one per stage).
    """

    def __init__(
        self,
        resolutions: Sequence[int],
        fade_in_images: int | Sequence[int],
        stabilise_images: int | Sequence[int],
        batch_sizes: int | Sequence[int] = 16,
    ) -> None:
        self.resolutions = [int(r) for r in resolutions]
        n = len(self.resolutions)
        if n < 1:
            raise ValueError("the schedule needs at least one stage.")
        self.fade_in_images = _per_stage(fade_in_images, n, "fade_in_images")
        self.stabilise_images = _per_stage(stabilise_images, n, "stabilise_images")
        self.batch_sizes = _per_stage(batch_sizes, n, "batch_sizes")
        if min(self.batch_sizes) < 1 or min(self.stabilise_images + self.fade_in_images) < 0:
            raise ValueError("batch sizes must be positive and image counts non-negative.")
        # phases: (stage, fading, iterations, batch size)
        self.phases: list[tuple[int, bool, int, int]] = []
        for s in range(n):
            bs = self.batch_sizes[s]
            if s > 0 and self.fade_in_images[s] > 0:
                self.phases.append((s, True, math.ceil(self.fade_in_images[s] / bs), bs))
            if self.stabilise_images[s] > 0:
                self.phases.append((s, False, math.ceil(self.stabilise_images[s] / bs), bs))
        if not self.phases:
            raise ValueError("the schedule shows no images: give positive fade_in_images or stabilise_images.")
        self._starts: list[int] = []
        self._images: list[int] = []
        it = images = 0
        for _, _, iters, bs in self.phases:
            self._starts.append(it)
            self._images.append(images)
            it += iters
            images += iters * bs
        self.total_iterations = it
        self.total_images = images
        self.iteration = 0

    @property
    def num_stages(self) -> int:
        return len(self.resolutions)

    def position(self, iteration: int) -> dict[str, Any]:
        """Where iteration ``iteration`` (0-based, i.e. after ``iteration`` completed ones) falls.

        Returns:
            ``{"stage", "alpha", "resolution", "batch_size", "images_shown", "fading", "done"}``; past the end the
            last stage at ``alpha = 1`` with ``done = True``.
        """
        if iteration >= self.total_iterations:
            stage = self.phases[-1][0]
            return {
                "stage": stage,
                "alpha": 1.0,
                "resolution": self.resolutions[stage],
                "batch_size": self.batch_sizes[stage],
                "images_shown": self.total_images,
                "fading": False,
                "done": True,
            }
        p = bisect.bisect_right(self._starts, iteration) - 1
        stage, fading, iters, bs = self.phases[p]
        k = iteration - self._starts[p]
        return {
            "stage": stage,
            "alpha": k / iters if fading else 1.0,
            "resolution": self.resolutions[stage],
            "batch_size": bs,
            "images_shown": self._images[p] + k * bs,
            "fading": fading,
            "done": False,
        }

    def current(self) -> dict[str, Any]:
        """:meth:`position` of the next iteration to run."""
        return self.position(self.iteration)

    @property
    def stage(self) -> int:
        return int(self.current()["stage"])

    @property
    def alpha(self) -> float:
        return float(self.current()["alpha"])

    @property
    def images_shown(self) -> int:
        return int(self.current()["images_shown"])

    def state_dict(self) -> dict[str, Any]:
        """Completed iterations and, for readers of the checkpoint, the stage, ``alpha`` and images shown."""
        pos = self.current()
        return {
            "iteration": self.iteration,
            "stage": pos["stage"],
            "alpha": pos["alpha"],
            "images_shown": pos["images_shown"],
            "resolutions": list(self.resolutions),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the position; fails when the checkpoint was written with a different stage layout."""
        if list(state.get("resolutions", self.resolutions)) != self.resolutions:
            raise ValueError(
                f"checkpoint schedule has resolutions {list(state['resolutions'])}, this run {self.resolutions}."
            )
        self.iteration = int(state["iteration"])
        pos = self.current()
        if int(state["stage"]) != pos["stage"] or int(state["images_shown"]) != pos["images_shown"]:
            raise ValueError(
                f"checkpoint schedule position (stage {state['stage']}, {state['images_shown']} images) does not "
                f"match this run's schedule at iteration {self.iteration} (stage {pos['stage']}, "
                f"{pos['images_shown']} images): the fade-in/stabilisation images or batch sizes were changed."
            )


class ProgressiveBatchSampler(Sampler):
    """Endless batch sampler whose batch size follows a :class:`ProgressiveSchedule`.

    Each batch takes the schedule's batch size at the moment it is drawn (with ``num_workers = 0`` exactly the size
    of the iteration that uses it; prefetching workers may deliver a few batches of the previous size after a stage
    change, which the training step accepts). Indices are shuffled per pass over the data with a seeded generator;
    under ``torch.distributed`` each rank takes every ``world_size``-th index of the same permutation. A new
    iterator starts at the schedule's position: after the ``images_shown`` indices its completed iterations used,
    so that a run resumed from a checkpoint (the schedule restored first) draws the batches of the uninterrupted run.

    Args:
        data_source: the dataset (only its length is used).
        schedule: the schedule giving the batch size.
        shuffle: shuffle the indices of each pass.
        seed: seed of the permutations.
    """

    def __init__(self, data_source: Any, schedule: ProgressiveSchedule, shuffle: bool = True, seed: int = 0) -> None:
        self.num_samples = len(data_source)
        if self.num_samples < 1:
            raise ValueError("the dataset is empty.")
        self.schedule = schedule
        self.shuffle = shuffle
        self.seed = int(seed)

    def _indices(self, pass_index: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + pass_index)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        world = get_world_size()
        if world > 1:
            order = order[get_rank() :: world] or order[:1]
        return order

    def __iter__(self) -> Iterator[list[int]]:
        # the batches of the completed iterations took the stream's first ``images_shown`` indices (each pass has
        # the same length): a resumed run continues the stream where the interrupted one stopped
        pass_index, offset = divmod(self.schedule.images_shown, len(self._indices(0)))
        pool = self._indices(pass_index)[offset:]
        pass_index += 1
        while True:
            size = int(self.schedule.current()["batch_size"])
            while len(pool) < size:
                pool += self._indices(pass_index)
                pass_index += 1
            batch, pool = pool[:size], pool[size:]
            yield batch


class ProgressiveGANStep(TrainingStep):
    """WGAN-GP training step of a progressively grown GAN at the schedule's stage and ``alpha``.

    Critic loss ``E[D(G(z))] - E[D(x)] + gp_weight * GP + drift_weight * E[D(x)^2]`` (Karras et al., appendix A.1:
    ``lambda = 10``, ``eps_drift = 0.001``); generator loss ``-E[D(G(z))]``. With ``condition_key`` the batch's
    condition images are given to both networks (CPGGAN, Han thesis sec. 5.2.2). The critic and generator updates
    are the shared sequence of :meth:`~common.engines.TrainingStep.adversarial_iteration`.

    Args:
        generator: :class:`~common.networks.ProgressiveGenerator`.
        discriminator: :class:`~common.networks.ProgressiveDiscriminator`.
        g_optimizer: generator optimiser.
        d_optimizer: discriminator optimiser.
        schedule: the stage schedule (saved in checkpoints with the networks and optimisers).
        latent_size: latent vector length.
        device: training device.
        gp_weight: gradient-penalty weight.
        drift_weight: drift term weight.
        n_critic: critic updates per generator update (1 in Karras et al.).
        condition_key: batch key of the condition images; ``None`` for an unconditional PGGAN.
        amp: mixed precision; amp_dtype: ``"bfloat16"`` or ``"float16"``.
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        image_key: batch key of the real images (full resolution; resized per stage here).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        schedule: ProgressiveSchedule,
        latent_size: int,
        device: str | torch.device = "cpu",
        gp_weight: float = 10.0,
        drift_weight: float = 0.001,
        n_critic: int = 1,
        condition_key: str | None = None,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        image_key: str = "image",
    ) -> None:
        super().__init__(
            networks={"generator": generator, "discriminator": discriminator},
            optimizers={"generator": g_optimizer, "discriminator": d_optimizer},
            device=device,
            amp=amp,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            compile=compile,
            conv_algorithm=conv_algorithm,
            n_critic=n_critic,
            image_key=image_key,
        )
        self.schedule = schedule
        self.latent_size = int(latent_size)
        self.adversarial = AdversarialLoss("wgan")
        self.gp_weight = float(gp_weight)
        self.drift_weight = float(drift_weight)
        self.condition_key = condition_key

    def state_objects(self) -> dict[str, Any]:
        objects = super().state_objects()
        objects["schedule"] = self.schedule
        return objects

    def real_at_stage(self, real: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
        """Real images resized to ``resolution``; during a fade-in blended with their half-resolution version.

        Args:
            real: ``(B, C, *spatial)`` at full resolution.
            resolution: the stage's resolution.
            alpha: the fade-in weight (1: no blending).
        """
        size = [resolution] * (real.ndim - 2)
        x = real if list(real.shape[2:]) == size else F.interpolate(real, size=size, mode="area")
        if alpha < 1.0 and resolution > 1:
            low = F.interpolate(x, size=[resolution // 2] * len(size), mode="area")
            x = alpha * x + (1.0 - alpha) * F.interpolate(low, size=size, mode="nearest")
        return x

    def sample_latent(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.latent_size, device=self.device)

    @torch.no_grad()
    def sample(self, num: int, condition: torch.Tensor | None = None, full_size: bool = True) -> torch.Tensor:
        """Generated images at the current stage and ``alpha`` (nearest-upsampled to the last resolution).

        Args:
            num: number of samples.
            condition: condition images ``(num, C_cond, *spatial)`` for a conditional generator.
            full_size: upsample to the last stage's resolution (for sample grids).
        """
        pos = self.schedule.current()
        gen = unwrap(self.networks["generator"])
        was_training = gen.training
        gen.eval()
        cond = condition.to(self.device) if condition is not None else None
        out = gen(self.sample_latent(num), cond, pos["stage"], pos["alpha"]).float()
        gen.train(was_training)
        if full_size:
            out = F.interpolate(out, size=[self.schedule.resolutions[-1]] * (out.ndim - 2), mode="nearest")
        return out

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        # the engine's iteration counter is the schedule's position: a resumed run continues where it stopped
        self.schedule.iteration = engine.state.iteration - 1
        pos = self.schedule.current()
        stage, alpha, res, bs = pos["stage"], float(pos["alpha"]), pos["resolution"], pos["batch_size"]
        real = self.images(batchdata)[:bs]
        cond = self.images(batchdata, self.condition_key)[: real.shape[0]] if self.condition_key else None
        real = self.real_at_stage(real, res, alpha)
        n = real.shape[0]
        out = self.adversarial_iteration(
            engine,
            real,
            generate=lambda net: net(self.sample_latent(n), cond, stage, alpha),
            discriminate=lambda net, x: net(x, cond, stage, alpha),
            adversarial=self.adversarial,
            gp_weight=self.gp_weight,
            drift_weight=self.drift_weight,
        )

        self.schedule.iteration = engine.state.iteration
        out.update({"stage": float(stage), "alpha": alpha, "resolution": float(res)})
        out["images_shown"] = float(pos["images_shown"] + n)
        return out
