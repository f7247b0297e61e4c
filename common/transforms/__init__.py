"""MONAI-style transforms shared by the bundles."""

from .channels import SelectChannels, SelectChannelsd

__all__ = ["SelectChannels", "SelectChannelsd"]
