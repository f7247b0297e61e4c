"""Building blocks shared by the networks: channel attention and residual blocks."""

from .channel_attention import CHANNEL_ATTENTION, AMSEBlock, CBAMBlock, SEBlock, get_channel_attention
from .residual import ResidualAttentionBlock

__all__ = ["AMSEBlock", "CBAMBlock", "CHANNEL_ATTENTION", "ResidualAttentionBlock", "SEBlock", "get_channel_attention"]
