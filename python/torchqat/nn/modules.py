"""QAT layers: drop-in subclasses of the torch.nn layers they replace (same
parameters, same ``state_dict`` keys for them) that fake-quantize their input
activation and their weight.

Each quantized layer owns the quantizer of its *input*: the activation a ReLU,
GELU or residual add produces is quantized where it is consumed, so every
integer kernel of the deployed model knows the scale of its input. ``relu``
marks a ReLU fused into the layer (applied to its output, folded into the
integer kernel's epilogue at export).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..qconfig import QuantSpec
from .conv_grad import conv2d_module_forward
from .quantizer import Quantizer, recompute_saved


def group_rows(w: torch.Tensor) -> torch.Tensor:
    """A weight as per-group quantizers see it: ``(out, -1)`` rows. A conv
    weight ``(out, in, *kernel)`` is read with the input channel fastest
    (``(out, *kernel, in)``), so that groups run along input channels within
    one kernel tap (where a group is wider than the channels, over the next
    taps), as the channels-last im2col row the integer kernels multiply."""
    return w if w.dim() == 2 else w.movedim(1, -1).reshape(w.shape[0], -1)


def ungroup_rows(rows: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """The inverse of ``group_rows`` for a weight of ``shape``."""
    if len(shape) == 2:
        return rows.reshape(shape)
    return rows.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],)).movedim(-1, 1)


def weight_stat_shape(spec: QuantSpec, weight_shape: Tuple[int, ...], name: str) -> Tuple[int, ...]:
    """Shape of a weight quantizer's statistics; per-group specs see the
    weight as ``group_rows`` gives it."""
    if spec.granularity == "per_tensor":
        return (1,)
    if spec.granularity == "per_channel":
        return (weight_shape[0],)
    row = math.prod(weight_shape[1:])
    if row % spec.group_size != 0:
        raise ValueError(f"torchqat: layer '{name}': per-group size {spec.group_size} does not divide its weight "
                         f"rows of {row} elements (weight shape {tuple(weight_shape)}); choose a group size that "
                         "divides it or override this layer (QConfig.override) with per_channel weights")
    return (weight_shape[0], row // spec.group_size)


def activation_quantizer(spec: Optional[QuantSpec], name: str) -> Optional[Quantizer]:
    if spec is None:
        return None
    if spec.granularity != "per_tensor":
        raise ValueError(f"torchqat: layer '{name}': activations are quantized per tensor, got granularity "
                         f"'{spec.granularity}'")
    return Quantizer(spec, (1,), name)


class _QuantWeighted:
    """Input and weight quantizers for a layer with a ``weight`` parameter."""

    weight: nn.Parameter

    def _setup_quantizers(self, weight_spec: Optional[QuantSpec], act_spec: Optional[QuantSpec], name: str,
                          relu: bool = False) -> None:
        self.layer_name = name
        self.relu = relu
        device = self.weight.device
        self.input_quantizer = activation_quantizer(act_spec, f"{name}.input")
        if self.input_quantizer is not None:
            self.input_quantizer.to(device)
        self.weight_quantizer = None
        if weight_spec is not None:
            shape = weight_stat_shape(weight_spec, tuple(self.weight.shape), name)
            self.weight_quantizer = Quantizer(weight_spec, shape, f"{name}.weight").to(device)

    def _quantize_input(self, x: torch.Tensor):
        """(quantized input, replay for recompute_saved)."""
        if self.input_quantizer is None:
            return x, None
        xq = self.input_quantizer(x)
        return xq, self.input_quantizer.replay(x.detach())

    def _quantize_weight(self, w: torch.Tensor, source=None):
        """(quantized weight, replay for recompute_saved). ``source``
        recomputes ``w`` from live tensors when ``w`` is a temporary (the
        BN-folded weight); by default ``w`` itself is kept."""
        q = self.weight_quantizer
        if q is None:
            return w, None
        shape = w.shape
        if q.group_size is None:
            to_rows, from_rows = (lambda t: t), (lambda t: t)
        else:
            to_rows, from_rows = group_rows, (lambda t: ungroup_rows(t, shape))
        wq = from_rows(q(to_rows(w)))
        source = source or (lambda w=w.detach(): w)
        replay = q.replay(lambda: to_rows(source()))
        return wq, None if replay is None else (lambda: from_rows(replay()))

    def _activate(self, y: torch.Tensor) -> torch.Tensor:
        return F.relu(y) if self.relu else y

    def _quantized_forward(self, x: torch.Tensor, compute) -> torch.Tensor:
        """compute(quantized input, quantized weight), autograd keeping the
        float input and weight (see recompute_saved), then the fused ReLU."""
        w, w_replay = self._quantize_weight(self.weight)
        xq, replay = self._quantize_input(x)
        with recompute_saved([(xq, replay), (w, w_replay)]):
            y = compute(xq, w)
        return self._activate(y)

    @staticmethod
    def _share_parameters(new: nn.Module, old: nn.Module) -> None:
        # The same Parameter objects: an optimizer or EMA built on the float
        # model keeps working, and nothing is copied.
        new.weight = old.weight
        if getattr(old, "bias", None) is not None:
            new.bias = old.bias


class QuantLinear(nn.Linear, _QuantWeighted):
    """``nn.Linear`` with fake-quantized input and weight."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_spec: Optional[QuantSpec] = None, act_spec: Optional[QuantSpec] = None,
                 relu: bool = False, name: str = "", device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._setup_quantizers(weight_spec, act_spec, name, relu)

    @classmethod
    def from_float(cls, mod: nn.Linear, weight_spec, act_spec, name: str = "", relu: bool = False) -> "QuantLinear":
        new = cls(mod.in_features, mod.out_features, mod.bias is not None, device="meta")
        cls._share_parameters(new, mod)
        new._setup_quantizers(weight_spec, act_spec, name, relu)
        return new.train(mod.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._quantized_forward(x, lambda xq, w: F.linear(xq, w, self.bias))


class _QuantConvNd(_QuantWeighted):
    @classmethod
    def from_float(cls, mod, weight_spec, act_spec, name: str = "", relu: bool = False):
        new = cls(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride, padding=mod.padding,
                  dilation=mod.dilation, groups=mod.groups, bias=mod.bias is not None, padding_mode=mod.padding_mode,
                  device="meta")
        cls._share_parameters(new, mod)
        new._setup_quantizers(weight_spec, act_spec, name, relu)
        return new.train(mod.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._quantized_forward(x, lambda xq, w: self._conv_forward(xq, w, self.bias))


class QuantConv1d(_QuantConvNd, nn.Conv1d):
    """``nn.Conv1d`` with fake-quantized input and weight (groups and depthwise included)."""

    def __init__(self, *args, weight_spec=None, act_spec=None, relu=False, name="", **kwargs):
        nn.Conv1d.__init__(self, *args, **kwargs)
        self._setup_quantizers(weight_spec, act_spec, name, relu)


class QuantConv2d(_QuantConvNd, nn.Conv2d):
    """``nn.Conv2d`` with fake-quantized input and weight (groups and depthwise included)."""

    _conv_forward = conv2d_module_forward  # small maps train by per-tap GEMMs (conv_grad.py)

    def __init__(self, *args, weight_spec=None, act_spec=None, relu=False, name="", **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._setup_quantizers(weight_spec, act_spec, name, relu)


class QuantEmbedding(nn.Embedding):
    """``nn.Embedding`` with a fake-quantized table (its input is indices).
    Per-channel specs give one scale per row."""

    @classmethod
    def from_float(cls, mod: nn.Embedding, weight_spec: QuantSpec, name: str = "") -> "QuantEmbedding":
        new = cls(mod.num_embeddings, mod.embedding_dim, mod.padding_idx, mod.max_norm, mod.norm_type,
                  mod.scale_grad_by_freq, mod.sparse, device="meta")
        new.weight = mod.weight
        new.layer_name = name
        shape = weight_stat_shape(weight_spec, tuple(mod.weight.shape), name)
        new.weight_quantizer = Quantizer(weight_spec, shape, f"{name}.weight").to(mod.weight.device)
        return new.train(mod.training)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.weight_quantizer(self.weight), self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)


class _QuantBinary(nn.Module):
    """An operation on two activations, each with its own quantizer."""

    def __init__(self, act_spec: QuantSpec, name: str = ""):
        super().__init__()
        self.layer_name = name
        self.a_quantizer = activation_quantizer(act_spec, f"{name}.a")
        self.b_quantizer = activation_quantizer(act_spec, f"{name}.b")


class QuantMatMul(_QuantBinary):
    """``torch.matmul(a, b)`` with both operands fake-quantized (attention's
    Q·Kᵀ and P·V, or any activation-by-activation product)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        aq, bq = self.a_quantizer(a), self.b_quantizer(b)
        with recompute_saved([(aq, self.a_quantizer.replay(a.detach())), (bq, self.b_quantizer.replay(b.detach()))]):
            return torch.matmul(aq, bq)


class QuantAdd(_QuantBinary):
    """``a + b`` (a residual add) with both operands fake-quantized, as the
    deployed integer add sees them."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.a_quantizer(a) + self.b_quantizer(b)


class QuantAttention(nn.Module):
    """Scaled dot-product attention with its two matmuls quantized
    (``qk``: Q·Kᵀ, ``pv``: P·V); softmax stays in float. Takes the arguments
    of ``F.scaled_dot_product_attention`` (boolean or additive masks)."""

    def __init__(self, act_spec: QuantSpec, name: str = ""):
        super().__init__()
        self.layer_name = name
        self.qk = QuantMatMul(act_spec, f"{name}.qk")
        self.pv = QuantMatMul(act_spec, f"{name}.pv")

    def forward(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                enable_gqa=False):
        if enable_gqa and key.shape[-3] != query.shape[-3]:
            repeat = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        scores = self.qk(query, key.transpose(-2, -1)) * scale
        if is_causal:
            L, S = scores.shape[-2:]
            causal = torch.ones(L, S, dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
                else scores + attn_mask
        probs = torch.softmax(scores, dim=-1)
        if dropout_p > 0.0:
            probs = F.dropout(probs, dropout_p)
        return self.pv(probs, value)
