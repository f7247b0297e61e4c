"""Losses shared by the bundles: adversarial criteria and regularisers."""

from .adversarial import ADVERSARIAL_CRITERIA, AdversarialLoss
from .gradient_penalty import gradient_penalty, interpolate_samples

__all__ = ["ADVERSARIAL_CRITERIA", "AdversarialLoss", "gradient_penalty", "interpolate_samples"]

from .detection import box_head_loss, rpn_loss  # noqa: E402

__all__ += ["box_head_loss", "rpn_loss"]
