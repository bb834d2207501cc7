"""torchqat: quantization-aware training for PyTorch, with its numerics in C++.

Importing the package registers the ``torch.ops.torchqat`` operators.
"""

import torch  # noqa: F401  (loads LibTorch before torchqat's native libraries)

from . import _C, nn, observers
from ._fake_quant import fake_quantize, fake_quantize_fp8, quant_range
from ._lsq import lsq_fake_quantize, lsq_init_scale, qparams_from_range
from .deploy import export, export_onnx, load, save
from .control import calibrate, enable_fake_quant, enable_observer, freeze, freeze_bn_stats, summary
from .observers import observe_fake_quantize
from .prepare import prepare_qat
from .qconfig import QConfig, QuantSpec

__version__ = _C.__version__

__all__ = [
    "QConfig",
    "QuantSpec",
    "calibrate",
    "enable_fake_quant",
    "enable_observer",
    "export",
    "export_onnx",
    "load",
    "save",
    "freeze",
    "freeze_bn_stats",
    "nn",
    "prepare_qat",
    "summary",
    "fake_quantize",
    "fake_quantize_fp8",
    "lsq_fake_quantize",
    "lsq_init_scale",
    "observe_fake_quantize",
    "observers",
    "qparams_from_range",
    "quant_range",
    "__version__",
]
