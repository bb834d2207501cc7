"""Fake-quantization ops: quantize and dequantize in one step, with a
straight-through-estimator gradient, for quantization-aware training."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from . import _C
from ._layout import keeping_layout

_ScaleLike = Union[torch.Tensor, float]


def quant_range(bits: int, signed: bool = True, narrow_range: bool = False) -> Tuple[int, int]:
    """Return ``(quant_min, quant_max)`` for ``bits``-bit integers.

    ``narrow_range`` drops the most negative code for signed integers
    (``[-127, 127]`` at 8 bits) and zero for unsigned ones (``[1, 255]``).
    """
    return _C.quant_range(bits, signed, narrow_range)


def _as_tensor(value: _ScaleLike, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.tensor(value, dtype=dtype, device=like.device)


def fake_quantize(
    x: torch.Tensor,
    scale: _ScaleLike,
    zero_point: Union[torch.Tensor, int],
    quant_min: int,
    quant_max: int,
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
) -> torch.Tensor:
    """Affine fake quantization with a straight-through-estimator gradient.

    ``y = (clamp(round(x / scale) + zero_point, quant_min, quant_max) - zero_point) * scale``,
    rounding half to even and multiplying by ``1 / scale`` as ATen does, so the
    result is bit-for-bit that of ``torch.fake_quantize_per_tensor_affine`` /
    ``torch.fake_quantize_per_channel_affine`` on float32 (for ranges within
    +-2^24, i.e. every 2- to 24-bit range).

    Granularity follows the arguments:

    * per-tensor: ``scale`` and ``zero_point`` have one element;
    * per-channel: ``axis`` given, both 1-D of length ``x.size(axis)``;
    * per-group: ``group_size`` given, groups of that many consecutive
      elements along the last dimension, both shaped
      ``x.shape[:-1] + (x.shape[-1] // group_size,)``.

    Args:
        x: float32, float16 or bfloat16 tensor (computed in float32, returned
            in ``x``'s dtype).
        scale: positive, finite step sizes (float tensor; a Python float is
            accepted for per-tensor).
        zero_point: integer tensor (or a float tensor holding integers) within
            ``[quant_min, quant_max]``.
        quant_min, quant_max: the integer range, inside int32.

    The gradient with respect to ``x`` passes where ``round(x / scale) +
    zero_point`` lies within ``[quant_min, quant_max]`` and is zero elsewhere
    (as torch.ao); ``scale`` and ``zero_point`` get none (see the LSQ op for
    learnable scales). Only one bit per element is kept for the backward pass.

    NaN in ``x`` gives NaN (ATen returns a clamped number) with zero gradient;
    +-Inf saturate to the range ends. Values of ``scale`` and ``zero_point``
    are checked: on the CPU with an error naming the bad value, on CUDA with an
    asynchronous device-side assertion (no host synchronisation).
    """
    scale = _as_tensor(scale, x, torch.float32)
    zero_point = _as_tensor(zero_point, x, torch.int32)
    return keeping_layout(lambda t, ax: torch.ops.torchqat.fake_quantize(  # channels-last stays so, as torch's
        t, scale, zero_point, quant_min, quant_max, ax, group_size), x, axis, group_size)


def fake_quantize_fp8(
    x: torch.Tensor,
    scale: _ScaleLike,
    fmt: str = "e4m3",
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
) -> torch.Tensor:
    """FP8 fake quantization with a straight-through-estimator gradient.

    ``x / scale`` is rounded to the nearest value of the FP8 format ``fmt``
    (``"e4m3"``: e4m3fn, max 448; ``"e5m2"``: max 57344), ties to even,
    subnormals included, saturating to the largest finite value (+-Inf too),
    then multiplied back by ``scale``. The gradient passes where
    ``|x / scale|`` is within the format's finite range, zero elsewhere.
    ``scale`` granularity (``axis``, ``group_size``) is as in
    :func:`fake_quantize`.
    """
    scale = _as_tensor(scale, x, torch.float32)
    return keeping_layout(lambda t, ax: torch.ops.torchqat.fake_quantize_fp8(t, scale, fmt, ax, group_size),
                          x, axis, group_size)
