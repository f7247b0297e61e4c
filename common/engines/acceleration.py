"""The memory format and the compilation of a training step's networks (``memory_format``, ``compile``).

**Memory format.** ``"channels_last"`` stores every 4D parameter, buffer and input image of the step as
``torch.channels_last`` (NHWC) and every 5D one as ``torch.channels_last_3d`` (NDHWC), so that convolution kernels
that prefer channels-last (cuDNN's tensor-core kernels, oneDNN) skip their layout conversions. The choice is made per
tensor from its number of dimensions, i.e. per network from the dimensionality of its convolution weights (a 3D
network gets ``channels_last_3d``). Parameters are converted in place (``param.data``; the ``nn.Parameter`` objects
the optimisers hold stay the same) and keep their format through optimiser steps (updates are in place; Adam's
moments are created ``preserve_format``). ``state_dict`` values are saved as they are and ``load_state_dict`` copies
into the existing tensors, so a checkpoint written in one format loads into a step in the other.

``"auto"`` decides per network on the device by measurement: at a network's first call, its forward (and, for a
network that an optimiser updates, backward) is timed on that call's own inputs in both formats, under the autocast
that is active at the call (the step's precision), and the faster is kept. Channels-last must be at least
:data:`AUTO_MARGIN` faster to be chosen (conversions cost something, and a tie keeps the plain layout). The choice is
logged once per network at INFO. The measurement changes nothing that the training sees: it works on detached
copies of the inputs, takes gradients with ``torch.autograd.grad`` (no ``.grad`` is written), restores the
network's buffers (running statistics, spectral-norm vectors) and runs under a forked random state. It costs
``2 + 2 * rounds`` forward+backward passes per network (:data:`AUTO_ROUNDS`), about two training steps of a
CycleGAN. Only networks with torch convolution modules are measured, at a call of the network itself: one used
only through its submodules or methods (e.g. MUNIT's ``encode``/``decode``) or without convolution modules (e.g.
StyleGAN2's modulated convolutions) keeps the plain layout. The choices are checkpointed (the step's state
``acceleration``): a resumed ``auto`` run adopts them instead of measuring again, since another choice would round
differently and break the exact continuation. Under
distributed training each rank measures for itself; the gradient all-reduce flattens gradients in logical order, so
ranks that chose differently still average the same elements.

**Convolution algorithm.** ``conv_algorithm`` names another way to compute some of the networks' convolutions on a
CPU, the same convolution up to float rounding (:mod:`common.networks.blocks.conv_algorithms`): ``"winograd"``
computes the wide 3x3(x3) stride-1 layers (at least 128 input and output channels, e.g. a CycleGAN's residual
blocks) by Winograd's F(2, 3), ``"kn2row"`` the stride-1 layers with few output channels and a kernel of several
taps (a generator's final 7x7 layer, an attention network's map, a PatchGAN's final layer) as one wide 1x1
convolution and a shifted sum, wherever they run in fp32 on a CPU; under autocast and on CUDA they stay direct.
``"auto"`` switches the layers of both on a CPU when the step computes in fp32 (not on other devices, not under
autocast), and each then uses its algorithm only for the call signatures (input and weight shapes, with or without
gradients) where :func:`~common.networks.blocks.conv_algorithms.measured_speedup` times it at least
:data:`~common.networks.blocks.conv_algorithms.AUTO_MARGIN` faster than the direct method, once per signature and
process at its first call (about 1 s for a CycleGAN's residual blocks at 256x256 on a 2-core AVX2 CPU). The
parameters, ``state_dict`` and checkpoints are those of the direct method. The choices, with the timings and the
CPU identity (model, vector ISA, threads) they were measured with, are checkpointed
(:meth:`NetworkAcceleration.state_dict`): a run resumed on the same CPU with as many threads adopts them, so that it
computes every layer as the run that wrote the checkpoint did (another choice rounds differently, and the
continuation would not be exact); elsewhere it measures again. Ranks may choose differently. On the same fp32 CPU
steps ``"auto"`` also computes the instance norms without running statistics (CycleGAN's generators, the
PatchGANs, CDA-GAN's attention networks, pix2pix's U-Net, MUNIT's encoders and AdaIN) by torch's group-norm kernel,
the same normalisation up to float rounding and 1.2-2.5x as fast forward and backward
(:mod:`common.networks.blocks.instance_norm_kernel`), wherever a norm's input is a contiguous float32 CPU tensor;
by rule, not by measurement, so there is nothing to checkpoint. The other settings keep torch's instance norm
(``"direct"`` torch's own convolutions too).

**Compilation.** ``compile=True`` (or a dict of :func:`torch.compile` keyword arguments, e.g. ``{"backend":
"inductor", "mode": "max-autotune"}``) compiles the networks that an optimiser updates (moving-average copies that
only make samples stay eager). Each network is compiled in place, as :meth:`torch.nn.Module.compile` does, by
setting the module's ``_compiled_call_impl``: the module object, its parameters and its ``state_dict`` keys stay
the same (no ``_orig_mod.`` prefix), so checkpoints are interchangeable with eager runs, and ``copy.deepcopy`` (an
EMA copy) makes an eager copy (``nn.Module.__getstate__`` drops the compiled call), never one that calls the
original's compiled forward. The compiled function is ``module._call_impl`` behind a wrapper defined here rather
than ``Module.compile()``'s bound ``_call_impl`` itself: torch 2.13's Dynamo skips the frames of files in
``torch/nn`` when they are the first frame it sees, so ``Module.compile()`` on a module whose ``forward`` is torch's
own (e.g. an ``nn.Sequential``) compiled nothing, silently (measured).

Where compilation is unavailable (Dynamo does not support this Python or platform, Inductor has no C++ compiler on
a CPU, ...), one WARNING names the reason and every network runs eagerly. Where compiling a network fails at a call
(the backend raises, e.g. torch 2.13's Inductor on both 3D MCGAN discriminators: ``LoweringException: ValueError:
Exponent must be non-negative``), one WARNING names that network and the error, the call is re-run eagerly and that
network stays eager (the others stay compiled), so the results are those of an eager run; the full traceback is
logged at DEBUG. The backward graph is compiled together with the forward (``force_non_lazy_backward_lowering``), so
that its failures, too, happen inside the guarded call. The first calls (one per variant: with and without
gradients, with the network frozen or not) compile and are slow: benchmarks exclude them as warm-up. A compiled
network computes what the eager one does up to rounding, except its random ops (dropout): Inductor draws their
numbers its own way, so they differ from an eager run's (``torch._inductor.config.fallback_random`` makes them
match, at some speed). With ``conv_algorithm: auto`` a compiled network's first call runs eagerly, so that its
switched convolutions measure their call signatures (:mod:`common.networks.blocks.conv_algorithms`); the compiled
graph then computes each of those layers as measured.

**Inference.** :func:`accelerate_inference` gives an inference config's network the same ``memory_format`` and
``conv_algorithm`` as its training config, without compilation and with every measurement forward only (the bundles'
``inference.yaml`` wrap their networks in it), so that synthesis computes as the training step does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from common.networks.blocks.conv_algorithms import (
    ALGORITHMS,
    choices_state,
    conv_measurements,
    load_choices_state,
    use_conv_algorithm,
)
from common.networks.blocks.instance_norm_kernel import use_group_norm_kernel
from common.utils.errors import UserInputError

__all__ = [
    "AUTO_MARGIN",
    "AUTO_ROUNDS",
    "CONV_ALGORITHMS",
    "MEMORY_FORMATS",
    "PENDING",
    "AccelerationSettingError",
    "NetworkAcceleration",
    "accelerate_inference",
    "as_memory_format",
    "compile_unavailable_reason",
    "conv_spatial_dims",
    "convert_memory_format",
    "measure_memory_formats",
]

logger = logging.getLogger(__name__)

MEMORY_FORMATS = ("contiguous", "channels_last", "auto")
"""The accepted values of ``memory_format``."""

CONV_ALGORITHMS = ("direct",) + ALGORITHMS + ("auto",)
"""The accepted values of ``conv_algorithm``."""

AUTO_MARGIN = 0.05
"""``memory_format="auto"`` keeps channels-last for a network only when it is at least this fraction faster."""

AUTO_ROUNDS = 2
"""Timed forward+backward passes per format in ``memory_format="auto"`` (after one untimed pass per format)."""

PENDING = "contiguous (auto: not called yet)"
"""The recorded format of a network that ``memory_format="auto"`` has not measured yet (a network that a step only
uses through its submodules or methods, e.g. ``encode``/``decode``, is never measured and stays contiguous)."""


class AccelerationSettingError(UserInputError, ValueError):
    """A ``memory_format`` or ``compile`` setting of a training step (a bundle's train.yaml) is not valid."""


def _channels_last(ndim: int) -> torch.memory_format | None:
    """The channels-last format of a tensor with ``ndim`` dimensions (4: 2D images, 5: 3D volumes), else None."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)


def as_memory_format(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``tensor`` in channels-last (4D: ``channels_last``, 5D: ``channels_last_3d``) or plain contiguous layout.

    Args:
        tensor: any tensor; only 4D and 5D tensors change.
        channels_last: the target layout.

    Returns:
        The tensor itself when already in that layout (or not 4D/5D), else a copy.
    """
    fmt = _channels_last(tensor.ndim)
    if fmt is None:
        return tensor
    return tensor.contiguous(memory_format=fmt if channels_last else torch.contiguous_format)


def conv_spatial_dims(network: nn.Module) -> int | None:
    """The spatial dimensionality of ``network``'s convolutions (2 or 3; 1 for 1D), or None without torch convolution
    modules (``memory_format="auto"`` measures only networks with them; the others keep the plain layout)."""
    for module in network.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.weight.ndim - 2
    return None


def convert_memory_format(network: nn.Module, channels_last: bool) -> nn.Module:
    """Convert every 4D/5D parameter, gradient and buffer of ``network`` in place (see :func:`as_memory_format`).

    The ``nn.Parameter`` objects stay the same (their ``.data`` changes), so optimisers that hold them need nothing.

    Args:
        network: the network.
        channels_last: the target layout.

    Returns:
        ``network``.
    """
    return network._apply(lambda t: as_memory_format(t, channels_last))


def format_name(network: nn.Module, channels_last: bool) -> str:
    """``"channels_last"``, ``"channels_last_3d"`` or ``"contiguous"``: the layout of ``network``'s convolution
    weights (of its 4D/5D parameters for a network without torch convolution modules, e.g. StyleGAN2's modulated
    convolutions; ``"contiguous"`` when it has none)."""
    if not channels_last:
        return "contiguous"
    dims = conv_spatial_dims(network)
    if dims is None:
        ranks = {p.ndim for p in network.parameters()} & {4, 5}
        dims = max(ranks) - 2 if ranks else None
    return {2: "channels_last", 3: "channels_last_3d"}.get(dims, "contiguous")  # type: ignore[arg-type]


def compile_unavailable_reason(device: torch.device, options: Mapping[str, Any]) -> str | None:
    """Why :func:`torch.compile` cannot work here, or None when it may (a failure at the first call is still caught).

    Checks that Dynamo supports this Python and platform and, for the default Inductor backend, that Inductor does
    too and that it finds a C++ compiler when it would generate CPU code.

    Args:
        device: the device the networks run on.
        options: the :func:`torch.compile` keyword arguments.
    """
    try:
        from torch._dynamo import eval_frame

        eval_frame.check_if_dynamo_supported()
    except Exception as error:  # torch.compile itself is missing or refuses this Python/platform
        return f"torch.compile is not supported here ({error})"
    backend = options.get("backend", "inductor")
    if backend != "inductor":
        return None
    try:
        eval_frame.check_if_inductor_supported()
    except Exception as error:
        return f"the inductor backend is not supported here ({error})"
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except ImportError:  # a torch without this query: the first call tells
            return None
        except Exception as error:
            return f"the inductor backend finds no C++ compiler for CPU code ({error})"
    return None


# ----------------------------------------------------------------------------- measurement of "auto"
def _tensors(tree: Any) -> Iterator[torch.Tensor]:
    """The tensors in nested tuples, lists and dicts (a network's inputs or outputs)."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors(item)
    elif isinstance(tree, Mapping):
        for item in tree.values():
            yield from _tensors(item)


def _detached_inputs(tree: Any, channels_last: bool) -> Any:
    """A copy of the inputs' structure: floating tensors detached, in the given layout, requiring gradients."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point():
            return as_memory_format(tree.detach(), channels_last).clone().requires_grad_(True)
        return tree
    if isinstance(tree, (list, tuple)):
        items = [_detached_inputs(item, channels_last) for item in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    if isinstance(tree, Mapping):
        return {k: _detached_inputs(v, channels_last) for k, v in tree.items()}
    return tree


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _untouched(network: nn.Module, device: torch.device, trained: bool) -> Iterator[None]:
    """Inside the block the network's parameters require gradients (when ``trained``); afterwards its buffers (looked
    up by name: a layout conversion replaces buffer tensors), ``requires_grad`` flags and the random state are as
    before."""
    buffers = {name: b.detach().clone() for name, b in network.named_buffers()}
    flags = [(p, p.requires_grad) for p in network.parameters()]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            if trained:
                for p, _ in flags:
                    p.requires_grad_(True)
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
            with torch.no_grad():
                for name, b in network.named_buffers():
                    if name in buffers:
                        b.copy_(buffers[name])


def _forward_backward(network: nn.Module, args: Any, kwargs: Any, trained: bool) -> None:
    """One forward (and with ``trained`` one backward to the parameters and the inputs) of ``network``, with
    gradients enabled even when the network's call happens under ``torch.no_grad()``."""
    if not trained:
        with torch.no_grad():
            network._call_impl(*args, **kwargs)
        return
    with torch.enable_grad():
        outputs = [t for t in _tensors(network._call_impl(*args, **kwargs)) if t.requires_grad]
        wrt = [p for p in network.parameters() if p.requires_grad]
        wrt += [t for t in _tensors((args, kwargs)) if t.requires_grad]
        if outputs and wrt:
            total = torch.stack([t.float().mean() for t in outputs]).sum()
            torch.autograd.grad(total, wrt, allow_unused=True)


def measure_memory_formats(
    network: nn.Module,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    device: str | torch.device,
    trained: bool = True,
    rounds: int = AUTO_ROUNDS,
) -> dict[str, float]:
    """Seconds of one forward(+backward) of ``network`` on these inputs in the contiguous and channels-last layouts.

    The formats alternate (one untimed pass each, then ``rounds`` timed passes each) so that a drift of the
    machine's load falls on both; each result is the fastest of its passes. Autocast, if active around the call,
    applies. The network is left in the plain contiguous layout; its buffers, ``requires_grad`` flags and the random
    state are restored, and no ``.grad`` is written.

    Args:
        network: the network (not a DDP wrapper).
        args, kwargs: the inputs of one call, e.g. the first call of a training step.
        device: the device (CUDA is synchronised around each timed pass).
        trained: time the backward too (gradients of the parameters and the floating inputs), as for a network
            that an optimiser updates; else the forward alone, without gradients.
        rounds: timed passes per format.

    Returns:
        ``{"contiguous": seconds, "channels_last": seconds}``.
    """
    device = torch.device(device)
    best = {"contiguous": float("inf"), "channels_last": float("inf")}
    with _untouched(network, device, trained):
        for i in range(1 + max(1, int(rounds))):
            for name in best:
                channels_last = name == "channels_last"
                convert_memory_format(network, channels_last)
                inputs = _detached_inputs((tuple(args), dict(kwargs)), channels_last)
                _synchronize(device)
                start = time.perf_counter()
                _forward_backward(network, inputs[0], inputs[1], trained)
                _synchronize(device)
                if i > 0:
                    best[name] = min(best[name], time.perf_counter() - start)
        convert_memory_format(network, False)
    return best


# ----------------------------------------------------------------------------- the step's networks
class _AcceleratedCall:
    """What a network's ``__call__`` runs (installed as its ``_compiled_call_impl``): at the first call the
    ``"auto"`` measurement, then the compiled forward with an eager fallback, or the eager one.

    With ``eager_first`` (``conv_algorithm: auto`` with compilation) the first call runs eagerly, so that the
    network's switched convolutions measure its call signatures where they can: a trace cannot time anything.
    """

    def __init__(self, owner: NetworkAcceleration, name: str, module: nn.Module, eager_first: bool = False) -> None:
        self.owner = owner
        self.name = name
        self.module = module
        self.measure = owner.memory_format == "auto"
        self.eager_first = eager_first
        self.compiled: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.measure:
            self.measure = False
            self.owner._choose_format(self.name, self.module, args, kwargs)
        if self.compiled is None or self.eager_first:
            self.eager_first = False
            return self.module._call_impl(*args, **kwargs)
        try:
            with _eager_backward_compilation():
                return self.compiled(*args, **kwargs)
        except Exception as error:  # the compile failed: this call and all later ones run eagerly
            self.owner._compile_failed(self.name, error)
            return self.module._call_impl(*args, **kwargs)


@contextlib.contextmanager
def _eager_backward_compilation() -> Iterator[None]:
    """Compile the backward graph with the forward (AOTAutograd compiles it at the first backward otherwise)."""
    try:
        from torch._functorch import config

        patch = config.patch(force_non_lazy_backward_lowering=True)
    except (ImportError, AttributeError):  # pragma: no cover - a torch without the option
        patch = contextlib.nullcontext()
    with patch:
        yield


def _eager_entry(module: nn.Module) -> Callable[..., Any]:
    """A function of this file (not of ``torch/nn``, whose frames Dynamo skips) that runs the module's forward with
    its hooks: the function that :func:`torch.compile` compiles."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        return module._call_impl(*args, **kwargs)

    return forward


class NetworkAcceleration:
    """The memory format and the compilation of a training step's networks (see the module docstring).

    Args:
        networks: the step's networks by name, unwrapped from DDP (``None`` values are skipped).
        device: the training device.
        memory_format: ``"contiguous"`` (default), ``"channels_last"`` (2D and 3D networks and inputs) or
            ``"auto"`` (per network, measured at its first call).
        compile: ``False`` (default), ``True`` (:func:`torch.compile` with its defaults) or a dict of
            :func:`torch.compile` keyword arguments.
        compiled_networks: the names of the networks to compile (default: all); e.g. those an optimiser updates.
        trained_networks: the names of the networks whose backward ``"auto"`` times (default: all).

    Attributes:
        formats: network name -> ``"contiguous"``, ``"channels_last"``, ``"channels_last_3d"`` or, with ``"auto"``
            before the network's first call, :data:`PENDING`.
        compile_status: ``"off"``, ``"on"``, ``"eager fallback: <reason>"`` (compilation unavailable: every network
            eager) or ``"on, eager fallback for <network> (<error>), ..."`` (those networks failed to compile at a
            call and run eagerly, the others compiled).
        compile_fallbacks: network name -> the error that made it fall back to eager execution.

    Raises:
        AccelerationSettingError: ``memory_format`` or ``compile`` is not one of the accepted values.
    """

    def __init__(
        self,
        networks: Mapping[str, nn.Module | None],
        device: str | torch.device = "cpu",
        memory_format: str = "contiguous",
        compile: bool | Mapping[str, Any] = False,
        compiled_networks: Sequence[str] | None = None,
        trained_networks: Sequence[str] | None = None,
        conv_algorithm: str = "direct",
        autocast: bool = False,
    ) -> None:
        if conv_algorithm not in CONV_ALGORITHMS:
            raise AccelerationSettingError(
                f"conv_algorithm must be one of {list(CONV_ALGORITHMS)} (train.yaml's `conv_algorithm`), "
                f"got {conv_algorithm!r}."
            )
        if memory_format not in MEMORY_FORMATS:
            raise AccelerationSettingError(
                f"memory_format must be one of {list(MEMORY_FORMATS)} (train.yaml's `memory_format`), "
                f"got {memory_format!r}."
            )
        if not isinstance(compile, (bool, Mapping)):
            raise AccelerationSettingError(
                "compile must be true, false or a mapping of torch.compile keyword arguments (train.yaml's "
                f"`compile`), got {compile!r}."
            )
        self.device = torch.device(device)
        self.memory_format = memory_format
        self.networks = {k: v for k, v in networks.items() if v is not None}
        self._dims = {k: conv_spatial_dims(v) for k, v in self.networks.items()}
        self.compile_options: dict[str, Any] | None = (
            None if compile is False else ({} if compile is True else dict(compile))
        )
        names = list(self.networks)
        self.trained_networks = set(names if trained_networks is None else trained_networks)
        compiled = set(names if compiled_networks is None else compiled_networks)
        self.formats: dict[str, str] = {}
        self.times: dict[str, dict[str, float]] = {}
        self.compile_status = "off"
        self.compile_fallbacks: dict[str, str] = {}
        self._calls: dict[str, _AcceleratedCall] = {}
        self.conv_algorithm = conv_algorithm
        self.switched_convolutions: dict[str, dict[str, int]] = {}
        measure = conv_algorithm == "auto"
        auto_here = measure and self.device.type == "cpu" and not autocast  # an fp32 CPU step under "auto"
        if conv_algorithm in ALGORITHMS or auto_here:
            for algorithm in ALGORITHMS if measure else (conv_algorithm,):
                self.switched_convolutions[algorithm] = {
                    k: use_conv_algorithm(v, algorithm, measure=measure) for k, v in self.networks.items()
                }
        self.group_norm_kernel: dict[str, int] = {}
        if auto_here:
            self.group_norm_kernel = {k: use_group_norm_kernel(v) for k, v in self.networks.items()}

        channels_last = memory_format == "channels_last"
        for name, net in self.networks.items():
            if memory_format == "auto" and self._dims[name] is not None:
                self.formats[name] = PENDING
            else:
                if channels_last:
                    convert_memory_format(net, True)
                self.formats[name] = format_name(net, channels_last)
        if self.compile_options is not None:
            reason = compile_unavailable_reason(self.device, self.compile_options)
            if reason is None:
                self.compile_status = "on"
            else:
                self._fall_back(reason)
        for name, net in self.networks.items():
            measure = self.formats[name] == PENDING
            compile_it = self.compile_status == "on" and name in compiled
            if measure or compile_it:
                call = _AcceleratedCall(self, name, net, eager_first=conv_algorithm == "auto")
                if compile_it:
                    call.compiled = torch.compile(_eager_entry(net), **self.compile_options)  # type: ignore[arg-type]
                self._calls[name] = call
                net._compiled_call_impl = call
        logger.info("acceleration on %s: %s", self.device, self.describe())

    # ------------------------------------------------------------------------- state
    def describe(self) -> str:
        """One line, e.g. ``"memory format contiguous (gen_n: contiguous, ...); conv algorithm auto (...); compile
        off"``."""
        formats = ", ".join(f"{k}: {v}" for k, v in self.formats.items())
        return f"memory format {self.memory_format} ({formats}); {self.describe_conv()}; compile {self.compile_status}"

    def describe_conv(self) -> str:
        """E.g. ``"conv algorithm auto (winograd-capable: gen_n 18, gen_p 18, disc_n 0, disc_p 0; kn2row-capable:
        gen_n 1, gen_p 1, disc_n 1, disc_p 1)"``."""
        text = f"conv algorithm {self.conv_algorithm}"
        if self.switched_convolutions:
            text += (
                " ("
                + "; ".join(
                    f"{algorithm}-capable: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                    for algorithm, counts in self.switched_convolutions.items()
                )
                + ")"
            )
        elif self.conv_algorithm == "auto":
            text += " (direct: not an fp32 CPU step)" if self.device.type != "cpu" else " (direct: autocast)"
        if any(self.group_norm_kernel.values()):
            text += (
                "; instance norm by the group-norm kernel ("
                + ", ".join(f"{k} {v}" for k, v in self.group_norm_kernel.items())
                + ")"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly record: ``{"memory_format", "formats", "compile", "compile_status", "compile_fallbacks",
        "conv_algorithm", "switched_convolutions", "conv_measurements", "group_norm_kernel"}`` (plus
        ``"auto_times_s"`` with the ``memory_format="auto"`` measurements). ``switched_convolutions``: per algorithm
        and network, the convolutions switched to it (or, with ``"auto"``, to measuring it); ``conv_measurements``:
        with ``"auto"``, every call signature measured so far in this process
        (:func:`~common.networks.blocks.conv_algorithms.conv_measurements`); ``group_norm_kernel``: per network, the
        instance norms computed by the group-norm kernel (``"auto"`` on a CPU in fp32)."""
        record: dict[str, Any] = {
            "memory_format": self.memory_format,
            "formats": dict(self.formats),
            "compile": self.compile_options is not None,
            "compile_status": self.compile_status,
            "compile_fallbacks": dict(self.compile_fallbacks),
            "conv_algorithm": self.conv_algorithm,
            "switched_convolutions": {k: dict(v) for k, v in self.switched_convolutions.items()},
            "conv_measurements": conv_measurements() if self.conv_algorithm == "auto" else [],
            "group_norm_kernel": dict(self.group_norm_kernel),
        }
        if self.times:
            record["auto_times_s"] = {k: dict(v) for k, v in self.times.items()}
        return record

    def state_dict(self) -> dict[str, Any]:
        """The checkpointed part: with ``memory_format="auto"``, the layouts chosen so far (``{"formats": {name:
        layout}}``), so that a resumed run keeps them instead of measuring again (a new choice would change the order
        of floating-point operations, and with it the exact continuation); with ``conv_algorithm="auto"`` and
        switched layers, for the same reason, the convolution algorithms chosen so far (``"conv_choices"``:
        :func:`~common.networks.blocks.conv_algorithms.choices_state`). Plain types only (loadable with
        ``weights_only=True``)."""
        chosen = {k: v for k, v in self.formats.items() if v != PENDING} if self.memory_format == "auto" else {}
        state: dict[str, Any] = {"memory_format": self.memory_format, "formats": chosen}
        if self.conv_algorithm == "auto" and self.switched_convolutions:
            state["conv_choices"] = choices_state(self.networks)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt what an ``"auto"`` run chose without measuring it again: the layouts (networks still
        :data:`PENDING` here, by name), where this step's ``memory_format`` is ``"auto"`` too (an explicit setting of
        the resumed run wins); the convolution algorithms, where this step's ``conv_algorithm`` is ``"auto"`` with
        switched layers and the checkpoint's run measured on this CPU with as many threads
        (:func:`~common.networks.blocks.conv_algorithms.load_choices_state`; else they are measured again)."""
        if self.memory_format == "auto":
            self._load_formats(state)
        saved = state.get("conv_choices")
        if saved and self.conv_algorithm == "auto" and self.switched_convolutions:
            adopted = load_choices_state(self.networks, saved)
            if adopted is not None:
                logger.info("conv algorithm auto: %d layers keep the choices of the checkpoint", adopted)
            else:
                logger.info(
                    "conv algorithm auto: the checkpoint measured its choices on %s; measuring again on this CPU",
                    dict(saved.get("identity", {})),
                )

    def _load_formats(self, state: Mapping[str, Any]) -> None:
        for name, layout in dict(state.get("formats", {})).items():
            if self.formats.get(name) != PENDING or layout == PENDING:
                continue
            channels_last = str(layout).startswith("channels_last")
            convert_memory_format(self.networks[name], channels_last)
            self.formats[name] = format_name(self.networks[name], channels_last)
            call = self._calls[name]
            call.measure = False
            if call.compiled is None:
                self.networks[name]._compiled_call_impl = None
            logger.info("memory format auto: %s -> %s (from the checkpoint)", name, self.formats[name])

    def input_channels_last(self, ndim: int) -> bool:
        """Whether the step's input images with ``ndim`` dimensions go channels-last: with ``"channels_last"``
        always (4D/5D), with ``"auto"`` when most of the networks of that dimensionality chose it so far."""
        if self.memory_format != "auto":
            return self.memory_format == "channels_last"
        chosen = [v for k, v in self.formats.items() if self._dims[k] == ndim - 2]
        return sum(v.startswith("channels_last") for v in chosen) * 2 > len(chosen)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` in the layout of :meth:`input_channels_last`."""
        return as_memory_format(images, self.input_channels_last(images.ndim))

    # ------------------------------------------------------------------------- decisions
    def _choose_format(self, name: str, net: nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        trained = name in self.trained_networks
        try:
            times = measure_memory_formats(net, args, kwargs, self.device, trained)
        except Exception as error:  # e.g. out of memory: keep the plain layout; the real call reports real errors
            convert_memory_format(net, False)
            self.formats[name] = "contiguous"
            logger.warning("memory format auto: %s -> contiguous (the measurement failed: %s)", name, error)
            return
        channels_last = times["channels_last"] < (1.0 - AUTO_MARGIN) * times["contiguous"]
        convert_memory_format(net, channels_last)
        self.formats[name] = format_name(net, channels_last)
        self.times[name] = times
        call = self._calls[name]
        if call.compiled is None:  # nothing left to do at this network's calls
            net._compiled_call_impl = None
        logger.info(
            "memory format auto: %s -> %s (forward%s on its first inputs: contiguous %.4f s, channels-last %.4f s)",
            name,
            self.formats[name],
            "+backward" if trained else "",
            times["contiguous"],
            times["channels_last"],
        )

    def _compile_failed(self, name: str, error: BaseException) -> None:
        """Run network ``name`` eagerly from now on (the others stay compiled), with one WARNING naming the error."""
        root = error  # the backend's own error: Dynamo wraps it (``inner_exception``, ``__cause__``)
        for _ in range(8):
            inner = getattr(root, "inner_exception", None) or root.__cause__
            if not isinstance(inner, BaseException) or inner is root:
                break
            root = inner
        lines = [line.strip() for line in str(root).splitlines() if line.strip()]
        what = type(error).__name__ + (f" from {type(root).__name__}" if root is not error else "")
        reason = f"{what}: {lines[0] if lines else 'no message'}"
        self.compile_fallbacks[name] = reason
        failed = ", ".join(f"{k} ({v})" for k, v in self.compile_fallbacks.items())
        self.compile_status = f"on, eager fallback for {failed}"
        logger.warning(
            "compile: compiling %s failed at its call (%s); %s runs eagerly (same results).", name, reason, name
        )
        logger.debug("compile: the error of %s", name, exc_info=error)
        self._uncompile(name)

    def _fall_back(self, reason: str) -> None:
        """Run every network eagerly, with one WARNING naming ``reason``."""
        self.compile_status = f"eager fallback: {reason}"
        logger.warning("compile: %s; the networks run eagerly (same results, no compilation).", reason)
        for name in self._calls:
            self._uncompile(name)

    def _uncompile(self, name: str) -> None:
        call = self._calls[name]
        call.compiled = None
        if not call.measure:
            self.networks[name]._compiled_call_impl = None


def accelerate_inference(
    network: nn.Module | None,
    memory_format: str = "contiguous",
    conv_algorithm: str = "direct",
    autocast: bool = False,
    name: str = "network",
) -> nn.Module | None:
    """Give an inference config's network the memory format and convolution algorithms of its training config.

    The same :class:`NetworkAcceleration` as a training step's, without compilation and with every measurement
    forward only: ``memory_format`` converts the network's weights (``"auto"`` measures both layouts at its first
    call, forward only); ``conv_algorithm: auto`` on a CPU in fp32 switches the Winograd- and kn2row-capable
    convolutions (each measured per call signature, without gradients) and the instance norms (the group-norm
    kernel), as in training. The outputs equal those of ``memory_format: contiguous`` and ``conv_algorithm:
    direct`` up to float rounding (about 1e-6 relative); which algorithm a layer uses is measured in each process,
    so two runs on one machine may round differently: ``direct`` and ``contiguous`` give bit-identical reruns.
    ``state_dict`` keys and values are those of the plain network, so weights load before or after this call.

    Args:
        network: the network (on its device), or ``None`` (returned as is: e.g. CDA-GAN's attention networks of
            the ``attention: shared`` variants).
        memory_format: ``"contiguous"``, ``"channels_last"`` or ``"auto"``.
        conv_algorithm: ``"direct"``, ``"winograd"``, ``"kn2row"`` or ``"auto"``.
        autocast: whether the network runs under autocast (the config's precision): ``"auto"`` then keeps torch's
            convolutions and norms, which it would use for low-precision inputs anyway.
        name: the network's name in the log line.

    Returns:
        ``network`` itself, so that a config can write ``$common.engines.accelerate_inference(@net_def.to(@device),
        @memory_format, @conv_algorithm)``.

    Raises:
        AccelerationSettingError: ``memory_format`` or ``conv_algorithm`` is not one of the accepted values.
    """
    if network is None:
        return None
    tensor = next(network.parameters(), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    NetworkAcceleration(
        {name: network},
        device,
        memory_format,
        False,
        compiled_networks=[],
        trained_networks=[],
        conv_algorithm=conv_algorithm,
        autocast=autocast,
    )
    return network
