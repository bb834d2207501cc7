"""Channels-last tensors through the fake-quant ops, which walk memory in
order and return contiguous tensors: the ops get the NHWC view (contiguous,
no copy) and the result is viewed back, so a channels-last activation or
conv weight stays channels-last (as torch's own fake quantization keeps it)
and the convolutions after it keep oneDNN's channels-last kernels."""

from __future__ import annotations

from typing import Callable, Optional

import torch

_NHWC_AXIS = (0, 3, 1, 2)  # where each NCHW dimension sits in the NHWC view


def is_channels_last(x: torch.Tensor) -> bool:
    """A 4-D tensor laid out NHWC (and not also NCHW, as size-1 dims allow)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def in_memory_order(x: torch.Tensor) -> torch.Tensor:
    """The NHWC view of a channels-last tensor, else x."""
    return x.permute(0, 2, 3, 1) if is_channels_last(x) else x


def keeping_layout(fn: Callable[[torch.Tensor, Optional[int]], torch.Tensor], x: torch.Tensor,
                   axis: Optional[int] = None, group_size: Optional[int] = None) -> torch.Tensor:
    """``fn(x, axis)``; for a channels-last x, ``fn(in_memory_order(x), the
    axis as the view numbers it)`` viewed back to x's dimension order. Groups
    run along the last NCHW dimension, which the view moves: a grouped call
    gets x as it is."""
    if group_size is None and is_channels_last(x):
        return fn(in_memory_order(x), None if axis is None else _NHWC_AXIS[axis % 4]).permute(0, 3, 1, 2)
    return fn(x, axis)
