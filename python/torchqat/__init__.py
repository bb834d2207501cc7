"""torchqat: quantization-aware training for PyTorch, with its numerics in C++.

Importing the package registers the ``torch.ops.torchqat`` operators.
"""

import torch  # noqa: F401  (loads LibTorch before torchqat's native libraries)

from . import _C, observers
from ._fake_quant import fake_quantize, fake_quantize_fp8, quant_range
from ._lsq import lsq_fake_quantize, lsq_init_scale, qparams_from_range
from .observers import observe_fake_quantize

__version__ = _C.__version__

__all__ = [
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
