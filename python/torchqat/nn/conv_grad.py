"""Conv2d that trains faster over small feature maps on the CPU.

oneDNN's weight-gradient kernel for a 3x3 convolution over a 1x1 or 2x2 map
(ResNet's last stages on small images) runs at a few percent of the
machine's float throughput: on a 2-core AVX2 machine the weight gradient of
ResNet-18's layer4 convs on 28x28 images takes 72 ms a batch of 128, and
the convs' backward was three quarters of a training step. Where the output
has at most ``TAP_GEMM_MAX_POSITIONS`` positions, the weight gradient here is
one GEMM per kernel tap over the input positions that tap reads (a tap
that reads only padding gets zeros, with no GEMM): the same sums, 1 ms for
that layer. Up to ``TAP_GEMM_MAX_POSITIONS_DATA`` positions the forward and
the input gradient are per-tap GEMMs too: a 3x3 conv over a 1x1 map with
padding 1 reads its centre tap only, and oneDNN multiplies all nine.
Larger maps, groups, CUDA, inference and torch.compile use ``F.conv2d``
unchanged (``benchmarks/conv_weight_grad.py`` measures both).

The QAT convs use it; ``fast_small_map_convs(model)`` lends it to a float
model's ``nn.Conv2d`` layers while training (the examples' float baselines).
"""

from __future__ import annotations

import contextlib
import math
from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .._layout import is_channels_last

# Measured on a 2-core AVX2 machine at batch 128-256: per-tap GEMMs win the
# weight gradient up to 4x4 outputs (16 positions, 3x faster at stride 2) and
# lose from 7x7 on; the forward and input gradient up to 2x2 outputs (1x1:
# 5x faster), at parity at 4x4.
TAP_GEMM_MAX_POSITIONS = 16
TAP_GEMM_MAX_POSITIONS_DATA = 4

_Pair = Union[int, Tuple[int, int]]


def _pair(v: _Pair) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias=None, stride: _Pair = 1, padding=0,
           dilation: _Pair = 1, groups: int = 1) -> torch.Tensor:
    """``F.conv2d``, same arguments and result (to float rounding); small
    output maps train through per-tap GEMMs (see the module doc)."""
    if not _uses_tap_gemm(input, weight, stride, padding, dilation, groups):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return _TapGemmConv2d.apply(input, weight, bias, _pair(stride), _pair(padding), _pair(dilation))


def _uses_tap_gemm(input, weight, stride, padding, dilation, groups) -> bool:
    if (groups != 1 or isinstance(padding, str) or input.device.type != "cpu" or input.dim() != 4
            or not torch.is_grad_enabled() or not weight.requires_grad or torch.compiler.is_compiling()):
        return False
    return 0 < _output_positions(input, weight, _pair(stride), _pair(padding), _pair(dilation)) \
        <= TAP_GEMM_MAX_POSITIONS


def _tap_range(out_size: int, in_size: int, stride: int, offset: int) -> Tuple[int, int]:
    """First and one-past-last output position o whose input o*stride+offset
    lies inside the input (not in the padding)."""
    first = max(0, math.ceil(-offset / stride))
    last = min(out_size - 1, (in_size - 1 - offset) // stride)
    return first, max(first, last + 1)


def _taps(out_hw, in_hw, kernel_size, stride, padding, dilation):
    """(i, j, output rows, output cols, input rows, input cols) of every
    kernel tap that reads any input: the output positions whose tap (i, j)
    lands inside the input, and the input positions it reads there, as
    slices of the NHWC views. Taps that read only padding are left out."""
    for i in range(kernel_size[0]):
        r0, r1 = _tap_range(out_hw[0], in_hw[0], stride[0], i * dilation[0] - padding[0])
        for j in range(kernel_size[1]):
            c0, c1 = _tap_range(out_hw[1], in_hw[1], stride[1], j * dilation[1] - padding[1])
            if r0 == r1 or c0 == c1:
                continue
            top, left = r0 * stride[0] + i * dilation[0] - padding[0], c0 * stride[1] + j * dilation[1] - padding[1]
            yield (i, j, slice(r0, r1), slice(c0, c1),
                   slice(top, top + (r1 - r0 - 1) * stride[0] + 1, stride[0]),
                   slice(left, left + (c1 - c0 - 1) * stride[1] + 1, stride[1]))


def weight_grad_by_taps(grad_output: torch.Tensor, input: torch.Tensor, kernel_size: Tuple[int, int],
                        stride: Tuple[int, int], padding: Tuple[int, int],
                        dilation: Tuple[int, int]) -> torch.Tensor:
    """d(loss)/d(weight) of a groups=1 conv2d: for tap (i, j), the sum over
    batch and output positions of grad_output[k] * input[c] at the position
    the tap reads, as a (positions x out)^T (positions x in) GEMM."""
    c, k = input.shape[1], grad_output.shape[1]
    x, g = input.permute(0, 2, 3, 1), grad_output.permute(0, 2, 3, 1)  # (position, channel) rows
    taps = input.new_zeros(kernel_size[0], kernel_size[1], k, c)
    for i, j, out_r, out_c, in_r, in_c in _taps(g.shape[1:3], x.shape[1:3], kernel_size, stride, padding, dilation):
        torch.mm(g[:, out_r, out_c].reshape(-1, k).t(), x[:, in_r, in_c].reshape(-1, c), out=taps[i, j])
    return taps.permute(2, 3, 0, 1)


def conv2d_by_taps(input: torch.Tensor, weight: torch.Tensor, stride: Tuple[int, int], padding: Tuple[int, int],
                   dilation: Tuple[int, int]) -> torch.Tensor:
    """A groups=1 conv2d without bias, one GEMM per tap that reads input:
    on a 1x1 output map with padding 1 only the centre tap of a 3x3 kernel
    does, where oneDNN multiplies all nine. Channels-last result."""
    n, c, in_h, in_w = input.shape
    k = weight.shape[0]
    out_hw = _output_size(input, weight, stride, padding, dilation)
    x = input.permute(0, 2, 3, 1)
    out = input.new_zeros(n, *out_hw, k)
    for i, j, out_r, out_c, in_r, in_c in _taps(out_hw, (in_h, in_w), weight.shape[2:], stride, padding, dilation):
        rows = x[:, in_r, in_c]
        out[:, out_r, out_c] += (rows.reshape(-1, c) @ weight[:, :, i, j].t()).view(*rows.shape[:3], k)
    return out.permute(0, 3, 1, 2)


def input_grad_by_taps(grad_output: torch.Tensor, weight: torch.Tensor, input_shape, stride: Tuple[int, int],
                       padding: Tuple[int, int], dilation: Tuple[int, int]) -> torch.Tensor:
    """d(loss)/d(input) of conv2d_by_taps: each tap's GEMM transposed, added
    where the tap read. Channels-last result."""
    n, c, in_h, in_w = input_shape
    k = weight.shape[0]
    g = grad_output.permute(0, 2, 3, 1)
    grad = grad_output.new_zeros(n, in_h, in_w, c)
    for i, j, out_r, out_c, in_r, in_c in _taps(g.shape[1:3], (in_h, in_w), weight.shape[2:], stride, padding,
                                                 dilation):
        rows = g[:, out_r, out_c]
        grad[:, in_r, in_c] += (rows.reshape(-1, k) @ weight[:, :, i, j]).view(*rows.shape[:3], c)
    return grad.permute(0, 3, 1, 2)


def _output_size(input, weight, stride, padding, dilation) -> Tuple[int, int]:
    kh, kw = weight.shape[-2:]
    return ((input.shape[-2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
            (input.shape[-1] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


def _output_positions(input, weight, stride, padding, dilation) -> int:
    out_h, out_w = _output_size(input, weight, stride, padding, dilation)
    return out_h * out_w


class _TapGemmConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(input, weight)
        ctx.conv = (stride, padding, dilation, bias is not None)
        ctx.data_by_taps = _output_positions(input, weight, stride, padding, dilation) <= TAP_GEMM_MAX_POSITIONS_DATA
        if not ctx.data_by_taps:
            return F.conv2d(input, weight, bias, stride, padding, dilation)
        out = conv2d_by_taps(input, weight, stride, padding, dilation)
        return out if bias is None else out + bias.reshape(1, -1, 1, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, has_bias = ctx.conv
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            if ctx.data_by_taps:
                grad_input = input_grad_by_taps(grad_output, weight, input.shape, stride, padding, dilation)
            else:
                grad_input = torch.ops.aten.convolution_backward(
                    grad_output, input, weight, None, list(stride), list(padding), list(dilation), False, [0, 0],
                    1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_weight = weight_grad_by_taps(grad_output, input, tuple(weight.shape[-2:]), stride, padding,
                                              dilation).contiguous(
                memory_format=torch.channels_last if is_channels_last(weight) else torch.contiguous_format)
        if has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None, None


def conv2d_module_forward(conv: nn.Conv2d, input: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """``nn.Conv2d._conv_forward`` (padding modes included) through ``conv2d``."""
    padding = conv.padding
    if conv.padding_mode != "zeros":
        input, padding = F.pad(input, conv._reversed_padding_repeated_twice, mode=conv.padding_mode), 0
    return conv2d(input, weight, bias, conv.stride, padding, conv.dilation, conv.groups)


class _SmallMapConv2d(nn.Conv2d):
    _conv_forward = conv2d_module_forward


@contextlib.contextmanager
def fast_small_map_convs(model: nn.Module):
    """While inside, the model's plain ``nn.Conv2d`` layers train as
    ``conv2d`` does; parameters and ``state_dict`` are unchanged, results the
    same to float rounding, and the layers are plain ``nn.Conv2d`` on exit."""
    convs = [m for m in model.modules() if type(m) is nn.Conv2d]
    for m in convs:
        m.__class__ = _SmallMapConv2d
    try:
        yield model
    finally:
        for m in convs:
            m.__class__ = nn.Conv2d
