"""Training-step objects for :class:`common.engines.AdversarialTrainer`.

The engine owns the loop (data, events, checkpoints, handlers); a step object owns one method's maths
(``__call__(engine, batchdata) -> dict`` of scalar losses). The helpers that every adversarial method needs
live here once, not in each method:

- autocast by device type (``torch.autocast(device.type, dtype)``; bfloat16 works on CPU and CUDA);
- gradient scaling (``torch.amp.GradScaler``, enabled only for float16 autocast on CUDA);
- ``n_critic``: discriminator steps per generator step (one fresh real batch per critic step, as in
  Algorithm 1 of Arjovsky et al. 2017: the generator is updated on every ``n_critic``-th iteration);
- freezing a network during the other's update (``requires_grad=False`` and, under DDP, calling the
  unwrapped module so that the frozen network's reducer never waits for gradients);
- weight clipping (WGAN);
- distributed data parallelism without a DDP wrapper: after each backward the step averages the updated
  network's gradients over ranks (``all_reduce``). Adversarial steps run several forwards per backward
  (discriminator on real, then on fake) and freeze one network during the other's update, which DDP's reducer
  does not support; an explicit all-reduce supports both;
- a non-finite loss check before every update: training stops with :class:`DivergenceError` and nothing is
  written after it, so the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

__all__ = ["DivergenceError", "TrainingStep", "unwrap"]

_AMP_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class DivergenceError(RuntimeError):
    """A loss became NaN or Inf; training is stopped before the bad update is applied."""


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside a ``DataParallel``/``DistributedDataParallel`` wrapper (or the module itself)."""
    return network.module if isinstance(network, (DataParallel, DistributedDataParallel)) else network


class TrainingStep:
    """Base class of per-method training steps.

    Args:
        networks: the trained networks by name, e.g. ``{"generator": G, "discriminator": D}``.
        optimizers: one optimiser per network name that is updated.
        device: the training device.
        schedulers: optional learning-rate schedulers by name; stepped at every epoch end by the trainer.
        amp: enable mixed precision (``torch.autocast`` with ``amp_dtype`` on the device type).
        amp_dtype: ``"bfloat16"`` (default; CPU and recent GPUs) or ``"float16"`` (CUDA, with gradient scaling).
        n_critic: discriminator updates per generator update.
        image_key: key of the images in the batch dictionaries.
        optimizer_networks: which networks each optimiser updates, e.g.
            ``{"generators": ["gen_n", "gen_p", "attn_n", "attn_p"], "discriminators": ["disc_n", "disc_p"]}``
            (CycleGAN updates both generators with one Adam); default: the network of the optimiser's own name.
    """

    def __init__(
        self,
        networks: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        device: str | torch.device = "cpu",
        schedulers: Mapping[str, Any] | None = None,
        amp: bool = False,
        amp_dtype: str = "bfloat16",
        n_critic: int = 1,
        image_key: str = "image",
        optimizer_networks: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        groups = {k: list((optimizer_networks or {}).get(k, [k])) for k in optimizers}
        missing = sorted({n for names in groups.values() for n in names if n not in networks})
        if missing:
            raise ValueError(f"optimizers update networks {missing} that are not in {list(networks)}.")
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}.")
        if amp_dtype not in _AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {list(_AMP_DTYPES)}, got '{amp_dtype}'.")
        self.networks = dict(networks)
        self.optimizers = dict(optimizers)
        self.optimizer_networks = groups
        self.schedulers = dict(schedulers or {})
        self.device = torch.device(device)
        self.amp = bool(amp)
        self.amp_dtype = _AMP_DTYPES[amp_dtype]
        self.n_critic = int(n_critic)
        self.image_key = image_key
        use_scaler = self.amp and self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scalers = {k: torch.amp.GradScaler(self.device.type, enabled=use_scaler) for k in self.optimizers}

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        raise NotImplementedError

    # ----------------------------------------------------------------- state for checkpoints
    def state_objects(self) -> dict[str, Any]:
        """Everything with a ``state_dict`` that a checkpoint must hold to resume this step exactly."""
        objects: dict[str, Any] = dict(self.networks)
        objects.update({f"optimizer_{k}": v for k, v in self.optimizers.items()})
        objects.update({f"scheduler_{k}": v for k, v in self.schedulers.items()})
        objects.update({f"scaler_{k}": v for k, v in self.scalers.items()})
        return objects

    def on_epoch_completed(self, engine: Any) -> None:
        """Step the learning-rate schedulers once per epoch."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    # ----------------------------------------------------------------- helpers
    def autocast(self) -> Any:
        """``torch.autocast`` for the step's device type, or a no-op when AMP is off."""
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def images(self, batchdata: Any, key: str | None = None) -> torch.Tensor:
        """The batch's images on the device as a plain tensor (MONAI ``MetaTensor`` metadata dropped)."""
        data = batchdata[key or self.image_key] if isinstance(batchdata, Mapping) else batchdata
        if hasattr(data, "as_tensor"):
            data = data.as_tensor()
        return data.to(self.device, non_blocking=True).float()

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
        """Raise :class:`DivergenceError` naming the loss if any loss is NaN or Inf."""
        for name, value in losses.items():
            if not torch.isfinite(value.detach()).all():
                state = getattr(engine, "state", None)
                where = f" at epoch {state.epoch}, iteration {state.iteration}" if state is not None else ""
                raise DivergenceError(
                    f"Loss '{name}' is {value.item()}{where}: training stopped before applying this update. "
                    "The last checkpoint written before this iteration is kept unchanged; resume from it with a "
                    "lower learning rate or with amp disabled."
                )

    def optimise(self, engine: Any, name: str, loss: torch.Tensor) -> None:
        """Check ``loss``, back-propagate it and step the optimiser ``name`` (with gradient scaling if on)."""
        self.check_finite(engine, {f"{name} loss": loss})
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self.sync_gradients(name)
        scaler.step(optimizer)
        scaler.update()

    @torch.no_grad()
    def sync_gradients(self, name: str) -> None:
        """Average the gradients of the networks of optimiser ``name`` over all ranks (no-op when not distributed)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        world = dist.get_world_size()
        params = [p for net in self.optimizer_networks[name] for p in self.networks[net].parameters()]
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(world)

    @torch.no_grad()
    def broadcast_parameters(self, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers of every network to all ranks (no-op when not distributed)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for net in self.networks.values():
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, src=src)

    @torch.no_grad()
    def clip_weights(self, name: str, clip_value: float) -> None:
        """Clamp every parameter of network ``name`` to ``[-clip_value, clip_value]`` (WGAN, Arjovsky 2017)."""
        for p in self.networks[name].parameters():
            p.clamp_(-clip_value, clip_value)
