"""``prepare_qat``: an ordinary model in, a model that trains with fake
quantization out.

Traceable models (torchvision's ResNets and MobileNets, most user models) are
rewritten on their torch.fx graph: Conv-BN(-ReLU) and Linear/Conv-ReLU are
fused, residual adds become ``QuantAdd``, activation matmuls ``QuantMatMul``,
``scaled_dot_product_attention`` ``QuantAttention``. Models torch.fx cannot
trace (Hugging Face transformers) get their layers swapped in place, and their
attention routed through torchqat's attention implementation. Whatever stays
in float is reported by name.
"""

from __future__ import annotations

import copy
import math
import difflib
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import _transformers
from .nn.conv_bn import QuantConvBn1d, QuantConvBn2d
from .nn.modules import (QuantAdd, QuantAttention, QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear,
                         QuantMatMul)
from .nn.quantizer import Quantizer
from .qconfig import QConfig, QuantSpec, matches, unmatched_patterns, widened

QUANT_LAYERS = (QuantLinear, QuantConv1d, QuantConv2d, QuantEmbedding, QuantMatMul, QuantAdd, QuantAttention)
_SWAP = {nn.Linear: QuantLinear, nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d}
_CONV_BN = {(nn.Conv1d, nn.BatchNorm1d): QuantConvBn1d, (nn.Conv2d, nn.BatchNorm2d): QuantConvBn2d}
_ADDS = (operator.add, operator.iadd, torch.add)
_MATMULS = (torch.matmul, operator.matmul, torch.bmm)
_RELUS = (F.relu, torch.relu, torch.relu_)
# Float compute that prepare_qat cannot quantize where it finds it.
_FLOAT_COMPUTE = (F.linear, F.conv1d, F.conv2d, torch.einsum, torch.baddbmm, torch.addmm, torch.mm,
                  F.scaled_dot_product_attention) + _MATMULS


@dataclass
class PrepareReport:
    """What prepare_qat did: ``mode`` ("torch.fx" or "module swap"), the layers
    it quantized, the fusions it made, and what it left in float and why."""

    mode: str = ""
    quantized: List[str] = field(default_factory=list)
    fused: List[str] = field(default_factory=list)
    left_in_float: List[Tuple[str, str]] = field(default_factory=list)  # (name, why)
    # Layers quantized otherwise than their spec said, and how (name, what).
    adjusted: List[Tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"prepare_qat ({self.mode}): {len(self.quantized)} quantized, {len(self.fused)} fused, "
                 f"{len(self.left_in_float)} left in float"]
        lines += [f"  adjusted: {n} ({what})" for n, what in self.adjusted]
        lines += [f"  float: {n} ({why})" for n, why in self.left_in_float]
        return "\n".join(lines)


def is_prepared(model: nn.Module) -> bool:
    return any(isinstance(m, Quantizer) for m in model.modules())


def require_prepared(model: nn.Module, what: str) -> None:
    if not isinstance(model, nn.Module) or not is_prepared(model):
        raise RuntimeError(f"torchqat.{what} needs a model prepared by torchqat.prepare_qat "
                           f"(got {type(model).__name__} with no quantizers)")


def prepare_qat(model: nn.Module, qconfig: Optional[QConfig] = None, example_inputs: Any = None,
                inplace: bool = False) -> nn.Module:
    """Return ``model`` ready for quantization-aware training with ``qconfig``
    (default ``QConfig.int8()``).

    The result trains in any loop with any optimizer (create the optimizer
    after preparing: learned scales are new parameters); ``.eval()`` uses the
    running BatchNorm statistics. ``example_inputs`` (a tuple of positional
    arguments, or a dict of keyword arguments) lets prepare_qat run the model
    once to find matmuls and linear maps computed outside any module, which it
    reports as left in float. ``model.torchqat_report`` says what was done.
    With ``inplace=False`` (default) the input model is left untouched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_qat: model must be an nn.Module, got {type(model).__name__}")
    qconfig = QConfig.int8() if qconfig is None else qconfig
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"prepare_qat: qconfig must be a torchqat.QConfig, got {type(qconfig).__name__}")
    if is_prepared(model):
        raise RuntimeError("prepare_qat: this model is already prepared (it holds torchqat quantizers); "
                           "prepare the float model once")
    if not inplace:
        model = copy.deepcopy(model)
    report = PrepareReport()
    _warn_unmatched(qconfig, model)
    graph_module, why_not = _trace(model) if not _transformers.is_transformers_model(model) else \
        (None, "a transformers model: torch.fx does not trace it")
    if graph_module is not None:
        report.mode = "torch.fx"
        model = _prepare_graph(graph_module, qconfig, report)
    else:
        report.mode = f"module swap ({why_not})"
        _prepare_modules(model, qconfig, report)
    if _transformers.is_transformers_model(model) and qconfig.activation is not None:
        done = _transformers.quantize_attention(model, qconfig.activation, qconfig.is_skipped)
        report.quantized += [f"{n}.{_transformers.ATTRIBUTE}" for n in done["quantized"]]
        report.left_in_float += [(n, "attention skipped by the QConfig") for n in done["skipped"]]
    if example_inputs is not None:
        report.left_in_float += _float_compute_outside_layers(model, example_inputs)
    for name, why in report.left_in_float:
        if "skipped by the QConfig" not in why:
            warnings.warn(f"torchqat.prepare_qat: '{name}' stays in float: {why}", stacklevel=2)
    model.torchqat_report = report
    return model


def _warn_unmatched(qconfig: QConfig, model: nn.Module) -> None:
    layers = dict(model.named_modules())
    for p in unmatched_patterns(qconfig, layers):
        if isinstance(p, type):
            warnings.warn(f"torchqat.prepare_qat: the pattern {p.__name__} matches no module", stacklevel=3)
            continue
        close = difflib.get_close_matches(p.removeprefix("re:"), [n for n in layers if n], n=5, cutoff=0.5)
        hint = f"; did you mean one of {close}?" if close else ""
        warnings.warn(f"torchqat.prepare_qat: the pattern {p!r} matches no module name{hint}", stacklevel=3)


# ---- torch.fx path ----------------------------------------------------------

class _ScopeTracer(fx.Tracer):
    """Records, on every node, the path of the module whose forward made it."""

    def __init__(self):
        super().__init__()
        self.module_path = ""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QUANT_LAYERS) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        outer, self.module_path = self.module_path, self.path_of_module(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.module_path = outer

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["torchqat_scope"] = self.module_path
        return node


def _trace(model: nn.Module) -> Tuple[Optional[fx.GraphModule], str]:
    try:
        tracer = _ScopeTracer()
        graph = tracer.trace(model)
    except Exception as e:  # untraceable models fall back to module swapping
        return None, f"torch.fx could not trace it: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return fx.GraphModule(tracer.root, graph, type(model).__name__), ""


_NOT_TENSOR_METHODS = {"size", "dim", "numel", "stride", "tolist", "item", "__len__", "element_size"}
_NOT_TENSOR_ATTRS = {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad"}


def _tensor_nodes(graph: fx.Graph) -> set:
    """Nodes that carry tensors (not sizes or Python numbers), by propagation."""
    tensors = set()
    for n in graph.nodes:
        inputs = [a for a in n.all_input_nodes]
        if n.op in ("placeholder", "get_attr", "call_module"):
            tensors.add(n)
        elif n.op == "call_method":
            if n.target not in _NOT_TENSOR_METHODS and inputs and inputs[0] in tensors:
                tensors.add(n)
        elif n.op == "call_function":
            if n.target is getattr and n.args[1] in _NOT_TENSOR_ATTRS:
                continue
            if n.target is len:
                continue
            if any(a in tensors for a in inputs):
                tensors.add(n)
    return tensors


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _is_relu(node: Optional[fx.Node], modules: Dict[str, nn.Module]) -> bool:
    if node is None:
        return False
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELUS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _unique_name(root: nn.Module, scope: str, base: str) -> str:
    prefix = f"{scope}." if scope else ""
    name, k = f"{prefix}{base}", 0
    while _has_submodule(root, name):
        k += 1
        name = f"{prefix}{base}_{k}"
    return name


def _has_submodule(root: nn.Module, name: str) -> bool:
    try:
        root.get_submodule(name)
        return True
    except AttributeError:
        return False


def _prepare_graph(gm: fx.GraphModule, qconfig: QConfig, report: PrepareReport) -> fx.GraphModule:
    modules = dict(gm.named_modules())
    tensors = _tensor_nodes(gm.graph)
    nodes = list(gm.graph.nodes)

    def weighted(n):
        return n.op == "call_module" and type(modules[n.target]) in _SWAP

    layers = [n for n in nodes if weighted(n) and not qconfig.is_skipped(n.target, modules[n.target])]
    edges = {layers[0].target, layers[-1].target} if layers else set()

    for n in nodes:
        if n.op == "call_module":
            mod = modules[n.target]
            if type(mod) in _SWAP or type(mod) is nn.Embedding:
                _swap_node(gm, n, mod, modules, qconfig, n.target in edges, report)
            elif isinstance(mod, (nn.MultiheadAttention, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Conv3d)):
                report.left_in_float.append((n.target, f"{type(mod).__name__} has no QAT layer in torchqat"))
        elif n.op == "call_function" or n.op == "call_method":
            _rewrite_function(gm, n, tensors, qconfig, report)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _layer_specs(name, mod, qconfig, edge, report):
    """(weight spec, activation spec) for a float layer, or None when it stays
    float (reported). Embeddings are swapped here, having no fusions."""
    if qconfig.is_skipped(name, mod):
        report.left_in_float.append((name, "skipped by the QConfig"))
        return None
    weight_spec, act_spec = qconfig.specs_for(name, mod, edge)
    if type(mod) is nn.Embedding:
        act_spec = None  # an embedding's input is indices
    if weight_spec is None and act_spec is None:
        report.left_in_float.append((name, "no specs for it in the QConfig"))
        return None
    return _fit_weight_groups(name, mod, weight_spec, report), act_spec


def _fit_weight_groups(name: str, mod: nn.Module, spec: Optional[QuantSpec], report) -> Optional[QuantSpec]:
    """A per-group weight spec for a grouped or depthwise conv, or a layer
    whose weight rows its groups do not divide (a conv or linear over fewer
    input elements than a group), becomes per-channel at 8 bits or more, as
    the low-bit presets' first and last layers, and the report says so: the
    INT8 kernels deploy such layers; torchao's int4 configs likewise leave
    them to a wider format."""
    if spec is None or spec.granularity != "per_group":
        return spec
    row = math.prod(mod.weight.shape[1:])
    if getattr(mod, "groups", 1) != 1:
        kind = "depthwise" if mod.groups == mod.in_channels == mod.out_channels else f"grouped ({mod.groups} groups)"
        why = f"a {kind} conv: the int4-group kernels take groups=1"
    elif row % spec.group_size != 0:
        why = f"weight rows of {row} elements do not split into groups of {spec.group_size}"
    else:
        return spec
    fitted = widened(spec, 8)
    report.adjusted.append((name, f"{why}: per-channel {fitted.bits}-bit weights"))
    return fitted


def _swap_node(gm, n, mod, modules, qconfig, edge, report) -> None:
    name = n.target
    specs = _layer_specs(name, mod, qconfig, edge, report)
    if specs is None:
        return
    weight_spec, act_spec = specs
    if type(mod) is nn.Embedding:
        gm.set_submodule(name, QuantEmbedding.from_float(mod, weight_spec, name))
        report.quantized.append(name)
        return
    follower, fused = _only_user(n), [name]
    bn = None
    conv_bn = follower is not None and follower.op == "call_module" and \
        _CONV_BN.get((type(mod), type(modules[follower.target])))
    if conv_bn and follower.args[0] is n:
        bn = follower
        follower = _only_user(bn)
        fused.append(bn.target)
    relu = _is_relu(follower, modules) and follower.args[0] is (bn or n)
    if relu:
        fused.append("relu")
    if bn is not None:
        new = conv_bn.from_float(mod, modules[bn.target], weight_spec, act_spec, name, relu,
                                 qconfig.freeze_bn_after)
    else:
        new = _SWAP[type(mod)].from_float(mod, weight_spec, act_spec, name, relu)
    gm.set_submodule(name, new)
    if bn is not None:
        bn.replace_all_uses_with(n)
        gm.graph.erase_node(bn)
    if relu:
        follower.replace_all_uses_with(n)
        gm.graph.erase_node(follower)
    report.quantized.append(name)
    if len(fused) > 1:
        report.fused.append("+".join(fused))


def _rewrite_function(gm, n, tensors, qconfig, report) -> None:
    scope = n.meta.get("torchqat_scope", "")
    target = n.target
    both_tensors = len(n.args) >= 2 and all(isinstance(a, fx.Node) and a in tensors for a in n.args[:2])
    kind = None
    if n.op == "call_function" and target in _ADDS and both_tensors and not n.kwargs and len(n.args) == 2:
        kind, cls = "add", QuantAdd
    elif both_tensors and ((n.op == "call_function" and target in _MATMULS) or
                           (n.op == "call_method" and target in ("matmul", "bmm", "__matmul__"))):
        kind, cls = "matmul", QuantMatMul
    elif n.op == "call_function" and target is F.scaled_dot_product_attention:
        kind, cls = "attention", QuantAttention
    if kind is None:
        if n.op == "call_function" and target in _FLOAT_COMPUTE:
            report.left_in_float.append((f"{scope or '<root>'}:{getattr(target, '__name__', target)}",
                                         "a functional call torchqat does not rewrite"))
        return
    name = _unique_name(gm, scope, kind)
    where = scope or "<root>"
    owner = gm.get_submodule(scope) if scope and _has_submodule(gm, scope) else None
    if qconfig.is_skipped(name, None) or (scope and qconfig.is_skipped(scope, owner)):
        report.left_in_float.append((f"{where}:{kind}", "skipped by the QConfig"))
        return
    spec = qconfig.activation
    if spec is None:
        report.left_in_float.append((f"{where}:{kind}", "no activation spec in the QConfig"))
        return
    gm.add_submodule(name, cls(spec, name))
    with gm.graph.inserting_after(n):
        new = gm.graph.call_module(name, n.args, dict(n.kwargs))
    tensors.add(new)
    n.replace_all_uses_with(new)
    gm.graph.erase_node(n)
    report.quantized.append(name)


# ---- module swap path ---------------------------------------------------------

def _prepare_modules(model: nn.Module, qconfig: QConfig, report: PrepareReport) -> None:
    named = [(n, m) for n, m in model.named_modules() if n]
    layers = [n for n, m in named if type(m) in _SWAP and not qconfig.is_skipped(n, m)]
    edges = {layers[0], layers[-1]} if layers else set()
    for name, mod in named:
        if type(mod) in _SWAP or type(mod) is nn.Embedding:
            specs = _layer_specs(name, mod, qconfig, name in edges, report)
            if specs is None:
                continue
            weight_spec, act_spec = specs
            new = QuantEmbedding.from_float(mod, weight_spec, name) if type(mod) is nn.Embedding else \
                _SWAP[type(mod)].from_float(mod, weight_spec, act_spec, name)
            model.set_submodule(name, new)
            report.quantized.append(name)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            report.fused.append(f"(not folded: {name}; folding needs a torch.fx-traceable model)")
        elif isinstance(mod, (nn.MultiheadAttention, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Conv3d)):
            report.left_in_float.append((name, f"{type(mod).__name__} has no QAT layer in torchqat"))


# ---- finding float compute outside the quantized layers ----------------------

class _FloatComputeMode(torch.overrides.TorchFunctionMode):
    def __init__(self, where):
        super().__init__()
        self.where, self.found = where, {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        scope, inside = self.where()
        name = getattr(func, "__name__", str(func))
        if not inside and (func in _FLOAT_COMPUTE or name in ("matmul", "__matmul__", "bmm")):
            self.found.setdefault(f"{scope or '<root>'}:{name}", True)
        return func(*args, **kwargs)


def _float_compute_outside_layers(model: nn.Module, example_inputs) -> List[Tuple[str, str]]:
    """Runs the model once (eval, no grad, quantizers passive) and lists the
    linear maps and matmuls computed outside torchqat's layers."""
    stack: List[Tuple[str, bool]] = [("", False)]
    hooks = []
    for name, m in model.named_modules():
        quant = isinstance(m, QUANT_LAYERS)

        def pre(mod, args, name=name, quant=quant):
            stack.append((name, stack[-1][1] or quant))

        def post(mod, args, out):
            stack.pop()

        hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    quantizers = [q for q in model.modules() if isinstance(q, Quantizer)]
    saved = [copy.deepcopy(q.state_dict()) for q in quantizers]
    was_training = model.training
    mode = _FloatComputeMode(lambda: stack[-1])
    try:
        for q in quantizers:
            q.fake_quant_enabled = q.observer_enabled = False
        model.eval()
        with torch.no_grad(), mode:
            if isinstance(example_inputs, dict):
                model(**example_inputs)
            else:
                model(*(example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)))
    finally:
        for h in hooks:
            h.remove()
        for q, state in zip(quantizers, saved):
            q.load_state_dict(state)
        model.train(was_training)
    return [(name, "computed outside any torchqat layer") for name in mode.found]
