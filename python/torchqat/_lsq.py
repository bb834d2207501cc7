"""Learned step-size fake quantization (LSQ, Esser et al. 2019; LSQ+, Bhalgat
et al. 2020) and the initial scales it starts from."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ._layout import keeping_layout


def lsq_fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    quant_min: int,
    quant_max: int,
    grad_factor: Optional[float] = None,
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
) -> torch.Tensor:
    """Fake quantization whose ``scale`` (LSQ) and ``zero_point`` (LSQ+) are learned.

    The forward is :func:`torchqat.fake_quantize` with ``zero_point`` rounded half
    to even and clamped to ``[quant_min, quant_max]`` (as
    ``torch._fake_quantize_learnable_*``). The backward is one fused pass over
    ``x`` and the incoming gradient that reduces the per-scale gradients inside
    the kernel:

    * ``d_x``: the gradient inside the range, zero outside (straight through);
    * ``d_scale``: ``round(x/s) - x/s`` inside, ``quant_min - zp`` / ``quant_max - zp``
      below / above, times the gradient, summed per scale, times ``grad_factor``;
    * ``d_zero_point``: ``-scale`` outside the range, zero inside, likewise.

    ``grad_factor=None`` is the LSQ paper's ``1 / sqrt(n * quant_max)``, ``n`` the
    elements per scale. Granularity (``axis``, ``group_size``) is as in
    :func:`torchqat.fake_quantize`. ``x`` may be float32, float16 or bfloat16
    (autocast outputs included); ``scale`` and ``zero_point`` are float tensors
    (an integer ``zero_point`` is accepted and gets no gradient).

    The sums are deterministic: bitwise the same whatever the thread count.
    A ``scale`` that is not finite and positive raises an error naming the
    smallest offending value and its index (on CUDA: a device-side assertion).
    """
    return keeping_layout(lambda t, ax: torch.ops.torchqat.lsq_fake_quantize(  # channels-last stays so
        t, scale, zero_point, quant_min, quant_max, grad_factor, ax, group_size), x, axis, group_size)


def _mean_abs(x: torch.Tensor, axis: Optional[int], group_size: Optional[int]) -> torch.Tensor:
    a = x.detach().abs().float()
    if axis is not None:
        return a.movedim(axis, 0).reshape(x.shape[axis], -1).mean(dim=1)
    if group_size is not None:
        return a.reshape(*x.shape[:-1], x.shape[-1] // group_size, group_size).mean(dim=-1)
    return a.mean().reshape(1)


def lsq_init_scale(
    x: torch.Tensor, quant_max: int, axis: Optional[int] = None, group_size: Optional[int] = None
) -> torch.Tensor:
    """LSQ's initial step size ``2 * mean(|x|) / sqrt(quant_max)``, per tensor,
    per channel (``axis``) or per group (``group_size``), shaped for
    :func:`lsq_fake_quantize`. Returns a fresh float32 tensor (wrap it in an
    ``nn.Parameter`` to learn it); a zero tensor gets float32's eps."""
    scale = 2.0 * _mean_abs(x, axis, group_size) / math.sqrt(quant_max)
    return scale.clamp_min(torch.finfo(torch.float32).eps)


def qparams_from_range(
    min_val: torch.Tensor, max_val: torch.Tensor, quant_min: int, quant_max: int, symmetric: bool = False
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero_point)`` from observed ranges (e.g. an observer's running
    min/max), elementwise: per tensor with one-element ranges, per channel with
    1-D ones. torch.ao's formulas (the range is widened to hold zero; scale is
    at least float32's eps); computed on the ranges' device without host
    synchronisation. Use ``scale`` to initialise :func:`lsq_fake_quantize`."""
    return torch.ops.torchqat.choose_qparams(min_val, max_val, quant_min, quant_max, symmetric)
