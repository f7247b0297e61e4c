"""Networks shared by the bundles: building blocks and each method's generators and discriminators."""

from .blocks import AMSEBlock, CBAMBlock, ResidualAttentionBlock, SEBlock, get_channel_attention
from .cyclegan import (
    CrossDomainTranslator,
    ResNetGenerator,
    SpatialAttentionNetwork,
    attention_composite,
    attention_translate,
)
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .ga_unet import GAUNetBlock, GAUNetCritic, GAUNetGenerator
from .image_mask_sampler import ImageMaskSampler
from .mcgan import (
    MCGAN_NUM_CONDITIONS,
    MCGANContextDiscriminator,
    MCGANGenerator,
    MCGANNoduleDiscriminator,
    tile_conditions,
)
from .munit import (
    MUNIT,
    AdaptiveInstanceNorm,
    MultiScaleDiscriminator,
    MUNITContentEncoder,
    MUNITDecoder,
    MUNITGenerator,
    MUNITStyleEncoder,
)
from .patchgan import PatchGANDiscriminator, patchgan_receptive_field
from .pix2pix import Pix2PixGenerator, TestTimeDropout, set_test_time_dropout
from .progressive import (
    ConditionalSynthesisNetwork,
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    progressive_channels,
    progressive_resolutions,
)
from .simgan import SimGANDiscriminator, SimGANRefiner
from .stylegan2 import MappingNetwork, StyleGAN2Discriminator, StyleGAN2Generator

__all__ = [
    "ConditionalSynthesisNetwork",
    "ProgressiveDiscriminator",
    "ProgressiveGenerator",
    "progressive_channels",
    "progressive_resolutions",
    "MCGAN_NUM_CONDITIONS",
    "MCGANContextDiscriminator",
    "MCGANGenerator",
    "MCGANNoduleDiscriminator",
    "tile_conditions",
    "AMSEBlock",
    "CBAMBlock",
    "CrossDomainTranslator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GAUNetBlock",
    "GAUNetCritic",
    "GAUNetGenerator",
    "PatchGANDiscriminator",
    "ResNetGenerator",
    "ResidualAttentionBlock",
    "SEBlock",
    "SpatialAttentionNetwork",
    "attention_composite",
    "attention_translate",
    "get_channel_attention",
    "patchgan_receptive_field",
]

from . import detection  # noqa: E402
from .detection import FasterRCNN  # noqa: E402

__all__ += ["FasterRCNN", "detection"]
__all__ += [
    "AdaptiveInstanceNorm",
    "MUNIT",
    "MUNITContentEncoder",
    "MUNITDecoder",
    "MUNITGenerator",
    "MUNITStyleEncoder",
    "MultiScaleDiscriminator",
    "SimGANDiscriminator",
    "SimGANRefiner",
]
__all__ += ["ImageMaskSampler", "MappingNetwork", "StyleGAN2Discriminator", "StyleGAN2Generator"]

from .inception import FIDInceptionV3  # noqa: E402

__all__ += ["FIDInceptionV3"]

from .msg_gan import MSGGANDiscriminator, MSGGANGenerator  # noqa: E402

__all__ += ["MSGGANDiscriminator", "MSGGANGenerator"]
__all__ += ["Pix2PixGenerator", "TestTimeDropout", "set_test_time_dropout"]

from .classifier_head import ClassifierHead, HeadedClassifier  # noqa: E402
from .pretrained import PretrainedWeightsError, adapt_input_channels, load_imagenet_resnet  # noqa: E402

__all__ += ["ClassifierHead", "HeadedClassifier", "PretrainedWeightsError", "adapt_input_channels"]
__all__ += ["load_imagenet_resnet"]

from .detection import YOLOv3  # noqa: E402

__all__ += ["YOLOv3"]
