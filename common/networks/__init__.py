"""Networks shared by the bundles: building blocks and each method's generators and discriminators."""

from .dcgan import DCGANDiscriminator, DCGANGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]
