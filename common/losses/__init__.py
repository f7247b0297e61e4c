"""Losses shared by the bundles: adversarial criteria, regularisers, detection and soft Dice (Vu et al. eq. 5)."""

from .adversarial import ADVERSARIAL_CRITERIA, AdversarialLoss, relativistic_average_hinge
from .gradient_penalty import gradient_penalty, interpolate_samples

__all__ = [
    "ADVERSARIAL_CRITERIA",
    "AdversarialLoss",
    "gradient_penalty",
    "interpolate_samples",
    "relativistic_average_hinge",
]

from .detection import box_head_loss, rpn_loss  # noqa: E402

__all__ += ["box_head_loss", "rpn_loss"]

from .soft_dice import SoftDiceLoss, soft_dice_score  # noqa: E402

__all__ += ["SoftDiceLoss", "soft_dice_score"]

from .stylegan2 import PathLengthPenalty, path_length_penalty, r1_penalty  # noqa: E402

__all__ += ["PathLengthPenalty", "path_length_penalty", "r1_penalty"]

from .attention import attention_tv_loss, pixel_loss  # noqa: E402

__all__ += ["attention_tv_loss", "pixel_loss"]

from .yolo import YOLOv3Loss, anchor_shape_iou, assign_yolo_targets, decode_yolo_boxes, yolov3_loss  # noqa: E402

__all__ += ["YOLOv3Loss", "anchor_shape_iou", "assign_yolo_targets", "decode_yolo_boxes", "yolov3_loss"]
