"""The classification head of Han's thesis (sec. 4.2.4, "ResNet-50 Implementation Details"): "before the final
sigmoid layer, we introduce a 0.5 dropout, linear dense, and batch normalization layers", trained with the binary
cross-entropy loss.

- :class:`ClassifierHead`: ``dropout(p) -> linear -> batch norm`` on pooled features. For two classes it has **one**
  output unit ``z`` (the thesis' sigmoid unit) and returns the two logits ``[0, z]``: ``softmax([0, z])`` is
  ``[1 - sigmoid(z), sigmoid(z)]``, so the cross-entropy of these logits equals the binary cross-entropy of
  ``sigmoid(z)`` exactly, and the bundles' two-class softmax pipeline (metrics, predictions, ROC) is unchanged.
  With more classes it is the same head with ``num_classes`` units (softmax / cross-entropy).
- :class:`HeadedClassifier`: a feature backbone (e.g. MONAI's ResNet with ``feed_forward=False``, whose output is
  the globally pooled ``(B, F)`` features) followed by the head.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ClassifierHead", "HeadedClassifier"]


class ClassifierHead(nn.Module):
    """``Dropout(p) -> Linear(in_features, units) -> BatchNorm1d(units)`` (thesis sec. 4.2.4).

    Args:
        in_features: number of input features ``F``.
        num_classes: number of classes; 2 gives a single sigmoid unit returned as the logits ``[0, z]``.
        dropout: dropout probability (thesis: 0.5).

    Shapes:
        input ``(B, F)``; output ``(B, num_classes)`` logits.
    """

    def __init__(self, in_features: int, num_classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}.")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.num_classes = int(num_classes)
        units = 1 if num_classes == 2 else int(num_classes)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(in_features, units)
        self.norm = nn.BatchNorm1d(units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the classes.

        Args:
            x: features ``(B, F)``.

        Returns:
            ``(B, num_classes)``; for two classes ``[0, z]`` with ``z`` the single unit (``sigmoid(z)`` is the
            probability of class 1).
        """
        z = self.norm(self.dense(self.dropout(x.flatten(1))))
        if self.num_classes == 2:
            return torch.cat([torch.zeros_like(z), z], dim=1)
        return z


class HeadedClassifier(nn.Module):
    """A feature backbone followed by a :class:`ClassifierHead`.

    Args:
        backbone: a module mapping images ``(B, C, *spatial)`` to features ``(B, F)`` (e.g.
            ``monai.networks.nets.resnet50(..., feed_forward=False)``).
        num_classes: number of classes.
        dropout: dropout probability of the head.
        in_features: ``F``; by default read from a MONAI ResNet backbone (its ``in_planes`` after construction is
            the number of pooled features).

    Shapes:
        input ``(B, C, *spatial)``; output ``(B, num_classes)`` logits.
    """

    def __init__(
        self, backbone: nn.Module, num_classes: int = 2, dropout: float = 0.5, in_features: int | None = None
    ) -> None:
        super().__init__()
        if in_features is None:
            if getattr(backbone, "fc", None) is not None or not isinstance(getattr(backbone, "in_planes", None), int):
                raise ValueError(
                    "in_features is required unless the backbone is a MONAI ResNet built with feed_forward=False."
                )
            in_features = int(backbone.in_planes)
        self.backbone = backbone
        self.head = ClassifierHead(in_features, num_classes=num_classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, C, *spatial)``."""
        return self.head(self.backbone(x))
