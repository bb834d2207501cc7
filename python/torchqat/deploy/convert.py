"""``torchqat.export``: a QAT model in, an inference model on integer kernels
out."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import fx, nn

from ..nn.modules import QuantAdd, QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear, QuantMatMul
from ..prepare import require_prepared
from .chain import chain_integer_layers, fuse_add_relu
from .layers import QuantizedAdd, QuantizedMatMul
from .lower import frozen_input, lower_embedding, lower_weighted


@dataclass
class ExportReport:
    """What ``export`` made of each layer (name, kernel), which residual adds
    took the ReLU after them, and which layers hand uint8 activations to the
    next."""

    layers: List[Tuple[str, str]] = field(default_factory=list)
    fused_relu: List[str] = field(default_factory=list)
    chained: List[str] = field(default_factory=list)

    def count(self, kernel_prefix: str) -> int:
        return sum(kind.startswith(kernel_prefix) for _, kind in self.layers)

    def __str__(self) -> str:
        kinds = {}
        for _, kind in self.layers:
            kinds[kind] = kinds.get(kind, 0) + 1
        lines = [f"torchqat.export: {len(self.layers)} layers, {len(self.chained)} uint8 hand-overs, "
                 f"{len(self.fused_relu)} add+ReLU fused"]
        lines += [f"  {n} x {kind}" for kind, n in sorted(kinds.items())]
        return "\n".join(lines)


def replace_submodules(model: nn.Module, replacements: Dict[str, nn.Module]) -> nn.Module:
    """Puts each replacement at its name in ``model`` (in place); returns the
    model, or the replacement of the model itself (name "")."""
    # Deepest first, so a replaced parent is never walked after its children.
    for name in sorted(replacements, key=lambda n: -n.count(".")):
        if name == "":
            return replacements[name]
        model.set_submodule(name, replacements[name])
    return model


def _lower(model: nn.Module, report: ExportReport) -> nn.Module:
    """Replaces every QAT layer in ``model`` (in place); returns the model
    (the model itself may be a QAT layer)."""
    replacements = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (QuantLinear, QuantConv1d, QuantConv2d)):
            replacements[name], kind = lower_weighted(mod, name or type(mod).__name__)
        elif isinstance(mod, QuantEmbedding):
            replacements[name], kind = lower_embedding(mod, name)
        elif isinstance(mod, (QuantAdd, QuantMatMul)):
            cls = QuantizedAdd if isinstance(mod, QuantAdd) else QuantizedMatMul
            replacements[name] = cls(frozen_input(mod.a_quantizer, name), frozen_input(mod.b_quantizer, name), name)
            kind = "add of quantized operands" if cls is QuantizedAdd else "matmul of quantized operands (float)"
        else:
            continue
        report.layers.append((name, kind))
    return replace_submodules(model, replacements)


def export(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold a QAT model (from ``prepare_qat``, trained or calibrated) into an
    inference model: BatchNorm folded, weights quantized and packed once,
    frozen activation grids, integer kernels (INT8 GEMM / conv, INT4) where
    the specs allow and float on the quantized grid elsewhere, uint8
    activations handed between consecutive integer layers of a traced graph.

    The result is in eval mode, holds no trainable parameters, and is what
    ``torchqat.save`` writes. ``model.torchqat_export_report`` says which
    kernel each layer runs. Raises naming the layer when a quantizer never saw
    data."""
    require_prepared(model, "export")
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    report = ExportReport()
    with torch.no_grad():
        model = _lower(model, report)
        if isinstance(model, fx.GraphModule):
            report.fused_relu = fuse_add_relu(model)
            report.chained = chain_integer_layers(model)
            # The float layers that prepare_qat folded away (BatchNorm into its
            # conv) stay attached to a traced model: not shipped.
            model.delete_all_unused_submodules()
    for p in list(model.parameters()):
        p.requires_grad_(False)
    model.torchqat_export_report = report
    return model
