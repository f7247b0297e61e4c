"""Batch-level MixUp, CutMix and CutOut for classifiers, with soft labels (CDA-GAN sec. 4.4 (ii), Table 2).

The image operations are MONAI's :class:`~monai.transforms.MixUp`, :class:`~monai.transforms.CutMix` and
:class:`~monai.transforms.CutOut`. The labels are one-hot class probabilities ``(B, C)`` mixed as follows:

- MixUp: ``lam * y + (1 - lam) * y[perm]`` with the same ``lam`` as the images (MONAI's MixUp does this);
- CutMix: ``keep * y + (1 - keep) * y[perm]`` where ``keep`` is the **actual** fraction of each image's pixels that
  stays its own. MONAI clips the pasted box at the image border, so the pasted area can be smaller than
  ``1 - lam``; the mask is rebuilt with MONAI's own box code (``CutOut.apply`` on the CutMix parameters) and its
  mean is the label weight. (MONAI's ``CutMix.__call__`` with labels mixes labels with a spatial mask, which for
  ``(B, C)`` labels gives the permuted labels; it is therefore not used for labels here.)
- CutOut: labels unchanged (a masked image keeps its class).

:class:`ClassificationPrepareBatch` is a ``prepare_batch`` for MONAI's ``SupervisedTrainer``/``SupervisedEvaluator``:
it returns the image and one-hot float labels, mixed when a mode is set, so that a cross-entropy loss with
probability targets (``torch.nn.CrossEntropyLoss`` accepts them) handles hard and soft labels alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import CutMix, CutOut, MixUp

__all__ = ["MIX_MODES", "BatchMixer", "ClassificationPrepareBatch"]

MIX_MODES: tuple[str, ...] = ("none", "mixup", "cutmix", "cutout")
"""Modes of :class:`BatchMixer`."""


class BatchMixer:
    """Mix a batch of images ``(B, C_in, *spatial)`` and one-hot labels ``(B, C)`` with MONAI's mixers.

    Args:
        mode: one of :data:`MIX_MODES`.
        alpha: ``lam ~ Beta(alpha, alpha)``; for CutMix/CutOut it also sets the box size (``sqrt(1 - lam)`` of
            each side). MixUp's paper default is 0.2-0.4 for ImageNet; 1.0 (uniform) is MONAI's default.
        prob: probability of mixing a given batch (1.0: always).
        seed: seed of the draws.
    """

    def __init__(self, mode: str = "none", alpha: float = 1.0, prob: float = 1.0, seed: int = 0) -> None:
        mode = str(mode).strip().lower()
        if mode not in MIX_MODES:
            raise ValueError(f"Unknown mixing mode {mode!r}; expected one of {list(MIX_MODES)}.")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}.")
        self.mode, self.alpha, self.prob = mode, float(alpha), float(prob)
        self.R = np.random.RandomState(seed)
        self.last_weights: torch.Tensor | None = None  # label weight of each sample's own label in the last call

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the mixed images and labels (unchanged for mode ``"none"`` or when the batch is skipped)."""
        b = images.shape[0]
        self.last_weights = torch.ones(b)
        if self.mode == "none" or b < 1 or self.R.rand() >= self.prob:
            return images, labels
        labels = labels.float()
        with warnings.catch_warnings():  # MONAI's box indexing triggers a torch deprecation warning
            warnings.filterwarnings("ignore", message="Using a non-tuple sequence")
            return self._mix(images, labels)

    def _mix(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = images.shape[0]
        if self.mode == "mixup":
            mixer = MixUp(batch_size=b, alpha=self.alpha).set_random_state(state=self.R)
            mixer.randomize()
            weights, perm, _ = mixer._params
            mixed = mixer.apply(images)
            keep = weights.to(labels)
        elif self.mode == "cutmix":
            mixer = CutMix(batch_size=b, alpha=self.alpha).set_random_state(state=self.R)
            mixer.randomize(images)
            _, perm, _ = mixer._params
            mixed = mixer.apply(images)
            # the mask MONAI applied: CutOut's box code on the same parameters, on a ones image
            mask = CutOut.apply(mixer, torch.ones((b, 1, *images.shape[2:]), dtype=torch.float32))
            keep = mask.reshape(b, -1).mean(dim=1).to(labels)
        else:
            mixer = CutOut(batch_size=b, alpha=self.alpha).set_random_state(state=self.R)
            mixer.randomize(images)
            return mixer.apply(images), labels
        perm_t = torch.as_tensor(np.asarray(perm), dtype=torch.long, device=labels.device)
        w = keep.reshape(b, *([1] * (labels.ndim - 1)))
        self.last_weights = keep.detach().cpu()
        return mixed, w * labels + (1.0 - w) * labels[perm_t]


class ClassificationPrepareBatch:
    """``prepare_batch`` for MONAI's supervised engines: ``(image, one-hot float label)``, optionally mixed.

    Args:
        num_classes: number of classes ``C``.
        label_key: key of the integer class in the batch dictionary.
        mixer: a :class:`BatchMixer` applied in training, ``None`` for none.
        one_hot: return ``(B, C)`` one-hot float labels (default) or the ``(B,)`` class indices.
    """

    def __init__(
        self, num_classes: int = 2, label_key: str = "class", mixer: BatchMixer | None = None, one_hot: bool = True
    ) -> None:
        self.num_classes = int(num_classes)
        self.label_key = label_key
        self.mixer = mixer
        self.one_hot = one_hot

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.as_tensor(batchdata["image"])
        labels = torch.as_tensor(batchdata[self.label_key]).long().reshape(-1)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"class labels must be in [0, {self.num_classes}), got {sorted(set(labels.tolist()))}.")
        target = torch.nn.functional.one_hot(labels, self.num_classes).float() if self.one_hot else labels
        if self.mixer is not None:
            if not self.one_hot:
                raise ValueError("mixing needs one-hot labels (one_hot=True).")
            images, target = self.mixer(images, target)
        return (
            images.to(device=device, non_blocking=non_blocking, **kwargs),
            target.to(device=device, non_blocking=non_blocking, **kwargs),
        )
