"""Inference layers of an exported model. Each holds constants only (packed
integer weights, frozen qparams) and calls torchqat's integer ops; none
observes or learns. They trace and script with TorchScript, so a saved model
runs without Python.

Activations cross layer boundaries as float32, or as uint8 where the export
pass chained two integer layers (``input_quantized`` / ``out`` below). A
signed activation grid ``[qmin, qmax]`` with zero point ``z`` is carried as
``[qmin + 128, qmax + 128]`` with ``z + 128``: the same integers, shifted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.modules import group_rows


@dataclass(frozen=True)
class ActQuant:
    """A per-tensor activation grid in the uint8 domain."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @property
    def is_uint8(self) -> bool:
        """Whether the grid is all of [0, 255], what the GEMM's requantizing
        epilogue clamps to (narrower grids are requantized in float)."""
        return self.qmin == 0 and self.qmax == 255


class _QuantizedInput(nn.Module):
    """The input grid of an integer layer, and whether its input arrives as
    uint8 already (chained) or float (quantized here)."""

    def _set_input(self, act: ActQuant) -> None:
        self.in_act = act
        self.register_buffer("in_scale", torch.tensor([act.scale], dtype=torch.float32))
        self.register_buffer("in_zero_point", torch.tensor([act.zero_point], dtype=torch.int32))
        self.in_zero = act.zero_point
        self.in_qmin, self.in_qmax = act.qmin, act.qmax
        self.input_quantized = False

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantized:
            return x
        return torch.ops.torchqat.quantize_uint8(x, self.in_scale, self.in_zero_point, self.in_qmin, self.in_qmax)


class _IntegerOutput:
    """Float output, or uint8 on the grid of the (only) layer it feeds."""

    def _set_output(self, out: Optional[ActQuant]) -> None:
        self.out_act = out
        self.out_scale: Optional[float] = None if out is None else out.scale
        self.out_zero: Optional[int] = None if out is None else out.zero_point


class _Int8Gemm(_QuantizedInput, _IntegerOutput):
    """What the INT8 GEMM layers hold: packed weights, the per-channel
    multiplier x_scale * w_scale, bias, fused ReLU, input and output grids."""

    def _set_gemm(self, rows: torch.Tensor, weight_scale: torch.Tensor, bias: Optional[torch.Tensor],
                  act: ActQuant, relu: bool, packer=torch.ops.torchqat.pack_linear_int8) -> None:
        packed, col_sums = packer(rows)
        self.register_buffer("packed", packed)
        self.register_buffer("col_sums", col_sums)
        self.register_buffer("multiplier", (weight_scale.float() * act.scale).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self.relu = relu
        self._set_input(act)
        self._set_output(None)


class Int8Linear(_Int8Gemm):
    """Linear on the INT8 GEMM: uint8 input x int8 weights (per channel) ->
    int32, then ``acc * x_scale * w_scale + bias`` (+ ReLU) as float or
    requantized to uint8."""

    def __init__(self, weight_int8: torch.Tensor, weight_scale: torch.Tensor, bias: Optional[torch.Tensor],
                 act: ActQuant, relu: bool, name: str = ""):
        super().__init__()
        self.layer_name = name
        self.in_features, self.out_features = weight_int8.shape[1], weight_int8.shape[0]
        self._set_gemm(weight_int8, weight_scale, bias, act, relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchqat.linear_int8(self._quantize(x), self.in_zero, self.packed, self.col_sums,
                                              self.multiplier, self.bias, self.out_scale, self.out_zero, self.relu)

    def extra_repr(self) -> str:
        out = "float" if self.out_act is None else "uint8"
        return f"{self.in_features} -> {self.out_features}, relu={self.relu}, in=" \
               f"{'uint8' if self.input_quantized else 'float'}, out={out}"


class Int8Conv2d(_Int8Gemm):
    """Conv2d (groups 1) on the INT8 GEMM over channels-last im2col; output
    channels-last, float or uint8."""

    def __init__(self, weight_int8: torch.Tensor, weight_scale: torch.Tensor, bias: Optional[torch.Tensor],
                 act: ActQuant, relu: bool, stride: List[int], padding: List[int], dilation: List[int],
                 name: str = ""):
        super().__init__()
        self.layer_name = name
        self.out_channels, self.in_channels = weight_int8.shape[:2]
        self.kernel_size = list(weight_int8.shape[2:])
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self._set_gemm(weight_int8.permute(0, 2, 3, 1).flatten(1), weight_scale, bias, act, relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchqat.conv2d_int8(self._quantize(x), self.in_zero, self.packed, self.col_sums,
                                              self.multiplier, self.bias, self.kernel_size, self.stride,
                                              self.padding, self.dilation, self.out_scale, self.out_zero, self.relu)

    def extra_repr(self) -> str:
        out = "float" if self.out_act is None else "uint8"
        return f"{self.in_channels} -> {self.out_channels}, kernel={self.kernel_size}, stride={self.stride}, " \
               f"relu={self.relu}, in={'uint8' if self.input_quantized else 'float'}, out={out}"


class Int8DepthwiseConv2d(_Int8Gemm):
    """Depthwise Conv2d (groups == channels, one filter each) on the INT8
    depthwise kernel over the channels-last input, with the GEMM's epilogue
    (``col_sums`` holds each filter's weight sum); output channels-last,
    float or uint8."""

    def __init__(self, weight_int8: torch.Tensor, weight_scale: torch.Tensor, bias: Optional[torch.Tensor],
                 act: ActQuant, relu: bool, stride: List[int], padding: List[int], dilation: List[int],
                 name: str = ""):
        super().__init__()
        self.layer_name = name
        self.channels = weight_int8.shape[0]
        self.kernel_size = list(weight_int8.shape[2:])
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self._set_gemm(weight_int8, weight_scale, bias, act, relu, torch.ops.torchqat.pack_depthwise_int8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchqat.depthwise_conv2d_int8(
            self._quantize(x), self.in_zero, self.packed, self.col_sums, self.multiplier, self.bias,
            self.kernel_size, self.stride, self.padding, self.dilation, self.out_scale, self.out_zero, self.relu)

    def extra_repr(self) -> str:
        out = "float" if self.out_act is None else "uint8"
        return f"{self.channels} channels, kernel={self.kernel_size}, stride={self.stride}, relu={self.relu}, " \
               f"in={'uint8' if self.input_quantized else 'float'}, out={out}"


class Int8GroupedConv2d(_Int8Gemm):
    """Grouped Conv2d (groups > 1, not depthwise: ResNeXt's and RegNet's
    convs, or a depthwise conv with a channel multiplier) on the INT8 GEMM:
    ``grouped_conv2d_int8`` runs one channels-last im2col + GEMM per run of
    groups, groups of fewer outputs than a GEMM panel merged block-diagonally
    (``merged`` at a time); float or uint8."""

    def __init__(self, weight_int8: torch.Tensor, weight_scale: torch.Tensor, bias: Optional[torch.Tensor],
                 act: ActQuant, relu: bool, stride: List[int], padding: List[int], dilation: List[int],
                 groups: int, name: str = ""):
        super().__init__()
        self.layer_name = name
        self.groups = groups
        self.out_channels, self.in_channels = weight_int8.shape[0], weight_int8.shape[1] * groups
        self.kernel_size = list(weight_int8.shape[2:])
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self._set_gemm(weight_int8, weight_scale, bias, act, relu,
                       lambda w: torch.ops.torchqat.pack_grouped_conv2d_int8(w.contiguous(), groups))
        self.merged = groups // self.packed.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchqat.grouped_conv2d_int8(
            self._quantize(x), self.in_zero, self.packed, self.col_sums, self.multiplier, self.bias,
            self.kernel_size, self.stride, self.padding, self.dilation, self.out_scale, self.out_zero, self.relu)

    def extra_repr(self) -> str:
        out = "float" if self.out_act is None else "uint8"
        return f"{self.in_channels} -> {self.out_channels}, groups={self.groups} (runs of {self.merged}), " \
               f"kernel={self.kernel_size}, stride={self.stride}, relu={self.relu}, " \
               f"in={'uint8' if self.input_quantized else 'float'}, out={out}"


class _Int4Weights:
    """What the INT4 layers hold: int4 weights packed two per byte from their
    ``[out, -1]`` rows, a float scale per group, the weights' scaled sums
    (the W4A8 kernels' zero-point term) and the bias."""

    def _set_int4(self, rows: torch.Tensor, group_scales: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
        scales = group_scales.float().reshape(rows.shape[0], -1).contiguous()
        packed, weight_sums = torch.ops.torchqat.pack_linear_w4a8(rows.contiguous(), scales)
        self.register_buffer("packed", packed)
        self.register_buffer("scales", scales)
        self.register_buffer("weight_sums", weight_sums)
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())


class Int4Linear(_QuantizedInput, _Int4Weights, nn.Module):
    """Linear with int4 weights (two per byte, a float scale per group of
    inputs). With an integer input grid (W4A8) the input is quantized to
    uint8 and runs the W4A8 kernel (exact integer sums per group); otherwise
    (float or FP8 input) the weight-only INT4 kernel runs on the input as its
    grid leaves it."""

    def __init__(self, weight_int4: torch.Tensor, group_scales: torch.Tensor, bias: Optional[torch.Tensor],
                 input_grid: nn.Module, relu: bool, name: str = ""):
        super().__init__()
        self.layer_name = name
        self.out_features, self.in_features = weight_int4.shape
        self._set_int4(weight_int4, group_scales, bias)
        self.integer_input = isinstance(input_grid, FakeQuantize)
        if self.integer_input:
            self._set_input(input_grid.act)  # its buffers hold the grid: no input module kept
        self.input = nn.Identity() if self.integer_input else input_grid
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.integer_input:
            y = torch.ops.torchqat.linear_w4a8(self._quantize(x), self.in_zero, self.in_act.scale, self.packed,
                                               self.scales, self.weight_sums, self.bias)
        else:
            y = torch.ops.torchqat.linear_int4(self.input(x).contiguous(), self.packed, self.scales, self.bias)
        return F.relu(y) if self.relu else y

    def extra_repr(self) -> str:
        kernel = "w4a8" if self.integer_input else "int4 weight-only"
        return f"{self.in_features} -> {self.out_features}, relu={self.relu}, kernel={kernel}"


class Int4Conv2d(_QuantizedInput, _IntegerOutput, _Int4Weights, nn.Module):
    """Conv2d (groups 1) with int4 weights (two per byte, a float scale per
    group of input channels within a kernel tap, as ``group_rows`` orders
    them) on a uint8 input: the W4A8 kernel over channels-last im2col, ReLU
    fused; output channels-last, float or uint8."""

    integer_input = True  # what the chaining pass asks of W4A8 layers

    def __init__(self, weight_int4: torch.Tensor, group_scales: torch.Tensor, bias: Optional[torch.Tensor],
                 act: ActQuant, relu: bool, stride: List[int], padding: List[int], dilation: List[int],
                 name: str = ""):
        super().__init__()
        self.layer_name = name
        self.out_channels, self.in_channels = weight_int4.shape[:2]
        self.kernel_size = list(weight_int4.shape[2:])
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self._set_int4(group_rows(weight_int4), group_scales, bias)
        self._set_input(act)
        self._set_output(None)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchqat.conv2d_w4a8(self._quantize(x), self.in_zero, self.in_act.scale, self.packed,
                                              self.scales, self.weight_sums, self.bias, self.kernel_size,
                                              self.stride, self.padding, self.dilation, self.out_scale,
                                              self.out_zero, self.relu)

    def extra_repr(self) -> str:
        out = "float" if self.out_act is None else "uint8"
        return f"{self.in_channels} -> {self.out_channels}, kernel={self.kernel_size}, stride={self.stride}, " \
               f"relu={self.relu}, kernel=w4a8, in={'uint8' if self.input_quantized else 'float'}, out={out}"


class FakeQuantize(nn.Module):
    """An activation snapped to its frozen grid, in float (the exported
    model's fake quantization around float compute)."""

    def __init__(self, act: ActQuant):
        super().__init__()
        self.act = act
        self.register_buffer("scale", torch.tensor([act.scale], dtype=torch.float32))
        self.register_buffer("zero_point", torch.tensor([act.zero_point], dtype=torch.int32))
        self.qmin, self.qmax = act.qmin, act.qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The uint8-domain grid is the signed one shifted: same values.
        return torch.ops.torchqat.fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax, None, None)


class FakeQuantizeFp8(nn.Module):
    """An activation snapped to its frozen FP8 grid (scale and format)."""

    def __init__(self, scale: torch.Tensor, fmt: str):
        super().__init__()
        self.register_buffer("scale", scale.detach().float().reshape(1).clone())
        self.fmt = fmt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchqat.fake_quantize_fp8(x, self.scale, self.fmt, None, None)


def dequantize(q: torch.Tensor, act: ActQuant) -> torch.Tensor:
    """uint8 -> float32: ``(q - zero_point) * scale``, the values
    fake_quantize gives for the same integers."""
    return (q.to(torch.float32) - act.zero_point) * act.scale


class FloatWeightLayer(nn.Module):
    """A layer whose weight spec has no integer kernel here (FP8, per-group
    weights on grouped convs or float inputs, grouped conv, Conv1d): the frozen fake-quantized weight and
    input grid in float, the QAT model's numbers exactly."""

    def __init__(self, op: str, weight: torch.Tensor, bias: Optional[torch.Tensor], input_grid: nn.Module,
                 relu: bool, conv_args: Optional[dict] = None, name: str = "", why: str = ""):
        super().__init__()
        self.layer_name, self.why = name, why
        self.op = op
        self.register_buffer("weight", weight.detach().float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self.input = input_grid
        self.relu = relu
        conv_args = conv_args or {}
        self.stride = conv_args.get("stride", [1])
        self.padding = conv_args.get("padding", [0])
        self.dilation = conv_args.get("dilation", [1])
        self.groups = conv_args.get("groups", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        if self.op == "linear":
            y = F.linear(x, self.weight, self.bias)
        elif self.op == "conv1d":
            y = F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return F.relu(y) if self.relu else y

    def extra_repr(self) -> str:
        return f"{self.op}, float compute on the quantized grid ({self.why})"


class Int8Embedding(nn.Module):
    """An embedding table stored as integers with a scale (and zero point)
    per row or per table; looked-up rows are dequantized."""

    def __init__(self, table: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, name: str = ""):
        super().__init__()
        self.layer_name = name
        signed = bool(table.min() >= -128 and table.max() <= 127)
        self.register_buffer("table", table.to(torch.int8 if signed else torch.uint8).contiguous())
        rows = table.shape[0]
        self.register_buffer("row_scale", scale.float().reshape(-1).expand(rows).contiguous())
        self.register_buffer("row_zero", zero_point.float().reshape(-1).expand(rows).contiguous())

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        q = F.embedding(indices, self.table).to(torch.float32)
        return (q - self.row_zero[indices].unsqueeze(-1)) * self.row_scale[indices].unsqueeze(-1)


class Int4Embedding(nn.Module):
    """An embedding table of 4-bit integers, two per byte (even column in the
    low nibble), with a scale and zero point per group of ``group_size``
    columns of each row; looked-up rows are unpacked and dequantized with the
    float operations of the fake quantizer, so they equal the QAT table's
    values bit for bit."""

    def __init__(self, table: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int,
                 name: str = ""):
        super().__init__()
        self.layer_name = name
        rows, dim = table.shape
        self.signed = bool(table.min() < 0)
        nibbles = (table.to(torch.int16) & 0x0F).to(torch.uint8).reshape(rows, dim // 2, 2)
        self.register_buffer("packed", (nibbles[..., 0] | (nibbles[..., 1] << 4)).contiguous())
        self.register_buffer("scale", scale.float().reshape(rows, dim // group_size).contiguous())
        zero = zero_point.float().reshape(rows, dim // group_size)
        self.register_buffer("zero", None if bool((zero == 0).all()) else zero.contiguous())
        self.dim, self.group_size = dim, group_size

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        packed = F.embedding(indices, self.packed)
        q = torch.stack([packed & 0x0F, packed >> 4], dim=-1).to(torch.float32)
        if self.signed:  # two's complement nibbles
            q = torch.where(q >= 8, q - 16, q)
        q = q.reshape(indices.shape + (self.dim // self.group_size, self.group_size))
        if self.zero is not None:
            q = q - F.embedding(indices, self.zero).unsqueeze(-1)
        return (q * F.embedding(indices, self.scale).unsqueeze(-1)).reshape(indices.shape + (self.dim,))


class ClampUint8(nn.Module):
    """ReLU6 on uint8 activations: a clamp to [q(0), q(6)] of their grid
    (quantization is monotone, so this equals quantizing ReLU6's output)."""

    def __init__(self, lo: int, hi: int):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q.clamp_(self.lo, self.hi)

    def extra_repr(self) -> str:
        return f"[{self.lo}, {self.hi}]"


class MaxPoolUint8(nn.Module):
    """Max pooling of uint8 activations (the max of the integers is the
    integer of the max); output channels-last."""

    def __init__(self, kernel_size: List[int], stride: List[int], padding: List[int], dilation: List[int],
                 ceil_mode: bool):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.ceil_mode = ceil_mode

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchqat.max_pool2d_uint8(q, self.kernel_size, self.stride, self.padding, self.dilation,
                                                   self.ceil_mode)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class QuantizedAdd(_IntegerOutput, nn.Module):
    """A residual add of two quantized activations, with the ReLU that
    follows it fused in by the export pass. With integer grids on both
    operands it runs ``add_uint8``: each operand arrives as uint8 from the
    integer layer that produced it (or is quantized here), the sum is taken in
    float as fake quantization would, and leaves as float or requantized to
    uint8 for the layers it feeds. Otherwise (FP8 or unquantized operands) each
    operand is snapped to its grid in float and added."""

    def __init__(self, a: nn.Module, b: nn.Module, name: str = ""):
        super().__init__()
        self.layer_name = name
        self.a, self.b = a, b
        self.integer = isinstance(a, FakeQuantize) and isinstance(b, FakeQuantize)
        self.a_quantized = self.b_quantized = False
        self.relu = False
        self._set_output(None)

    def operand_grid(self, slot: int) -> Optional[ActQuant]:
        """The uint8-domain grid of operand ``slot`` when it can arrive as uint8."""
        return (self.a if slot == 0 else self.b).act if self.integer else None

    def set_quantized_input(self, slot: int) -> None:
        if slot == 0:
            self.a_quantized = True
        else:
            self.b_quantized = True

    def _operand(self, x: torch.Tensor, grid: FakeQuantize, arrives_quantized: bool) -> torch.Tensor:
        if arrives_quantized:
            return x
        return torch.ops.torchqat.quantize_uint8(x, grid.scale, grid.zero_point, grid.qmin, grid.qmax)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.integer:
            y = self.a(a) + self.b(b)
            return F.relu(y) if self.relu else y
        qa, qb = self._operand(a, self.a, self.a_quantized), self._operand(b, self.b, self.b_quantized)
        ga, gb, out = self.a.act, self.b.act, self.out_act
        if qa.shape != qb.shape:  # broadcasting: the same arithmetic in ATen
            y = dequantize(qa, ga) + dequantize(qb, gb)
            y = F.relu(y) if self.relu else y
            if out is None:
                return y
            return torch.ops.torchqat.quantize_uint8(y, torch.tensor([out.scale]), torch.tensor([out.zero_point]),
                                                     out.qmin, out.qmax)
        if out is None:
            return torch.ops.torchqat.add_uint8(qa, ga.scale, ga.zero_point, qb, gb.scale, gb.zero_point, self.relu)
        return torch.ops.torchqat.add_uint8(qa, ga.scale, ga.zero_point, qb, gb.scale, gb.zero_point, self.relu,
                                            out.scale, out.zero_point, out.qmin, out.qmax)

    def extra_repr(self) -> str:
        if not self.integer:
            return f"float operands, relu={self.relu}"
        arrives = ["uint8" if q else "float" for q in (self.a_quantized, self.b_quantized)]
        return f"add_uint8, in=({arrives[0]}, {arrives[1]}), relu={self.relu}, " \
               f"out={'float' if self.out_act is None else 'uint8'}"


class QuantizedMatMul(nn.Module):
    """An activation x activation matmul (attention): both operands snapped
    to their frozen grids, the product in float."""

    def __init__(self, a: nn.Module, b: nn.Module, name: str = ""):
        super().__init__()
        self.layer_name = name
        self.a, self.b = a, b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.a(a), self.b(b))
