"""Sample grids: tile generated 2D/3D images into one grey PNG and log them during training."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from common.utils import atomic_path, is_rank0
from monai.utils import IgniteInfo, min_version, optional_import

Image, _ = optional_import("PIL.Image")
Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["make_grid", "save_png", "SampleGridHandler"]

_CHANNEL_LAYOUTS = ("tile", "first")


def _scale_tile(tile: np.ndarray, lower: float = 1.0, upper: float = 99.0) -> np.ndarray:
    """Robust min-max scaling of one 2D tile to uint8.

    Args:
        tile: 2D float array.
        lower: lower percentile mapped to 0.
        upper: upper percentile mapped to 255.

    Returns:
        uint8 array of the same shape; a constant tile gives zeros.
    """
    tile = np.nan_to_num(tile.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(tile, [lower, upper])
    if hi <= lo:  # (nearly) constant apart from outliers: fall back to the full range
        lo, hi = float(tile.min()), float(tile.max())
    if hi <= lo:
        return np.zeros(tile.shape, dtype=np.uint8)
    scaled = (np.clip(tile, lo, hi) - lo) / (hi - lo)
    return np.round(scaled * 255.0).astype(np.uint8)


def _concat(tiles: Sequence[np.ndarray], axis: int, padding: int, pad_value: int) -> np.ndarray:
    """Concatenate uint8 tiles along ``axis`` (1: side by side, 0: top to bottom) with a gap between them.

    Tiles are padded (bottom/right) to a common size across the other axis.
    """
    other = 1 - axis
    size = max(t.shape[other] for t in tiles)
    parts: list[np.ndarray] = []
    for i, t in enumerate(tiles):
        if t.shape[other] < size:
            pad = [(0, 0), (0, 0)]
            pad[other] = (0, size - t.shape[other])
            t = np.pad(t, pad, constant_values=pad_value)
        if i > 0 and padding > 0:
            gap_shape = [size, size]
            gap_shape[axis] = padding
            parts.append(np.full(gap_shape, pad_value, dtype=np.uint8))
        parts.append(t)
    return np.concatenate(parts, axis=axis)


def _sample_panel(sample: np.ndarray, channel_layout: str, padding: int, pad_value: int) -> np.ndarray:
    """Build the uint8 panel of one channel-first sample ``(C, H, W)`` or ``(C, H, W, D)``."""
    channels = sample[:1] if channel_layout == "first" else sample
    if sample.ndim == 3:  # 2D: the channels side by side
        return _concat([_scale_tile(c) for c in channels], 1, padding, pad_value)
    rows = []
    for vol in channels:  # 3D: one row per channel, axial | coronal | sagittal middle slices
        h, w, d = vol.shape
        views = (vol[:, :, d // 2], vol[:, w // 2, :], vol[h // 2, :, :])
        # rot90 shows the second array axis upwards (anterior in axial, superior in coronal/sagittal views)
        rows.append(_concat([_scale_tile(np.rot90(v)) for v in views], 1, padding, pad_value))
    return _concat(rows, 0, padding, pad_value)


def make_grid(
    images: torch.Tensor | np.ndarray,
    nrow: int | None = None,
    channel_layout: str = "tile",
    padding: int = 2,
    pad_value: int = 0,
) -> np.ndarray:
    """Tile a batch of 2D or 3D channel-first images into one grey uint8 image.

    2D samples ``(C, H, W)`` are shown as a strip of their ``C`` channels side by side (a 4-channel
    T1/T1c/T2/FLAIR sample becomes a strip of 4 tiles). 3D samples ``(C, H, W, D)`` are shown, for each
    channel, as a row of the middle axial, coronal and sagittal slices (rotated by 90 degrees so that the
    second, respectively third, array axis points up); channels are stacked vertically. Each tile is
    scaled independently to 0..255 between its 1st and 99th percentiles (min-max when these coincide,
    zeros for a constant tile). The sample panels are laid out in a grid, ``nrow`` per row.

    Args:
        images: batch of shape ``(B, C, H, W)`` or ``(B, C, H, W, D)`` (tensor, possibly on GPU or a
            MetaTensor, or numpy array).
        nrow: number of samples per grid row; default ``ceil(sqrt(B))``.
        channel_layout: ``"tile"`` to show every channel, ``"first"`` to show only the first channel.
        padding: gap in pixels between tiles and between samples.
        pad_value: grey value (0..255) of the gaps.

    Returns:
        2D uint8 array ``(rows, cols)``.

    Raises:
        ValueError: when ``images`` is not 4D/5D, is empty, or ``channel_layout`` is unknown.
    """
    if channel_layout not in _CHANNEL_LAYOUTS:
        raise ValueError(f"channel_layout must be one of {_CHANNEL_LAYOUTS}, got {channel_layout!r}.")
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy()
    arr = np.asarray(images)
    if arr.ndim not in (4, 5):
        raise ValueError(f"images must be (B, C, H, W) or (B, C, H, W, D), got shape {tuple(arr.shape)}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"images must contain at least one sample and one channel, got shape {arr.shape}.")
    panels = [_sample_panel(s, channel_layout, padding, pad_value) for s in arr]
    ncol = max(1, int(nrow) if nrow else math.ceil(math.sqrt(len(panels))))
    rows = [_concat(panels[i : i + ncol], 1, padding, pad_value) for i in range(0, len(panels), ncol)]
    return _concat(rows, 0, padding, pad_value)


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write a uint8 image as PNG atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        array: ``(H, W)`` grey or ``(H, W, 3|4)`` colour array; other dtypes are clipped to 0..255.
        path: destination ``.png`` file; missing folders are created.
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


class SampleGridHandler:
    """Periodically draw samples from a generative model and save them as a PNG grid (and to TensorBoard).

    Samples come either from ``sample_fn()`` or from ``generator`` fed a fixed latent batch of shape
    ``(num_samples, *latent_size)`` drawn once at construction from a seeded ``torch.Generator``, so the
    grids of successive epochs are directly comparable. Sampling runs under ``torch.no_grad()``, with the
    generator in eval mode (its previous mode is restored afterwards) and inside ``torch.random.fork_rng``
    seeded with ``seed``: the global RNG state of the training run is not changed, and a ``sample_fn`` that
    draws its noise from the global RNG also sees the same noise at every call.

    Each call writes ``<output_dir>/<prefix>_epoch{N:04d}.png`` (``<prefix>_iter{N:07d}.png`` when
    ``epoch_level=False``) and optionally ``add_image(tag, grid, step, dataformats="HW")`` on a TensorBoard
    writer. Only rank 0 samples and writes in distributed runs (no collective operation is involved).

    Args:
        output_dir: folder of the PNG files (and of the TensorBoard events when ``summary_writer="auto"``).
        sample_fn: callable returning a batch ``(B, C, H, W[, D])``; exclusive with ``generator``.
        generator: network mapping the latent batch to images ``(B, C, H, W[, D])``; a
            ``DistributedDataParallel``/``DataParallel`` wrapper is unwrapped.
        latent_size: latent shape per sample: an int ``n`` for ``(n,)`` or a sequence such as ``(n, 1, 1)``.
        num_samples: number of samples in the grid (``sample_fn`` outputs are truncated to it).
        interval: run every ``interval`` epochs (iterations when ``epoch_level=False``).
        epoch_level: attach to ``EPOCH_COMPLETED`` (True) or ``ITERATION_COMPLETED`` (False).
        summary_writer: a TensorBoard ``SummaryWriter``, ``"auto"`` to create one in ``output_dir`` (closed
            when the engine completes), or None for PNG files only.
        tag: TensorBoard image tag.
        seed: seed of the fixed latent batch and of the forked RNG used while sampling.
        prefix: file name prefix.
        device: device of the latent batch and whose RNG is forked; default: the generator's device, else CPU.
        nrow: samples per grid row, see :func:`make_grid`.
        channel_layout: see :func:`make_grid`.

    Raises:
        ValueError: when neither or both of ``sample_fn`` and ``generator`` are given, when ``generator`` is
            given without ``latent_size``, or for non-positive ``num_samples``/``interval``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        sample_fn: Callable[[], torch.Tensor] | None = None,
        generator: torch.nn.Module | None = None,
        latent_size: int | Sequence[int] | None = None,
        num_samples: int = 16,
        interval: int = 1,
        epoch_level: bool = True,
        summary_writer: Any = None,
        tag: str = "samples",
        seed: int = 0,
        prefix: str = "samples",
        device: str | torch.device | None = None,
        nrow: int | None = None,
        channel_layout: str = "tile",
    ) -> None:
        if (sample_fn is None) == (generator is None):
            raise ValueError("exactly one of `sample_fn` and `generator` must be given.")
        if generator is not None and latent_size is None:
            raise ValueError("`latent_size` is required with `generator`.")
        if num_samples < 1 or interval < 1:
            raise ValueError(f"num_samples and interval must be positive, got {num_samples} and {interval}.")
        if isinstance(summary_writer, str) and summary_writer != "auto":
            raise ValueError(f"summary_writer must be a SummaryWriter, 'auto' or None, got {summary_writer!r}.")
        if channel_layout not in _CHANNEL_LAYOUTS:
            raise ValueError(f"channel_layout must be one of {_CHANNEL_LAYOUTS}, got {channel_layout!r}.")
        self.output_dir = os.fspath(output_dir)
        self.sample_fn = sample_fn
        self.generator = generator
        self.num_samples = int(num_samples)
        self.interval = int(interval)
        self.epoch_level = epoch_level
        self.tag = tag
        self.seed = int(seed)
        self.prefix = prefix
        self.device = torch.device(device) if device is not None else None
        self.nrow = nrow
        self.channel_layout = channel_layout
        self._auto_writer = summary_writer == "auto"
        self._writer = None if self._auto_writer else summary_writer
        self.latent: torch.Tensor | None = None
        if latent_size is not None:
            shape = (int(latent_size),) if isinstance(latent_size, int) else tuple(int(s) for s in latent_size)
            rng = torch.Generator().manual_seed(self.seed)
            self.latent = torch.randn((self.num_samples, *shape), generator=rng)
        self.last_path: str | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``EPOCH_COMPLETED`` (or ``ITERATION_COMPLETED``) every ``interval`` events, and
        on ``COMPLETED``, so that the end of a run always has its grid whatever the interval.

        Args:
            engine: the ignite engine (typically the trainer).
        """
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self._final)
        if self._auto_writer:
            engine.add_event_handler(Events.COMPLETED, self.close)

    def _network(self) -> torch.nn.Module:
        net = self.generator
        if isinstance(net, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            net = net.module
        return net  # type: ignore[return-value]

    def _sample_device(self) -> torch.device:
        if self.device is not None:
            return self.device
        if self.generator is not None:
            for p in self._network().parameters():
                return p.device
        return torch.device("cpu")

    def sample(self) -> torch.Tensor:
        """Draw the sample batch without touching the global RNG state or the generator's mode.

        Returns:
            tensor ``(B, C, H, W[, D])`` with ``B <= num_samples``.
        """
        device = self._sample_device()
        cuda_devices: list[int] = []
        if device.type == "cuda":
            cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda_devices), torch.no_grad():
            torch.random.default_generator.manual_seed(self.seed)
            for idx in cuda_devices:
                with torch.cuda.device(idx):
                    torch.cuda.manual_seed(self.seed)
            if self.sample_fn is not None:
                out = self.sample_fn()
            else:
                net = self._network()
                was_training = net.training
                net.eval()
                try:
                    out = net(self.latent.to(device))  # type: ignore[union-attr]
                finally:
                    net.train(was_training)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the sampler must return a tensor (B, C, H, W[, D]), got {type(out).__name__}.")
        return out[: self.num_samples]

    @property
    def summary_writer(self) -> Any:
        """The TensorBoard writer in use (created on first use when ``summary_writer="auto"``), or None."""
        if self._writer is None and self._auto_writer:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.output_dir)
        return self._writer

    def __call__(self, engine: Engine) -> None:
        """Sample, tile and write the grid for the current epoch (or iteration).

        Args:
            engine: the ignite engine whose ``state.epoch``/``state.iteration`` numbers the output.
        """
        if not is_rank0():
            return
        step = engine.state.epoch if self.epoch_level else engine.state.iteration
        name = f"{self.prefix}_epoch{step:04d}.png" if self.epoch_level else f"{self.prefix}_iter{step:07d}.png"
        grid = make_grid(self.sample(), nrow=self.nrow, channel_layout=self.channel_layout)
        path = os.path.join(self.output_dir, name)
        save_png(grid, path)
        self.last_path = path
        writer = self.summary_writer
        if writer is not None:
            writer.add_image(self.tag, grid, step, dataformats="HW")
            writer.flush()

    def _final(self, engine: Engine) -> None:
        step = engine.state.epoch if self.epoch_level else engine.state.iteration
        if step % self.interval != 0:  # not already written by the periodic event
            self(engine)

    def close(self, engine: Engine | None = None) -> None:
        """Close the writer created with ``summary_writer="auto"`` (a user-given writer is left open).

        Args:
            engine: unused, allows registering on ignite events.
        """
        if self._auto_writer and self._writer is not None:
            self._writer.close()
            self._writer = None
