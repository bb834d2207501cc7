"""Hugging Face ``transformers`` attention: its matmuls run inside an attention
function chosen by ``config._attn_implementation`` (SDPA by default), where
module swapping never sees them. torchqat registers its own implementation,
``"torchqat"``, that computes attention with the ``QuantAttention`` attached to
each attention module, and an eager-style additive mask for it."""

from __future__ import annotations

import inspect
from typing import Dict, List

import torch.nn.functional as F
from torch import nn

from .nn.modules import QuantAttention
from .qconfig import QuantSpec

IMPLEMENTATION = "torchqat"
ATTRIBUTE = "quant_attention"


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    # Attention modules the QConfig skipped have no QuantAttention: float.
    attn = getattr(module, ATTRIBUTE, None) or F.scaled_dot_product_attention
    out = attn(query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
               enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(IMPLEMENTATION, _attention)
    AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)


def is_transformers_model(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return config is not None and hasattr(config, "_attn_implementation") and \
        type(model).__module__.startswith("transformers.")


def _uses_attention_interface(module: nn.Module) -> bool:
    try:
        source = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False
    return "ALL_ATTENTION_FUNCTIONS" in source


def quantize_attention(model: nn.Module, spec: QuantSpec, skip) -> Dict[str, List[str]]:
    """Attach a QuantAttention to every attention module of a transformers
    model and switch the model to the "torchqat" attention implementation.
    Returns {"quantized": [...], "skipped": [...]} attention module names."""
    _register()
    done: Dict[str, List[str]] = {"quantized": [], "skipped": []}
    for name, module in model.named_modules():
        if not _uses_attention_interface(module):
            continue
        if skip(name, module):
            done["skipped"].append(name)
            continue
        setattr(module, ATTRIBUTE, QuantAttention(spec, f"{name}.{ATTRIBUTE}"))
        done["quantized"].append(name)
    if done["quantized"]:
        model.config._attn_implementation = IMPLEMENTATION
    return done
