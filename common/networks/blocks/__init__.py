"""Building blocks shared by the networks: channel attention and residual blocks."""

from .batch_renorm import BatchRenorm
from .channel_attention import CHANNEL_ATTENTION, AMSEBlock, CBAMBlock, SEBlock, get_channel_attention
from .progressive import EqualizedConv, EqualizedLinear, MinibatchStdDev, PixelNorm
from .residual import ResidualAttentionBlock

__all__ = [
    "BatchRenorm",
    "EqualizedConv",
    "EqualizedLinear",
    "MinibatchStdDev",
    "PixelNorm",
    "AMSEBlock",
    "CBAMBlock",
    "CHANNEL_ATTENTION",
    "ResidualAttentionBlock",
    "SEBlock",
    "get_channel_attention",
]
