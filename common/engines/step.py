"""Training-step objects for :class:`common.engines.StepTrainer`.

The engine owns the loop (data, events, checkpoints, handlers); a step object owns one method's maths
(``__call__(engine, batchdata) -> dict`` of scalar losses). The helpers that every adversarial method needs
live here once, not in each method:

- the precision policy (:func:`common.engines.precision.resolve_precision`: ``amp="auto"`` picks bfloat16 autocast
  on AMX CPUs, on other CPUs where it measures faster than float32, and on bf16-capable CUDA devices, float16 with
  gradient scaling on older CUDA devices, float32 elsewhere), resolved once, logged, kept in checkpoints, and
  applied by :meth:`TrainingStep.autocast` (``torch.autocast(device.type, dtype)``); penalties, losses and norm
  statistics stay float32 (see that module);
- gradient scaling (``torch.amp.GradScaler``, enabled only for float16 autocast on CUDA);
- ``n_critic``: discriminator steps per generator step (one fresh real batch per critic step, as in
  Algorithm 1 of Arjovsky et al. 2017: the generator is updated on every ``n_critic``-th iteration);
- freezing a network during the other's update (``requires_grad=False`` and, under DDP, calling the
  unwrapped module so that the frozen network's reducer never waits for gradients);
- the critic update (adversarial loss on real and generated samples, drift term, gradient penalty, weight
  clipping) and the generator update with the critic frozen, and the whole noise-to-image iteration built from
  them (:meth:`TrainingStep.adversarial_iteration`), shared by the GAN, progressive GAN and MCGAN steps;
- learning-rate schedulers stepped per epoch or per iteration by MONAI's
  :class:`~monai.handlers.LrScheduleHandler` (:meth:`TrainingStep.lr_schedule_handlers`, attached by the trainer);
- distributed data parallelism without a DDP wrapper: after each backward the step averages the updated
  network's gradients over ranks (one ``all_reduce`` per ~4 MB bucket, :mod:`common.engines.grad_sync`).
  Adversarial steps run several forwards per backward (discriminator on real, then on fake) and freeze one
  network during the other's update, which DDP's reducer does not support; an explicit all-reduce supports both;
- a non-finite loss check before every update: training stops with :class:`DivergenceError` and nothing is
  written after it, so the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
from common.losses import AdversarialLoss, gradient_penalty
from common.utils import get_world_size
from monai.handlers import LrScheduleHandler
from torch.nn.parallel import DataParallel, DistributedDataParallel

from . import precision as precision_policy
from .acceleration import NetworkAcceleration
from .cpu_bf16_guard import TINY_OUTPUT, guard_tiny_3d_convolutions
from .grad_sync import DEFAULT_BUCKET_MB, all_reduce_gradients
from .precision import AMP_DTYPES, PrecisionPolicy, resolve_precision

__all__ = ["SCHEDULER_INTERVALS", "CriticLosses", "DivergenceError", "PrecisionState", "TrainingStep", "unwrap"]

SCHEDULER_INTERVALS = ("epoch", "iteration")

logger = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """A loss became NaN or Inf; training is stopped before the bad update is applied."""


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside a ``DataParallel``/``DistributedDataParallel`` wrapper (or the module itself)."""
    return network.module if isinstance(network, (DataParallel, DistributedDataParallel)) else network


class CriticLosses(NamedTuple):
    """The losses of one critic (discriminator) update, see :meth:`TrainingStep.critic_update`.

    Attributes:
        total: the optimised scalar loss (adversarial + drift + weighted gradient penalty).
        adversarial: the adversarial part alone, detached (its negative is the WGAN's Wasserstein estimate).
        penalty: the gradient penalty before weighting, or ``None`` when ``gp_weight`` is 0.
    """

    total: torch.Tensor
    adversarial: torch.Tensor
    penalty: torch.Tensor | None


class PrecisionState:
    """The checkpointed record of a step's precision policy (``state_dict``/``load_state_dict`` for checkpoints).

    Saving writes ``step.precision.as_dict()``. Loading does not impose the saved policy: the resumed run keeps the
    policy resolved for its own device (e.g. bf16 on an AMX CPU after fp32 on a CPU where bf16 is slower), logs both,
    and keeps the saved one as ``step.resumed_precision``.

    Args:
        step: the training step.
    """

    def __init__(self, step: TrainingStep) -> None:
        self.step = step

    def state_dict(self) -> dict[str, Any]:
        return self.step.precision.as_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = dict(state)
        self.step.resumed_precision = saved
        if saved != self.step.precision.as_dict():
            logger.info(
                "precision: the checkpoint was trained in %s (%s); this run uses %s",
                saved.get("dtype"),
                saved.get("reason"),
                self.step.precision.describe(),
            )
        else:
            logger.info("precision: resumed with the checkpoint's %s", self.step.precision.describe())


class TrainingStep:
    """Base class of per-method training steps.

    Args:
        networks: the trained networks by name, e.g. ``{"generator": G, "discriminator": D}``.
        optimizers: one optimiser per network name that is updated.
        device: the training device.
        schedulers: optional learning-rate schedulers by name (saved in checkpoints); the trainer steps them with
            MONAI's ``LrScheduleHandler`` every ``scheduler_interval`` (see :meth:`lr_schedule_handlers`).
        amp: the precision policy (:func:`~common.engines.precision.resolve_precision`): ``"auto"`` (per device:
            bfloat16 autocast on CPUs with AMX, on other CPUs where a probe measures it faster than float32 and on
            bf16-capable CUDA devices, float16 with gradient scaling on older CUDA devices, float32 otherwise; the
            bundles' default), ``True`` (autocast with ``amp_dtype``), ``False`` (float32; this class's default),
            or a dtype name (``"bfloat16"``, ``"float16"``, ``"float32"``). The resolved policy is
            ``self.precision``, logged once at INFO and saved in checkpoints.
        amp_dtype: the autocast dtype of ``amp=True``: ``"bfloat16"`` (default; CPU and recent GPUs) or
            ``"float16"`` (CUDA, with gradient scaling).
        n_critic: discriminator updates per generator update.
        image_key: key of the images in the batch dictionaries.
        optimizer_networks: which networks each optimiser updates, e.g.
            ``{"generators": ["gen_n", "gen_p", "attn_n", "attn_p"], "discriminators": ["disc_n", "disc_p"]}``
            (CycleGAN updates both generators with one Adam); default: the network of the optimiser's own name.
        scheduler_interval: step the schedulers at every ``"epoch"`` end (default) or every ``"iteration"`` (the
            papers that give their schedules in steps: MUNIT, SimGAN, the detector).
        memory_format: layout of the networks and of the images of :meth:`images`
            (:class:`~common.engines.acceleration.NetworkAcceleration`): ``"contiguous"`` (default),
            ``"channels_last"`` (``channels_last``/``channels_last_3d`` for 2D/3D) or ``"auto"`` (per network, the
            faster of the two measured at its first call under the step's autocast). Recorded in
            ``self.acceleration``, logged once at INFO.
        compile: ``True`` (or a dict of :func:`torch.compile` keyword arguments) compiles, in place, the networks
            that an optimiser updates; where compilation is unavailable or fails, one WARNING and eager execution
            with the same results. The first calls compile (warm-up). Default ``False``.
        conv_algorithm: ``"direct"`` (default), ``"winograd"`` (wide 3x3 stride-1 convolutions by Winograd F(2, 3)
            in fp32 on a CPU), ``"kn2row"`` (stride-1 convolutions to few output channels as a 1x1 convolution and a
            shifted sum, in fp32 on a CPU) or ``"auto"`` (each of the two on a CPU where it measures faster and the
            step is fp32); see
            :class:`~common.engines.acceleration.NetworkAcceleration`.
    """

    def __init__(
        self,
        networks: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        device: str | torch.device = "cpu",
        schedulers: Mapping[str, Any] | None = None,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        n_critic: int = 1,
        image_key: str = "image",
        optimizer_networks: Mapping[str, Sequence[str]] | None = None,
        scheduler_interval: str = "epoch",
        memory_format: str = "contiguous",
        compile: bool | Mapping[str, Any] = False,
        conv_algorithm: str = "direct",
    ) -> None:
        groups = {k: list((optimizer_networks or {}).get(k, [k])) for k in optimizers}
        missing = sorted({n for names in groups.values() for n in names if n not in networks})
        if missing:
            raise ValueError(f"optimizers update networks {missing} that are not in {list(networks)}.")
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}.")
        if amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {list(AMP_DTYPES)}, got '{amp_dtype}'.")
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"scheduler_interval must be one of {SCHEDULER_INTERVALS}, got {scheduler_interval!r}.")
        self.networks = dict(networks)
        self.optimizers = dict(optimizers)
        self.optimizer_networks = groups
        self.schedulers = dict(schedulers or {})
        self.scheduler_interval = scheduler_interval
        self.device = torch.device(device)
        self.precision: PrecisionPolicy = resolve_precision(amp, self.device, amp_dtype, across_ranks=True)
        self.resumed_precision: dict[str, Any] | None = None
        logger.info("precision on %s: %s", self.device, self.precision.describe())
        if self.device.type == "cpu" and self.precision.dtype == torch.bfloat16 and not precision_policy.cpu_has_amx():
            guarded = guard_tiny_3d_convolutions(unwrap(n) for n in networks.values())
            if guarded:
                logger.info(
                    "bf16 on a CPU without AMX: %d stride-1 3D convolutions run in float32 when their output is at most"
                    " %d voxels wide (a oneDNN fault; common.engines.cpu_bf16_guard)",
                    guarded,
                    TINY_OUTPUT,
                )
        self.amp = self.precision.enabled
        self.amp_dtype = self.precision.dtype if self.precision.enabled else AMP_DTYPES[amp_dtype]
        self.n_critic = int(n_critic)
        self.image_key = image_key
        use_scaler = self.precision.grad_scaling
        self.scalers = {k: torch.amp.GradScaler(self.device.type, enabled=use_scaler) for k in self.optimizers}
        trained = sorted({n for names in groups.values() for n in names})
        self.acceleration = NetworkAcceleration(
            {k: unwrap(v) for k, v in self.networks.items()},
            self.device,
            memory_format,
            compile,
            trained,
            trained,
            conv_algorithm=conv_algorithm,
            autocast=self.precision.enabled,
        )

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        raise NotImplementedError

    # ----------------------------------------------------------------- state for checkpoints
    def state_objects(self) -> dict[str, Any]:
        """Everything with a ``state_dict`` that a checkpoint must hold to resume this step exactly."""
        objects: dict[str, Any] = dict(self.networks)
        objects.update({f"optimizer_{k}": v for k, v in self.optimizers.items()})
        objects.update({f"scheduler_{k}": v for k, v in self.schedulers.items()})
        objects.update({f"scaler_{k}": v for k, v in self.scalers.items()})
        objects["precision"] = PrecisionState(self)
        # after the networks: a resumed `memory_format: auto` run converts the loaded weights to the saved layouts
        objects["acceleration"] = self.acceleration
        return objects

    def lr_schedule_handlers(self) -> list[LrScheduleHandler]:
        """One MONAI ``LrScheduleHandler`` per scheduler, stepping it every ``scheduler_interval``.

        The trainer attaches them before any other handler, so that a checkpoint written at the same event holds
        the stepped schedulers and a resumed run continues the schedule exactly (the schedulers' states are part
        of :meth:`state_objects`; the handlers hold no state of their own).
        """
        epoch_level = self.scheduler_interval == "epoch"
        return [LrScheduleHandler(s, print_lr=False, epoch_level=epoch_level) for s in self.schedulers.values()]

    # ----------------------------------------------------------------- helpers
    def autocast(self) -> Any:
        """``torch.autocast`` in the dtype of ``self.precision`` for the step's device type, or a no-op (float32)."""
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def images(self, batchdata: Any, key: str | None = None) -> torch.Tensor:
        """The batch's images on the device as a plain tensor (MONAI ``MetaTensor`` metadata dropped), in the
        memory format of the step's networks (``memory_format``)."""
        data = batchdata[key or self.image_key] if isinstance(batchdata, Mapping) else batchdata
        if hasattr(data, "as_tensor"):
            data = data.as_tensor()
        return self.acceleration.images(data.to(self.device, non_blocking=True).float())

    def module(self, name: str, frozen: bool = False) -> nn.Module:
        """The network ``name``; unwrapped from DDP when it is used frozen (no gradient synchronisation)."""
        net = self.networks[name]
        return unwrap(net) if frozen else net

    @contextmanager
    def frozen(self, *names: str) -> Iterator[None]:
        """Disable gradients of the named networks' parameters inside the block, then restore them."""
        saved = []
        for name in names:
            for p in self.networks[name].parameters():
                saved.append((p, p.requires_grad))
                p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in saved:
                p.requires_grad_(flag)

    def generator_turn(self, engine: Any) -> bool:
        """Whether this iteration ends a group of ``n_critic`` discriminator steps (update the generator)."""
        return engine.state.iteration % self.n_critic == 0

    def check_finite(self, engine: Any, losses: Mapping[str, torch.Tensor]) -> None:
        """Raise :class:`DivergenceError` naming the first loss (in ``losses``' order) that is NaN or Inf.

        One host synchronisation for all the losses (the per-loss finiteness flags are stacked on the device and
        read once); the offending loss is looked up only after that check failed.
        """
        if not losses:
            return
        finite = torch.stack([torch.isfinite(v.detach()).all() for v in losses.values()])
        if bool(finite.all()):
            return
        name, value = next((k, v) for (k, v), ok in zip(losses.items(), finite.tolist()) if not ok)
        state = getattr(engine, "state", None)
        where = f" at epoch {state.epoch}, iteration {state.iteration}" if state is not None else ""
        shown = value.item() if value.numel() == 1 else "not finite"
        raise DivergenceError(
            f"Loss '{name}' is {shown}{where}: training stopped before applying this update. "
            "The last checkpoint written before this iteration is kept unchanged; resume from it with a "
            "lower learning rate or with amp disabled."
        )

    def report(self, values: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
        """The logged values of an iteration as Python floats, with one device-to-host transfer for all tensors.

        The one-element tensors are detached, cast to float64 (exact for float32/bfloat16/float16, so each value
        equals its ``.item()``), stacked and read with a single ``tolist()``; Python numbers pass through.

        Args:
            values: logged name -> one-element tensor (any shape with one element) or number.

        Returns:
            ``{name: float}`` in the order of ``values``.
        """
        tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
        fetched: dict[str, float] = {}
        if tensors:
            dtype = torch.float32 if self.device.type == "mps" else torch.float64
            stacked = torch.stack([v.detach().reshape(()).to(self.device, dtype) for v in tensors.values()])
            fetched = dict(zip(tensors, stacked.tolist()))
        return {k: fetched[k] if k in fetched else float(v) for k, v in values.items()}

    def optimise(
        self, engine: Any, name: str, loss: torch.Tensor, terms: Mapping[str, torch.Tensor] | None = None
    ) -> None:
        """Check ``loss``, back-propagate it and step the optimiser ``name`` (with gradient scaling if on).

        Args:
            engine: the trainer (for the iteration named in a divergence error).
            name: the optimiser.
            loss: the scalar loss to minimise.
            terms: optional named parts of ``loss``, checked with it in the same single host synchronisation so
                that a divergence error names the part that became NaN or Inf (before the total).
        """
        self.check_finite(engine, {**(terms or {}), f"{name} loss": loss})
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self.sync_gradients(name)
        scaler.step(optimizer)
        scaler.update()

    grad_bucket_mb: float = DEFAULT_BUCKET_MB
    """Size of the gradient all-reduce buckets in MB (see :func:`common.engines.grad_sync.all_reduce_gradients`)."""

    @torch.no_grad()
    def sync_gradients(self, name: str) -> None:
        """Average the gradients of the networks of optimiser ``name`` over all ranks (no-op when not distributed).

        One ``all_reduce`` per bucket of about :attr:`grad_bucket_mb` MB (as DDP's reducer), built from the parameter
        order and ``requires_grad`` so that all ranks agree on it; see
        :func:`~common.engines.grad_sync.all_reduce_gradients`.
        """
        if get_world_size() == 1:
            return
        params = [p for net in self.optimizer_networks[name] for p in self.networks[net].parameters()]
        all_reduce_gradients(params, self.grad_bucket_mb)

    @torch.no_grad()
    def broadcast_parameters(self, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers of every network to all ranks (no-op when not distributed)."""
        if get_world_size() == 1:
            return
        for net in self.networks.values():
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, src=src)

    @torch.no_grad()
    def clip_weights(self, name: str, clip_value: float) -> None:
        """Clamp every parameter of network ``name`` to ``[-clip_value, clip_value]`` (WGAN, Arjovsky 2017)."""
        for p in self.networks[name].parameters():
            p.clamp_(-clip_value, clip_value)

    # ----------------------------------------------------------------- the adversarial skeleton
    def critic_update(
        self,
        engine: Any,
        name: str,
        critic: Callable[[torch.Tensor], torch.Tensor],
        real: torch.Tensor,
        fake: torch.Tensor,
        adversarial: AdversarialLoss,
        gp_weight: float = 0.0,
        drift_weight: float = 0.0,
        clip_value: float | None = None,
    ) -> CriticLosses:
        """One update of the critic (discriminator) whose optimiser is ``name``.

        Loss ``adversarial(D(real), real) + adversarial(D(fake), fake)`` under autocast, plus the drift term
        ``drift_weight * E[D(real)^2]`` (Karras et al. 2018, appendix A.1) and ``gp_weight`` times the gradient
        penalty at random interpolates (Gulrajani et al. 2017, computed in float32); then the optimiser step (with
        gradient scaling when on) and, with ``clip_value``, WGAN weight clipping (Arjovsky et al. 2017).

        Args:
            engine: the trainer (for the iteration named in a divergence error).
            name: the critic's optimiser (and, for clipping, network) name.
            critic: the critic as a function of the images, ``(B, C, *spatial) -> (B, 1)`` or a patch map (bind
                conditions, stage or ``alpha`` in it).
            real: real images ``(B, C, *spatial)``.
            fake: generated images of the same shape, made without gradients.
            adversarial: the adversarial criterion.
            gp_weight: gradient-penalty weight (0: no penalty).
            drift_weight: drift-term weight (0: off).
            clip_value: clamp the critic's parameters to ``[-clip_value, clip_value]`` after the step (``None``: off).

        Returns:
            The :class:`CriticLosses` of the update.
        """
        with self.autocast():
            d_real, d_fake = critic(real), critic(fake)
            adv = adversarial(d_real, True) + adversarial(d_fake, False)
            loss = adv
            if drift_weight > 0:
                loss = loss + drift_weight * d_real.float().pow(2).mean()
        penalty = None
        if gp_weight > 0:
            penalty = gradient_penalty(critic, real, fake)
            loss = loss + gp_weight * penalty
        self.optimise(engine, name, loss)
        if clip_value is not None:
            self.clip_weights(name, clip_value)
        return CriticLosses(loss, adv.detach(), penalty)

    def generator_update(
        self, engine: Any, name: str, loss_fn: Callable[[], torch.Tensor], frozen: Sequence[str] = ()
    ) -> torch.Tensor:
        """One update of optimiser ``name`` with the networks ``frozen`` (the critics) frozen, under autocast.

        Args:
            engine: the trainer.
            name: the optimiser to step.
            loss_fn: computes the scalar loss (called inside the frozen and autocast block; use
                ``self.module(critic, frozen=True)`` for the critics in it).
            frozen: the networks whose parameters get no gradient.

        Returns:
            The loss.
        """
        with self.frozen(*frozen), self.autocast():
            loss = loss_fn()
        self.optimise(engine, name, loss)
        return loss

    def adversarial_iteration(
        self,
        engine: Any,
        real: torch.Tensor,
        generate: Callable[[nn.Module], torch.Tensor],
        discriminate: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        adversarial: AdversarialLoss,
        gp_weight: float = 0.0,
        drift_weight: float = 0.0,
        clip_value: float | None = None,
        generator: str = "generator",
        discriminator: str = "discriminator",
    ) -> dict[str, float]:
        """One iteration of a noise-to-image GAN: a critic update, and a generator update every ``n_critic``-th.

        The sequence: generated images without gradients -> :meth:`critic_update` (adversarial loss, drift,
        gradient penalty, clipping) -> when :meth:`generator_turn`, new generated images and
        :meth:`generator_update` with the critic frozen (non-saturating loss, ``-E[D(G(z))]`` for WGAN).

        Args:
            engine: the trainer.
            real: real images ``(B, C, *spatial)``.
            generate: ``generate(net) -> (B, C, *spatial)``: runs the generator ``net`` on freshly drawn latents
                (and conditions); called once for the critic update and once for the generator update.
            discriminate: ``discriminate(net, images) -> scores``: runs the critic ``net``.
            adversarial: the adversarial criterion.
            gp_weight, drift_weight, clip_value: see :meth:`critic_update`.
            generator, discriminator: names of the two networks and their optimisers.

        Returns:
            ``{"gradient_penalty" (with gp_weight > 0), "loss_d", "wasserstein_estimate" (WGAN), "loss_g" (on
            generator turns)}``.
        """
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad(), self.autocast():
            fake = generate(self.module(generator, frozen=True)).float()
        critic = functools.partial(discriminate, self.networks[discriminator])
        d = self.critic_update(
            engine, discriminator, critic, real, fake, adversarial, gp_weight, drift_weight, clip_value
        )
        if d.penalty is not None:
            out["gradient_penalty"] = d.penalty
        out["loss_d"] = d.total
        if adversarial.criterion == "wgan":
            out["wasserstein_estimate"] = -d.adversarial

        if self.generator_turn(engine):
            frozen_critic = self.module(discriminator, frozen=True)

            def generator_loss() -> torch.Tensor:
                scores = discriminate(frozen_critic, generate(self.networks[generator]))
                return adversarial(scores, True, for_discriminator=False)

            out["loss_g"] = self.generator_update(engine, generator, generator_loss, (discriminator,))
        return self.report(out)
