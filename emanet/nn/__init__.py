"""Layers: the EM attention unit and the context blocks it is compared with; `packed_conv` and
`winograd_conv` hold the inference-only convolutions of `emanet.optimize_for_inference`."""

from .attention import ASPP, NonLocal2d
from .conv_bn_act import ConvBNReLU
from .ema import EMAU, em_iterations, normalize_bases

__all__ = ["EMAU", "em_iterations", "normalize_bases", "NonLocal2d", "ASPP", "ConvBNReLU"]
