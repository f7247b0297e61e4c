"""Batch-level MixUp, CutMix and CutOut with soft targets, for classifiers and segmenters (CDA-GAN sec. 4.4 (ii),
Table 2 for classification and Table 3 for segmentation).

The image operations are MONAI's :class:`~monai.transforms.MixUp`, :class:`~monai.transforms.CutMix` and
:class:`~monai.transforms.CutOut`. The targets are one-hot class probabilities, either per image ``(B, C)``
(classification) or per voxel ``(B, C, *spatial)`` (segmentation masks on the image grid), mixed as follows:

- MixUp: ``lam * y + (1 - lam) * y[perm]`` with the same ``lam`` as the images (MONAI's MixUp does this), per image
  or per voxel alike: a mixed mask is a soft one-hot mask whose channels still sum to 1;
- CutMix, class targets: ``keep * y + (1 - keep) * y[perm]`` where ``keep`` is the **actual** fraction of each image's
  pixels that stays its own. MONAI clips the pasted box at the image border, so the pasted area can be smaller than
  ``1 - lam``; the mask is rebuilt with MONAI's own box code (``CutOut.apply`` on the CutMix parameters) and its
  mean is the label weight. (MONAI's ``CutMix.__call__`` with labels mixes labels with a spatial mask, which for
  ``(B, C)`` labels gives the permuted labels; it is therefore not used for labels here.)
- CutMix, mask targets: the partner's mask is pasted into exactly the box where its image is pasted, by MONAI's
  ``CutMix.apply`` with the same parameters on the mask (so every voxel's target is the label of the voxel it shows);
- CutOut: targets unchanged. A masked image keeps its class; for segmentation the mask is kept too, the CutOut
  paper's rule (DeVries & Taylor 2017: the erased region is an occlusion, the object is still there), so the
  network is asked to label occluded tissue from its context.

:class:`ClassificationPrepareBatch` and :class:`SegmentationPrepareBatch` are ``prepare_batch`` callables for MONAI's
``SupervisedTrainer``/``SupervisedEvaluator``: they return the image and one-hot float targets, mixed when a mode is
set, so that a loss with probability targets (``torch.nn.CrossEntropyLoss``; MONAI's ``DiceLoss`` with
``to_onehot_y=False``; :class:`common.losses.SoftDiceLoss`) handles hard and soft targets alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.networks.utils import one_hot as to_one_hot
from monai.transforms import CutMix, CutOut, MixUp

__all__ = ["MIX_MODES", "BatchMixer", "ClassificationPrepareBatch", "SegmentationPrepareBatch"]

MIX_MODES: tuple[str, ...] = ("none", "mixup", "cutmix", "cutout")
"""Modes of :class:`BatchMixer`."""


class BatchMixer:
    """Mix a batch of images ``(B, C_in, *spatial)`` and one-hot targets with MONAI's mixers.

    The targets are class labels ``(B, C)`` or masks ``(B, C, *spatial)`` on the image grid (see the module
    docstring for how each mode mixes them). ``last_weights`` ``(B,)`` holds, after each call, the weight of each
    sample's own target: ``lam`` for MixUp, the fraction of its own pixels for CutMix, 1 for CutOut.

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
        """Return the mixed images and targets (unchanged for mode ``"none"`` or when the batch is skipped).

        Args:
            images: ``(B, C_in, *spatial)``, 2D or 3D.
            labels: one-hot targets ``(B, C)`` or ``(B, C, *spatial)`` (float; integer targets are cast).

        Returns:
            the images and the float targets, in their input shapes.
        """
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
            if labels.ndim == images.ndim:  # masks: the partner's mask pasted in the same box as its image
                if labels.shape[2:] != images.shape[2:]:
                    raise ValueError(
                        f"mask targets {tuple(labels.shape)} must be on the image grid {tuple(images.shape)}."
                    )
                self.last_weights = keep.detach().cpu()
                return mixed, mixer.apply(labels)
        else:
            mixer = CutOut(batch_size=b, alpha=self.alpha).set_random_state(state=self.R)
            mixer.randomize(images)
            return mixer.apply(images), labels
        perm_t = torch.as_tensor(np.asarray(perm), dtype=torch.long, device=labels.device)
        w = keep.reshape(b, *([1] * (labels.ndim - 1)))
        self.last_weights = keep.detach().cpu()
        return mixed, w * labels + (1.0 - w) * labels[perm_t]


class _MixingPrepareBatch:
    """The shared ``prepare_batch`` of the supervised engines: ``(image, targets)``, targets optionally mixed.

    Subclasses define :meth:`targets` (the float targets of a batch) and their default ``label_key``; mixing and the
    move to the device are here.

    Args:
        num_classes: number of classes.
        label_key: key of the integer labels in the batch dictionary.
        mixer: a :class:`BatchMixer` applied in training, ``None`` for none.
        one_hot: return one-hot float targets (needed by every mixing mode).
    """

    def __init__(
        self, num_classes: int = 2, label_key: str = "label", mixer: BatchMixer | None = None, one_hot: bool = True
    ) -> None:
        self.num_classes = int(num_classes)
        self.label_key = label_key
        self.mixer = mixer
        self.one_hot = one_hot

    def targets(self, batchdata: Mapping[str, Any]) -> torch.Tensor:
        """The targets of ``batchdata`` (one-hot float when ``one_hot``)."""
        raise NotImplementedError

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.as_tensor(batchdata["image"])
        target = self.targets(batchdata)
        if self.mixer is not None and self.mixer.mode != "none":
            if not self.one_hot:
                raise ValueError(f"mixing ({self.mixer.mode}) needs one-hot targets (one_hot=True).")
            images, target = self.mixer(images, target)
        return (
            images.to(device=device, non_blocking=non_blocking, **kwargs),
            target.to(device=device, non_blocking=non_blocking, **kwargs),
        )


def _check_range(labels: torch.Tensor, num_classes: int, what: str) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} must be in [0, {num_classes}), got {sorted(set(labels.unique().tolist()))}.")


class ClassificationPrepareBatch(_MixingPrepareBatch):
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
        super().__init__(num_classes, label_key, mixer, one_hot)

    def targets(self, batchdata: Mapping[str, Any]) -> torch.Tensor:
        """``(B, C)`` one-hot float labels, or ``(B,)`` class indices without ``one_hot``."""
        labels = torch.as_tensor(batchdata[self.label_key]).long().reshape(-1)
        _check_range(labels, self.num_classes, "class labels")
        return torch.nn.functional.one_hot(labels, self.num_classes).float() if self.one_hot else labels


class SegmentationPrepareBatch(_MixingPrepareBatch):
    """``prepare_batch`` for segmentation: ``(image, mask)`` with the mask one-hot ``(B, K, *spatial)``, optionally
    mixed (CDA-GAN Table 3's Mixup, CutMix and CutOut baselines).

    With ``one_hot`` the loss must take one-hot targets (MONAI ``DiceLoss(to_onehot_y=False)``,
    :class:`common.losses.SoftDiceLoss`); without it the label map ``(B, 1, *spatial)`` is returned as it is (MONAI's
    default ``prepare_batch``) and no mixing is allowed.

    Args:
        num_classes: number of classes ``K``, background included.
        label_key: key of the integer label map ``(B, 1, *spatial)`` in the batch dictionary.
        mixer: a :class:`BatchMixer` applied in training, ``None`` for none.
        one_hot: return one-hot float masks (needed by every mixing mode).
    """

    def targets(self, batchdata: Mapping[str, Any]) -> torch.Tensor:
        """The one-hot float mask ``(B, K, *spatial)``, or the label map unchanged without ``one_hot``."""
        labels = torch.as_tensor(batchdata[self.label_key])
        if not self.one_hot:
            return labels
        if labels.ndim < 3 or labels.shape[1] != 1:
            raise ValueError(f"the label map must be (B, 1, *spatial); got {tuple(labels.shape)}.")
        indices = labels.round().long()
        _check_range(indices, self.num_classes, "mask labels")
        return to_one_hot(indices, self.num_classes, dim=1)
