"""Building blocks shared by the networks: channel attention, residual blocks, progressive and StyleGAN2 layers,
other convolution algorithms (Winograd, kn2row) for CPUs."""

from .batch_renorm import BatchRenorm
from .channel_attention import CHANNEL_ATTENTION, AMSEBlock, CBAMBlock, SEBlock, get_channel_attention
from .conv_algorithms import use_conv_algorithm
from .kn2row import kn2row_conv
from .progressive import EqualizedConv, EqualizedLinear, MinibatchStdDev, PixelNorm
from .residual import ResidualAttentionBlock
from .stylegan2 import FIRResample, ModulatedConv, NoiseInjection, ScaledLeakyReLU, ToRGB, upfirdn
from .winograd import winograd_conv

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
    "FIRResample",
    "ModulatedConv",
    "NoiseInjection",
    "ScaledLeakyReLU",
    "ToRGB",
    "upfirdn",
    "kn2row_conv",
    "use_conv_algorithm",
    "winograd_conv",
]
