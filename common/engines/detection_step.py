"""Training step and batch collation of the Faster R-CNN detector (Han's thesis sec. 6.2.2: SGD, learning rate
1e-3 then 1e-4 after 20,000 steps, batch size 2, multi-task loss)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .step import TrainingStep

__all__ = ["DetectionStep", "detection_collate"]


def _flatten(items: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def detection_collate(batch: Sequence[Any], image_key: str = "image") -> dict[str, Any]:
    """Collate detection samples: images stacked, every other key kept as a list (boxes differ in number).

    Nested lists (several crops per volume from ``RandCropBoxByPosNegLabeld(num_samples=n)``) are flattened.

    Args:
        batch: samples ``{"image": (C, *S), "box": (G, 2 * spatial_dims), "box_label": (G,), ...}``.
        image_key: key of the images.

    Returns:
        ``{"image": (B, C, *S), "box": [B tensors], "box_label": [B tensors], ...}``.
    """
    samples = _flatten(batch)
    images = [torch.as_tensor(s[image_key]) for s in samples]
    shapes = {tuple(i.shape) for i in images}
    if len(shapes) != 1:
        raise ValueError(f"detection batches need same-size images, got shapes {sorted(shapes)}.")
    out: dict[str, Any] = {image_key: torch.stack([i.as_tensor() if hasattr(i, "as_tensor") else i for i in images])}
    for key in samples[0]:
        if key != image_key:
            out[key] = [s.get(key) for s in samples]
    return out


def _targets(
    batch: Mapping[str, Any], box_key: str, label_key: str, device: torch.device, spatial_dims: int
) -> list[dict[str, Tensor]]:
    targets = []
    for boxes, labels in zip(batch[box_key], batch[label_key]):
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
        labels = torch.as_tensor(labels, dtype=torch.int64, device=device).reshape(-1)
        targets.append({"boxes": boxes.reshape(-1, 2 * spatial_dims), "labels": labels})
    return targets


class DetectionStep(TrainingStep):
    """One SGD step of a detector returning a dict of losses (their sum is optimised).

    The learning-rate scheduler is stepped once per iteration (the thesis gives its schedule in steps), not per
    epoch, by the trainer (:meth:`~common.engines.TrainingStep.lr_schedule_handlers`); its state is checkpointed
    with the network and the optimiser, so a resumed run continues the schedule. The reported ``lr`` is the
    learning rate of this iteration's update.

    Args:
        network: the detector (``forward(images, targets) -> dict of losses`` in training mode).
        optimizer: its optimiser.
        device: training device.
        lr_scheduler: optional scheduler stepped every iteration.
        amp: mixed precision (autocast by device type).
        amp_dtype: ``"bfloat16"`` or ``"float16"``.
        memory_format, compile, conv_algorithm: memory layout, ``torch.compile`` and convolution algorithm of the
            networks, see :class:`~common.engines.TrainingStep`.
        image_key / box_key / label_key: batch keys.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: str | torch.device = "cpu",
        lr_scheduler: Any = None,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
        memory_format: str = "contiguous",
        compile: bool | dict[str, Any] = False,
        conv_algorithm: str = "direct",
        image_key: str = "image",
        box_key: str = "box",
        label_key: str = "box_label",
    ) -> None:
        super().__init__(
            {"network": network},
            {"network": optimizer},
            device=device,
            schedulers={"network": lr_scheduler} if lr_scheduler is not None else None,
            amp=amp,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            compile=compile,
            conv_algorithm=conv_algorithm,
            image_key=image_key,
            scheduler_interval="iteration",
        )
        self.box_key = box_key
        self.label_key = label_key

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, float]:
        network = self.networks["network"]
        network.train()
        images = self.images(batchdata)
        targets = _targets(batchdata, self.box_key, self.label_key, self.device, images.ndim - 2)
        with self.autocast():
            losses = network(images, targets)
        loss = sum(losses.values())
        self.optimise(engine, "network", loss, terms=losses)
        lr = float(self.optimizers["network"].param_groups[0]["lr"])
        return self.report({**losses, "loss": loss, "lr": lr})
