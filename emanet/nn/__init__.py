"""Layers: the EM attention unit, its EM maths, and the context blocks it is compared with."""

from .attention import ASPP, NonLocal2d
from .conv_bn_act import ConvBNReLU
from .em import em_iterations, normalize_bases
from .ema import EMAU

__all__ = ["EMAU", "em_iterations", "normalize_bases", "NonLocal2d", "ASPP", "ConvBNReLU"]
