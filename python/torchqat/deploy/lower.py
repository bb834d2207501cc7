"""From one QAT layer to its inference layer: the frozen qparams of its
quantizers, BatchNorm folded into the weight, weights quantized to integers,
and the kernel chosen by what the specs allow."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .._fake_quant import fake_quantize, fake_quantize_fp8
from ..nn.conv_bn import _ConvBnMixin
from ..nn.modules import QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear, group_rows, ungroup_rows
from ..nn.quantizer import Quantizer
from .layers import (ActQuant, FakeQuantize, FakeQuantizeFp8, FloatWeightLayer, Int4Conv2d, Int4Embedding,
                     Int4Linear, Int8Conv2d, Int8DepthwiseConv2d, Int8Embedding, Int8GroupedConv2d, Int8Linear)

INT4_BLOCK = 32  # the INT4 kernel's packing block (kernels/gemv_int4.h)


def check_ready(q: Quantizer, layer: str) -> None:
    """Raises naming the layer when ``q`` has neither an observed range nor a
    learned scale."""
    if not q.observed and not (q.learned and q.initialised):
        raise RuntimeError(f"torchqat.export: layer '{layer}': quantizer '{q.name}' never saw data (no "
                           "calibration, no training step) and has no learned scale; run torchqat.calibrate or "
                           "train the model first")


def _integer_spec(q: Quantizer) -> bool:
    return q.spec.fp8 is None and q.spec.bits <= 8


def activation_grid(q: Quantizer) -> ActQuant:
    """The frozen per-tensor grid of an integer activation quantizer, shifted
    into the uint8 domain when signed."""
    scale, zero_point = q.qparams()
    shift = 128 if q.quant_min < 0 else 0
    return ActQuant(float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]) + shift, q.quant_min + shift,
                    q.quant_max + shift)


def frozen_input(q: Optional[Quantizer], layer: str) -> nn.Module:
    """What a quantizer does at inference, as a constant module."""
    if q is None or not q.fake_quant_enabled:
        return nn.Identity()
    check_ready(q, layer)
    if q.spec.fp8:
        return FakeQuantizeFp8(q.qparams()[0], q.spec.fp8)
    return FakeQuantize(activation_grid(q))


def _stat_view(q: Quantizer, w: torch.Tensor) -> torch.Tensor:
    """``w`` as the quantizer sees it (per-group specs: ``group_rows``)."""
    return group_rows(w) if q.group_size is not None else w


def _from_stat_view(q: Quantizer, view: torch.Tensor, shape) -> torch.Tensor:
    return ungroup_rows(view, tuple(shape)) if q.group_size is not None else view.reshape(shape)


def _settle_weight_qparams(q: Quantizer, w: torch.Tensor, layer: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """The qparams the QAT layer's eval forward applies to ``w``: a "current"
    observer takes the range of ``w`` itself, an LSQ quantizer starts from the
    range if it never stepped."""
    view = _stat_view(q, w)
    if q.observer_enabled and (q.spec.observer == "current" or not q.observed):
        q._observe(view)
    check_ready(q, layer)
    if q.learned and not q.initialised:
        q.initialise_from_range()
    return q.qparams()


def _broadcast(t: torch.Tensor, q: Quantizer, view: torch.Tensor) -> torch.Tensor:
    """Per-tensor / per-channel / per-group qparams shaped to broadcast over
    ``view`` (per group: ``view`` as ``(out, groups, group_size)``)."""
    if q.group_size is not None:
        return t.reshape(view.shape[0], -1, 1)
    if q.axis is not None:
        return t.reshape((-1,) + (1,) * (view.dim() - 1))
    return t.reshape(())


def quantize_weight(q: Quantizer, w: torch.Tensor, layer: str):
    """(integers as int8 shaped like ``w``, scale, zero point, fake-quantized
    ``w``). The integers are those fake_quantize rounds to (checked: their
    dequantized values equal the QAT layer's fake-quantized weight bit for bit)."""
    scale, zero_point = _settle_weight_qparams(q, w, layer)
    view = _stat_view(q, w)
    grouped = view.reshape(view.shape[0], -1, q.group_size) if q.group_size is not None else view
    s = _broadcast(scale.float(), q, view)
    z = _broadcast(zero_point.float(), q, view)
    ints = torch.clamp(torch.round(grouped * (1.0 / s)) + z, q.quant_min, q.quant_max).reshape(view.shape)
    dequantized = ((ints.reshape(grouped.shape) - z) * s).reshape(view.shape)
    reference = fake_quantize(view, scale, zero_point, q.quant_min, q.quant_max, q.axis, q.group_size)
    if not torch.equal(dequantized, reference):
        raise RuntimeError(f"torchqat.export: layer '{layer}': the integer weights do not reproduce the "
                           "fake-quantized ones (please report this)")
    return (_from_stat_view(q, ints, w.shape).to(torch.int8), scale, zero_point,
            _from_stat_view(q, reference, w.shape))


def fake_quantized_weight(q: Quantizer, w: torch.Tensor, layer: str) -> torch.Tensor:
    """The weight as the QAT layer's eval forward quantizes it (any spec)."""
    if not q.fake_quant_enabled:
        return w
    if q.spec.fp8:
        scale, _ = _settle_weight_qparams(q, w, layer)
        return _from_stat_view(q, fake_quantize_fp8(_stat_view(q, w), scale, q.spec.fp8, q.axis, q.group_size),
                               w.shape)
    return quantize_weight(q, w, layer)[3]


def effective_weight_and_bias(layer: nn.Module):
    """The weight the layer's quantizer sees in eval and the deployed bias:
    BatchNorm folded in for Conv-BN layers."""
    if isinstance(layer, _ConvBnMixin):
        per_out_channel = (-1,) + (1,) * (layer.weight.dim() - 1)
        return layer.weight * layer.bn_scale().reshape(per_out_channel), layer.folded_bias()
    return layer.weight, layer.bias


def _int8_gemm_ok(layer: nn.Module) -> Optional[str]:
    """None when the INT8 GEMM computes this layer exactly, else why not."""
    wq, aq = layer.weight_quantizer, layer.input_quantizer
    if wq is None or not wq.fake_quant_enabled:
        return "float weights"
    if aq is None or not aq.fake_quant_enabled:
        return "float input (weight-only quantization)"
    if not (_integer_spec(wq) and _integer_spec(aq)):
        return "FP8 has no integer kernel"
    if not (wq.spec.symmetric and wq.spec.signed and wq.spec.granularity in ("per_channel", "per_tensor")):
        return f"{wq.spec.describe()} weights (the INT8 GEMM takes symmetric per-channel/tensor int weights)"
    if isinstance(layer, QuantConv1d) and not isinstance(layer, QuantConv2d):
        return "Conv1d has no integer kernel"
    return None


def _depthwise(layer: nn.Module) -> bool:
    """One filter per input channel (a channel multiplier of 1)."""
    return layer.groups == layer.in_channels == layer.out_channels


def _int4_weights(layer: nn.Module) -> bool:
    """Symmetric int4 weights in groups the INT4 kernels' packing takes."""
    wq = layer.weight_quantizer
    spec = wq.spec if wq is not None else None
    return (spec is not None and wq.fake_quant_enabled and spec.fp8 is None and spec.bits == 4 and spec.signed
            and spec.symmetric and spec.granularity == "per_group" and spec.group_size % INT4_BLOCK == 0)


def _int4_gemv_ok(layer: nn.Module) -> bool:
    return isinstance(layer, QuantLinear) and _int4_weights(layer)


def _w4a8_conv_ok(layer: nn.Module) -> bool:
    """A Conv2d (groups 1) with int4 weights and an integer input grid."""
    aq = layer.input_quantizer
    return (isinstance(layer, QuantConv2d) and layer.groups == 1 and _int4_weights(layer) and aq is not None
            and aq.fake_quant_enabled and _integer_spec(aq))


def lower_weighted(layer: nn.Module, name: str) -> Tuple[nn.Module, str]:
    """The inference layer for a QuantLinear / QuantConv1d/2d / QuantConvBn,
    and a line saying which kernel it runs."""
    if isinstance(layer, (QuantConv1d, QuantConv2d)) and layer.padding_mode != "zeros":
        raise NotImplementedError(f"torchqat.export: layer '{name}': padding_mode '{layer.padding_mode}' is not "
                                  "supported (zeros only)")
    weight, bias = effective_weight_and_bias(layer)
    weight, bias = weight.detach(), None if bias is None else bias.detach()
    wq, aq = layer.weight_quantizer, layer.input_quantizer
    relu = bool(layer.relu)
    why_not = _int8_gemm_ok(layer)
    if why_not is None:
        check_ready(aq, name)
        act = activation_grid(aq)
        ints, scale, _, _ = quantize_weight(wq, weight, name)
        w_scale = scale.reshape(-1).expand(weight.shape[0])
        if isinstance(layer, QuantLinear):
            return Int8Linear(ints, w_scale, bias, act, relu, name), "int8 GEMM"
        geometry = (list(layer.stride), list(layer.padding), list(layer.dilation))
        if _depthwise(layer):
            return Int8DepthwiseConv2d(ints, w_scale, bias, act, relu, *geometry, name), "int8 depthwise conv"
        if layer.groups != 1:
            return (Int8GroupedConv2d(ints, w_scale, bias, act, relu, *geometry, layer.groups, name),
                    f"int8 grouped conv ({layer.groups} groups, im2col + GEMM per run)")
        return Int8Conv2d(ints, w_scale, bias, act, relu, *geometry, name), "int8 conv (im2col + GEMM)"
    if _w4a8_conv_ok(layer):
        check_ready(aq, name)
        ints, scale, _, _ = quantize_weight(wq, weight, name)
        geometry = (list(layer.stride), list(layer.padding), list(layer.dilation))
        return (Int4Conv2d(ints, scale, bias, activation_grid(aq), relu, *geometry, name),
                "w4a8 conv (int4 weights x uint8 input, im2col + W4A8 kernel)")
    input_grid = frozen_input(aq, name)
    if _int4_gemv_ok(layer):
        ints, scale, _, _ = quantize_weight(wq, weight, name)
        int4 = Int4Linear(ints, scale, bias, input_grid, relu, name)
        if int4.integer_input:
            return int4, "int4 weights x uint8 input (W4A8 kernel)"
        return int4, "int4 weights (INT4 weight-only kernel, float input)"
    fq_weight = weight if wq is None else fake_quantized_weight(wq, weight, name)
    op = "linear" if isinstance(layer, QuantLinear) else ("conv2d" if isinstance(layer, QuantConv2d) else "conv1d")
    conv_args = None if op == "linear" else {"stride": list(layer.stride), "padding": list(layer.padding),
                                             "dilation": list(layer.dilation), "groups": layer.groups}
    return (FloatWeightLayer(op, fq_weight, bias, input_grid, relu, conv_args, name, why_not),
            f"float on the quantized grid ({why_not})")


def lower_embedding(layer: QuantEmbedding, name: str) -> Tuple[nn.Module, str]:
    q = layer.weight_quantizer
    if q.fake_quant_enabled and _integer_spec(q) and q.group_size is None:
        ints, scale, zero_point, _ = quantize_weight(q, layer.weight.detach(), name)
        return Int8Embedding(ints, scale, zero_point, name), "int8 table"
    dim = layer.weight.shape[1]
    fits_a_nibble = (q.quant_min >= -8 and q.quant_max <= 7) or (q.quant_min >= 0 and q.quant_max <= 15)
    if q.fake_quant_enabled and _integer_spec(q) and q.group_size is not None and dim % 2 == 0 and fits_a_nibble:
        ints, scale, zero_point, _ = quantize_weight(q, layer.weight.detach(), name)
        return Int4Embedding(ints, scale, zero_point, q.group_size, name), "int4 table (two per byte)"
    weight = fake_quantized_weight(q, layer.weight.detach(), name)
    table = nn.Embedding.from_pretrained(weight.clone(), freeze=True, padding_idx=layer.padding_idx)
    return table, "float table on the quantized grid"
