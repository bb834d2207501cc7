"""``export_onnx``: a QAT model as a standard QDQ ONNX model.

Every quantized tensor appears as QuantizeLinear -> DequantizeLinear with the
trained scale and zero point: activations per tensor (uint8), weights as 8-bit
integer initializers (per output channel) feeding DequantizeLinear, BatchNorm
folded into the conv. ONNX Runtime fuses these patterns into its integer kernels
(QLinearConv, QLinearMatMul, ...). The graph comes from torch's TorchScript
ONNX exporter, which turns ``torch.fake_quantize_per_*_affine`` into Q/DQ
pairs; a pass then stores each weight's integers instead of its float values.

Weights are written as uint8 with zero point 128 by default (the same
integers, shifted): ONNX Runtime then runs its u8u8 kernels, which are exact.
Its u8s8 kernels (int8 weights) on CPUs without VNNI form pairs of u8 x s8
products in saturating int16 (vpmaddubsw), so their results drift from the
exact ones (top-1 agreement with torchqat's model on a random ResNet-18: 0.91
with int8 weights, 1.0 with uint8, on the AVX2 development machine);
``weight_dtype="int8"`` writes int8 weights for VNNI targets, where u8s8 is
exact and faster.

Per-group int4 weights (W4A8) are written as INT4 initializers read by a
blocked DequantizeLinear (opset 21: ``axis`` 1, ``block_size`` the group
size; a conv weight's groups run along input channels within a tap, which is
exactly such a block), and the model's opset becomes 21. ONNX Runtime runs
them through float convolutions and matmuls (it has no int4 x uint8 conv).

Limits: 8-bit activation grids (ONNX's QuantizeLinear types before opset 21);
weights without an 8-bit or blocked int4 form (FP8, per-group groups wider
than a conv's input channels) are written as float constants on their trained
grid, with a warning naming them.
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import List, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.modules import QuantAdd, QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear, QuantMatMul
from ..nn.quantizer import Quantizer
from ..prepare import require_prepared
from .artifact import _as_args
from .convert import replace_submodules
from .lower import _integer_spec, activation_grid, check_ready, effective_weight_and_bias, fake_quantized_weight, \
    quantize_weight


class _QdqActivation(nn.Module):
    def __init__(self, q: Optional[Quantizer], layer: str):
        super().__init__()
        self.enabled = q is not None and q.fake_quant_enabled
        if not self.enabled:
            return
        check_ready(q, layer)
        if not _integer_spec(q) or q.spec.bits != 8:
            raise NotImplementedError(
                f"torchqat.export_onnx: layer '{layer}': activation quantizer '{q.name}' is "
                f"{q.spec.describe()}; ONNX QDQ export takes 8-bit integer activations")
        act = activation_grid(q)  # uint8 domain: (0, 255), what ONNX's uint8 QuantizeLinear clamps to
        self.scale, self.zero_point = act.scale, act.zero_point

    def forward(self, x):
        if not self.enabled:
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)


# weight_dtype -> (zero point of the symmetric weights' integers, range).
_WEIGHT_GRIDS = {"uint8": (128, 0, 255), "int8": (0, -128, 127)}


class Int4Blocks(NamedTuple):
    """A weight written as INT4 blocks: its float values on the grid (how the
    traced graph holds it), integers, and scales shaped for a blocked
    DequantizeLinear along axis 1."""

    values: np.ndarray
    ints: np.ndarray
    scales: np.ndarray
    block_size: int


def _int4_blocks(layer: nn.Module, weight: torch.Tensor, name: str) -> Optional[Int4Blocks]:
    """The blocked int4 form of a per-group 4-bit weight, or None when its
    groups are not blocks along input channels."""
    wq = layer.weight_quantizer
    if wq is None or not wq.fake_quant_enabled or not _integer_spec(wq) or wq.group_size is None:
        return None
    if not (wq.spec.symmetric and wq.quant_min >= -8 and wq.quant_max <= 7):
        return None
    in_channels, gs = weight.shape[1], wq.group_size
    if in_channels % gs:  # a group spans kernel taps: no block along one axis
        return None
    ints, scale, _, fq = quantize_weight(wq, weight, name)
    # Scales come in group_rows order (taps, then channel blocks): to [out, in / gs, *kernel].
    kernel = tuple(weight.shape[2:])
    scales = scale.float().reshape((weight.shape[0],) + kernel + (in_channels // gs,))
    scales = scales.movedim(-1, 1).contiguous()
    return Int4Blocks(fq.numpy(), ints.numpy(), scales.numpy(), gs)


class _QdqWeighted(nn.Module):
    """Linear / Conv with a QDQ input and an 8-bit per-channel QDQ weight (or
    a float weight on its grid when no 8-bit spec applies, which the ONNX pass
    may turn into INT4 blocks)."""

    def __init__(self, layer: nn.Module, name: str, float_weights: List[str], weight_dtype: str,
                 int4_weights: List[Int4Blocks]):
        super().__init__()
        weight, bias = effective_weight_and_bias(layer)
        weight, bias = weight.detach(), None if bias is None else bias.detach()
        wq = layer.weight_quantizer
        self.input = _QdqActivation(layer.input_quantizer, name)
        self.per_channel = wq is not None and wq.fake_quant_enabled and _integer_spec(wq) and wq.spec.symmetric \
            and wq.spec.granularity in ("per_channel", "per_tensor")
        if self.per_channel:
            ints, scale, _, fq = quantize_weight(wq, weight, name)
            self.register_buffer("weight", fq)
            self.register_buffer("w_scale", scale.float().reshape(-1).expand(weight.shape[0]).contiguous())
            zero, self.w_min, self.w_max = _WEIGHT_GRIDS[weight_dtype]
            self.register_buffer("w_zero", torch.full((weight.shape[0],), zero, dtype=torch.int32))
        elif (blocks := _int4_blocks(layer, weight, name)) is not None:
            self.register_buffer("weight", torch.from_numpy(blocks.values))
            int4_weights.append(blocks)
        else:
            self.register_buffer("weight", weight if wq is None else fake_quantized_weight(wq, weight, name))
            if wq is not None and wq.fake_quant_enabled:
                float_weights.append(name)
        self.register_buffer("bias", bias)
        self.relu = bool(layer.relu)
        self.kind = "linear" if isinstance(layer, QuantLinear) else ("conv2d" if isinstance(layer, QuantConv2d)
                                                                      else "conv1d")
        if self.kind != "linear":
            self.conv = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                             groups=layer.groups)

    def forward(self, x):
        x = self.input(x)
        w = self.weight
        if self.per_channel:
            # The weights' integers (symmetric, in [-128, 127]) shifted by the zero point lie in the range.
            w = torch.fake_quantize_per_channel_affine(w, self.w_scale, self.w_zero, 0, self.w_min, self.w_max)
        if self.kind == "linear":
            y = F.linear(x, w, self.bias)
        elif self.kind == "conv2d":
            y = F.conv2d(x, w, self.bias, **self.conv)
        else:
            y = F.conv1d(x, w, self.bias, **self.conv)
        return F.relu(y) if self.relu else y


class _QdqBinary(nn.Module):
    def __init__(self, layer: nn.Module, name: str):
        super().__init__()
        self.a = _QdqActivation(layer.a_quantizer, name)
        self.b = _QdqActivation(layer.b_quantizer, name)
        self.add = isinstance(layer, QuantAdd)

    def forward(self, a, b):
        return self.a(a) + self.b(b) if self.add else torch.matmul(self.a(a), self.b(b))


class _QdqEmbedding(nn.Module):
    def __init__(self, layer: QuantEmbedding, name: str):
        super().__init__()
        q = layer.weight_quantizer
        self.per_row = q.fake_quant_enabled and _integer_spec(q) and q.spec.symmetric and q.group_size is None
        if self.per_row:
            _, scale, _, fq = quantize_weight(q, layer.weight.detach(), name)
            rows = fq.shape[0]
            self.register_buffer("table", fq)
            self.register_buffer("scale", scale.float().reshape(-1).expand(rows).contiguous())
            self.register_buffer("zero", torch.zeros(rows, dtype=torch.int32))
        else:
            self.register_buffer("table", fake_quantized_weight(q, layer.weight.detach(), name))

    def forward(self, indices):
        table = self.table
        if self.per_row:
            table = torch.fake_quantize_per_channel_affine(table, self.scale, self.zero, 0, -128, 127)
        return F.embedding(indices, table)


def _qdq_model(model: nn.Module, float_weights: List[str], weight_dtype: str,
               int4_weights: List[Int4Blocks]) -> nn.Module:
    replacements = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (QuantLinear, QuantConv1d, QuantConv2d)):
            replacements[name] = _QdqWeighted(mod, name, float_weights, weight_dtype, int4_weights)
        elif isinstance(mod, (QuantAdd, QuantMatMul)):
            replacements[name] = _QdqBinary(mod, name)
        elif isinstance(mod, QuantEmbedding):
            replacements[name] = _QdqEmbedding(mod, name)
    return replace_submodules(model, replacements)


def _fold_weight_quantization(graph) -> int:
    """QuantizeLinear of a constant -> its integers as an initializer (what
    the DequantizeLinear after it reads). Returns how many were folded."""
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    identities = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def value(name):
        while name in identities:  # the exporter shares equal constants through Identity
            name = identities[name]
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in constants:
            return numpy_helper.to_array(constants[name].attribute[0].t)
        return None

    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        x, scale, zero = (value(n) for n in node.input[:3])
        if x is None or scale is None or zero is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * x.ndim
        if scale.ndim == 1 and scale.size > 1:
            shape[axis] = -1
        info = np.iinfo(zero.dtype)
        ints = np.clip(np.rint(x / scale.reshape(shape)) + zero.reshape(shape), info.min, info.max)
        graph.initializer.append(numpy_helper.from_array(ints.astype(zero.dtype), node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    # The float weights the folded nodes read are now unused.
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    for node in [n for n in graph.node if n.op_type in ("Constant", "Identity") and n.output[0] not in used]:
        graph.node.remove(node)
    return len(folded)


def _pack_int4(ints: np.ndarray) -> bytes:
    """ONNX INT4 raw data: two per byte, the first element in the low nibble."""
    flat = ints.astype(np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, np.int8(0))
    nibbles = (flat & 0x0F).astype(np.uint8)
    return (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()


def _write_int4_weights(proto, int4_weights: List[Int4Blocks]) -> int:
    """Float weight initializers that are INT4 blocks on their grid -> INT4
    initializers + blocked DequantizeLinear (a Linear weight the exporter
    transposed for MatMul: blocks along axis 0). Returns how many."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    # (shape, bytes) of each weight and of its transpose -> (blocks, transposed)
    wanted = {}
    for blocks in int4_weights:
        wanted[(blocks.values.shape, blocks.values.tobytes())] = (blocks, False)
        if blocks.values.ndim == 2:
            t = np.ascontiguousarray(blocks.values.T)
            wanted[(t.shape, t.tobytes())] = (blocks, True)
    written, new_nodes = 0, []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        found = wanted.get((array.shape, np.ascontiguousarray(array).tobytes()))
        if found is None:
            continue
        blocks, transposed = found
        ints, scales = (blocks.ints.T, blocks.scales.T) if transposed else (blocks.ints, blocks.scales)
        name = init.name
        graph.initializer.remove(init)
        graph.initializer.append(helper.make_tensor(f"{name}_int4", TensorProto.INT4, list(ints.shape),
                                                    _pack_int4(np.ascontiguousarray(ints)), raw=True))
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(scales), f"{name}_scale"))
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int4", f"{name}_scale"], [name],
                                          name=f"{name}_dequantize", axis=0 if transposed else 1,
                                          block_size=blocks.block_size))
        written += 1
    for i, node in enumerate(new_nodes):
        graph.node.insert(i, node)
    if written:
        for opset in proto.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, 21)  # INT4 and blocked DequantizeLinear
    return written


def export_onnx(qat_model: nn.Module, example_inputs, path: str, opset: int = 17,
                input_names: Optional[List[str]] = None, output_names: Optional[List[str]] = None,
                dynamic_batch: bool = True, weight_dtype: str = "uint8") -> str:
    """Write ``qat_model`` (prepared, trained or calibrated) to ``path`` as a
    QDQ ONNX model. ``example_inputs``: a tensor, tuple or dict of keyword
    inputs; with ``dynamic_batch`` their first dimension may vary.
    ``weight_dtype``: "uint8" (zero point 128; exact in ONNX Runtime on every
    CPU) or "int8" (exact there only with VNNI; see the module docstring).
    Returns ``path``."""
    import onnx

    if weight_dtype not in _WEIGHT_GRIDS:
        raise ValueError(f"torchqat.export_onnx: weight_dtype must be one of {sorted(_WEIGHT_GRIDS)}, "
                         f"got {weight_dtype!r}")
    require_prepared(qat_model, "export_onnx")
    model = copy.deepcopy(qat_model).eval()
    float_weights: List[str] = []
    int4_weights: List[Int4Blocks] = []
    with torch.no_grad():
        model = _qdq_model(model, float_weights, weight_dtype, int4_weights)
    if float_weights:
        warnings.warn("torchqat.export_onnx: these weights have no 8-bit QDQ form and are written as float on their "
                      f"trained grid: {', '.join(float_weights)}", stacklevel=2)
    args, kwargs = _as_args(example_inputs)
    names = input_names or (list(kwargs) if kwargs else [f"input{i}" for i in range(len(args))])
    outputs = output_names or ["output"]
    dynamic = {n: {0: "batch"} for n in names + outputs} if dynamic_batch else None
    inputs = tuple(kwargs.values()) if kwargs else args
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(model, inputs, os.fspath(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=outputs, dynamic_axes=dynamic, kwargs=None)
    proto = onnx.load(os.fspath(path))
    _fold_weight_quantization(proto.graph)
    written = _write_int4_weights(proto, int4_weights)
    if written != len(int4_weights):
        warnings.warn(f"torchqat.export_onnx: {len(int4_weights) - written} int4 weights were not found as "
                      "initializers in the exported graph and stay float on their grid", stacklevel=2)
    onnx.checker.check_model(proto)
    onnx.save(proto, os.fspath(path))
    return path
