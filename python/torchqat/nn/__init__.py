"""QAT modules: quantizers and the layers that use them."""

from .conv_bn import QuantConvBn1d, QuantConvBn2d
from .conv_grad import fast_small_map_convs
from .modules import (QuantAdd, QuantAttention, QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear,
                      QuantMatMul)
from .quantizer import Quantizer

__all__ = [
    "Quantizer",
    "QuantLinear",
    "QuantConv1d",
    "QuantConv2d",
    "QuantConvBn1d",
    "QuantConvBn2d",
    "QuantEmbedding",
    "QuantMatMul",
    "QuantAdd",
    "QuantAttention",
    "fast_small_map_convs",
]
