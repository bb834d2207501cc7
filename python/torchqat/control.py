"""Model-level switches of a prepared model, post-training calibration and the
summary table (the names torch.ao users know)."""

from __future__ import annotations

from typing import Iterable, Iterator, List

import torch
from torch import nn

from .nn.conv_bn import _ConvBnMixin
from .nn.modules import QuantAdd, QuantAttention, QuantEmbedding, QuantMatMul, _QuantWeighted
from .nn.quantizer import Quantizer
from .prepare import _SWAP, require_prepared


def quantizers(model: nn.Module) -> Iterator[Quantizer]:
    return (m for m in model.modules() if isinstance(m, Quantizer))


def enable_fake_quant(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every fake quantizer on or off (off: the model computes in float)."""
    require_prepared(model, "enable_fake_quant")
    for q in quantizers(model):
        q.fake_quant_enabled = enabled
    return model


def enable_observer(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every observer on or off (off: ranges stay as they are)."""
    require_prepared(model, "enable_observer")
    for q in quantizers(model):
        q.observer_enabled = enabled
    return model


def freeze_bn_stats(model: nn.Module, frozen: bool = True) -> nn.Module:
    """Conv-BN layers stop (or resume) updating BatchNorm statistics and
    normalise with the running ones, as the deployed folded conv does."""
    require_prepared(model, "freeze_bn_stats")
    for m in model.modules():
        if isinstance(m, _ConvBnMixin):
            m.bn_frozen = frozen
    return model


def freeze(model: nn.Module) -> nn.Module:
    """Fix every quantizer's qparams for the rest of training: observers off,
    learned scales and zero points no longer trained."""
    require_prepared(model, "freeze")
    for q in quantizers(model):
        q.observer_enabled = False
        if q.learned:
            q.scale.requires_grad_(False)
            if isinstance(q.zero_point, nn.Parameter):
                q.zero_point.requires_grad_(False)
    return model


def _call(model: nn.Module, batch):
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable, progress: bool = False) -> nn.Module:
    """Post-training calibration: run ``batches`` (tensors, tuples of
    positional arguments or dicts of keyword arguments) through the model in
    eval mode with the observers on and fake quantization off, so every
    quantizer holds a range. Switches and the training mode are restored
    afterwards. PTQ is ``calibrate`` then export; QAT can start from it."""
    require_prepared(model, "calibrate")
    qs = list(quantizers(model))
    saved = [(q.fake_quant_enabled, q.observer_enabled) for q in qs]
    was_training = model.training
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="calibrate", leave=False)
    try:
        for q in qs:
            q.fake_quant_enabled, q.observer_enabled = False, True
        model.eval()
        seen = 0
        for batch in batches:
            _call(model, batch)
            seen += 1
        if seen == 0:
            raise ValueError("calibrate: batches is empty; give it at least one batch")
    finally:
        for q, (fq, obs) in zip(qs, saved):
            q.fake_quant_enabled, q.observer_enabled = fq, obs
        model.train(was_training)
    return model


def _scale_text(q: Quantizer) -> str:
    if q is None:
        return "float"
    if not q.observed:
        return "(no data yet)"
    scale, _ = q.qparams()
    if scale.numel() == 1:
        return f"{float(scale):.4g}"
    return f"{float(scale.min()):.3g}..{float(scale.max()):.3g}"


def _spec_text(q: Quantizer) -> str:
    return "float" if q is None else q.spec.describe()


def summary(model: nn.Module) -> str:
    """A table of the model's Linear / Conv / Embedding layers, matmuls and
    adds: quantized or float, bits, granularity, estimator, current scales."""
    require_prepared(model, "summary")
    rows: List[List[str]] = []
    for name, m in model.named_modules():
        if isinstance(m, (_QuantWeighted, QuantEmbedding)):
            kind = type(m).__name__ + ("+ReLU" if getattr(m, "relu", False) else "")
            inq = getattr(m, "input_quantizer", None)
            rows.append([name, kind, _spec_text(m.weight_quantizer), _scale_text(m.weight_quantizer),
                         _spec_text(inq) if isinstance(m, _QuantWeighted) else "-",
                         _scale_text(inq) if isinstance(m, _QuantWeighted) else "-"])
        elif isinstance(m, (QuantMatMul, QuantAdd)):
            rows.append([name, type(m).__name__, "-", "-", _spec_text(m.a_quantizer),
                         f"{_scale_text(m.a_quantizer)} / {_scale_text(m.b_quantizer)}"])
        elif isinstance(m, QuantAttention):
            continue  # its qk and pv matmuls have rows
        elif type(m) in _SWAP or type(m) is nn.Embedding:
            rows.append([name, type(m).__name__, "float", "-", "float", "-"])
    header = ["layer", "kind", "weight", "weight scale", "input", "input scale"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
    report = getattr(model, "torchqat_report", None)
    if report is not None:
        out.append(str(report))
    return "\n".join(out)
