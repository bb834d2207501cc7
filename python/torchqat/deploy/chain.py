"""Integer activations between layers, on a torch.fx graph.

An integer producer (a conv, depthwise conv or linear on the INT8 kernels, a
W4A8 conv, or a residual add of integer operands) whose every consumer quantizes its output
onto one uint8 grid (the next integer layer, a W4A8 linear or conv, an operand of a
residual add) hands over uint8 on that grid; the consumers skip their
quantization. The integers are those the consumers would have computed from a
float output (up to the float rounding of the accumulator's scaling).

Between producer and consumers the hand-over may pass through operations that
commute with quantization because they only order values: max pooling, and
ReLU6 (clamping the integers to [q(0), q(6)] on the consumers' grid). A ReLU
right after a residual add is fused into the add."""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..prepare import _is_relu
from .layers import (ActQuant, ClampUint8, Int4Conv2d, Int4Linear, Int8Conv2d, Int8DepthwiseConv2d,
                     Int8GroupedConv2d, Int8Linear, MaxPoolUint8, QuantizedAdd)

_INTEGER = (Int8Linear, Int8Conv2d, Int8DepthwiseConv2d, Int8GroupedConv2d)
_PRODUCERS = _INTEGER + (Int4Conv2d,)  # layers whose epilogue can requantize to uint8
# (consumer node, grid, consumer module, operand slot)
Consumer = Tuple[fx.Node, ActQuant, nn.Module, int]


def _is_producer(mod: nn.Module) -> bool:
    return isinstance(mod, _PRODUCERS) or (isinstance(mod, QuantizedAdd) and mod.integer)


def _consumer_grid(user: fx.Node, producer: fx.Node, modules: Dict[str, nn.Module]
                   ) -> Optional[Tuple[ActQuant, nn.Module, int]]:
    """(the grid ``user`` quantizes ``producer``'s output to, the consumer,
    the operand slot) or None when it does not quantize it alone."""
    if user.op != "call_module" or user.kwargs:
        return None
    mod = modules[user.target]
    slots = [i for i, a in enumerate(user.args) if a is producer]
    if len(slots) != 1:
        return None
    takes_uint8 = isinstance(mod, _INTEGER) or (isinstance(mod, (Int4Linear, Int4Conv2d)) and mod.integer_input)
    if takes_uint8 and slots[0] == 0 and len(user.args) == 1:
        return mod.in_act, mod, 0
    if isinstance(mod, QuantizedAdd):
        grid = mod.operand_grid(slots[0])
        return None if grid is None else (grid, mod, slots[0])
    return None


def _is_max_pool(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        mod = modules[node.target]
        return type(mod) is nn.MaxPool2d and not mod.return_indices
    return node.op == "call_function" and node.target is F.max_pool2d and not node.kwargs.get("return_indices") \
        and not (len(node.args) > 5 and node.args[5])


def _is_relu6(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU6
    return node.op == "call_function" and node.target is F.relu6 and len(node.args) == 1


def _order_only(node: fx.Node, source: fx.Node, modules: Dict[str, nn.Module], calls: Counter) -> bool:
    """Whether ``node`` is a max pool or ReLU6 of ``source`` alone, called once."""
    if node.args[:1] != (source,) or (node.op == "call_module" and calls[node.target] > 1):
        return False
    return _is_max_pool(node, modules) or _is_relu6(node, modules)


def _consumers(node: fx.Node, modules: Dict[str, nn.Module], calls: Counter,
               passed: List[fx.Node]) -> Optional[List[Consumer]]:
    """Every consumer of ``node``'s output, through order-only operations
    (appended to ``passed``); None when one of them is not a quantizing
    consumer."""
    found: List[Consumer] = []
    for user in node.users:
        if _order_only(user, node, modules, calls):
            passed.append(user)
            further = _consumers(user, modules, calls, passed)
            if further is None:
                return None
            found += further
            continue
        grid = _consumer_grid(user, node, modules)
        if grid is None or calls[user.target] > 1:
            return None
        found.append((user,) + grid)
    return found or None


def fuse_add_relu(gm: fx.GraphModule) -> List[str]:
    """Folds a ReLU that is the only user of an integer residual add into it;
    returns the adds."""
    modules = dict(gm.named_modules())
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    fused = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or calls[node.target] > 1:
            continue
        add = modules[node.target]
        relu = next(iter(node.users)) if len(node.users) == 1 else None
        if not isinstance(add, QuantizedAdd) or relu is None or not _is_relu(relu, modules) \
                or relu.args[:1] != (node,):
            continue
        add.relu = True
        relu.replace_all_uses_with(node)
        gm.graph.erase_node(relu)
        fused.append(node.target)
    if fused:
        gm.recompile()
    return fused


def _pair(v) -> List[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(e) for e in v]


_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")  # F.max_pool2d's, in order


def _max_pool_uint8(node: fx.Node, modules: Dict[str, nn.Module]) -> MaxPoolUint8:
    if node.op == "call_module":
        mod = modules[node.target]
        params = {k: getattr(mod, k) for k in _POOL_ARGS}
    else:
        params = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
        params.update(zip(_POOL_ARGS, node.args[1:]))
        params.update({k: v for k, v in node.kwargs.items() if k in _POOL_ARGS})
    if params["stride"] is None or params["stride"] == []:  # F.max_pool2d: stride defaults to the kernel
        params["stride"] = params["kernel_size"]
    return MaxPoolUint8(*(_pair(params[k]) for k in _POOL_ARGS[:4]), bool(params["ceil_mode"]))


def _relu6_uint8(grid: ActQuant) -> ClampUint8:
    """ReLU6 on the integers of ``grid``: a clamp to [q(0), q(6)], with q as
    quantize_uint8 computes it."""
    six = torch.ops.torchqat.quantize_uint8(torch.tensor([6.0]), torch.tensor([grid.scale]),
                                            torch.tensor([grid.zero_point]), grid.qmin, grid.qmax)
    return ClampUint8(grid.zero_point, int(six[0]))


def _on_integers(node: fx.Node, grid: ActQuant, gm: fx.GraphModule, modules: Dict[str, nn.Module]) -> None:
    """Swaps an order-only operation for its uint8 version (in place in the graph)."""
    new_mod = _relu6_uint8(grid) if _is_relu6(node, modules) else _max_pool_uint8(node, modules)
    if node.op == "call_module":
        gm.set_submodule(node.target, new_mod)
        modules[node.target] = new_mod
        return
    name = f"{node.name}_uint8"
    gm.add_submodule(name, new_mod)
    modules[name] = new_mod
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, node.args[:1])
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def chain_integer_layers(gm: fx.GraphModule) -> List[str]:
    """Sets the uint8 hand-overs; returns "producer -> consumer" lines."""
    modules = dict(gm.named_modules())
    # A module called from several places has one set of flags: left alone.
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    chained = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not _is_producer(modules[node.target]) or calls[node.target] > 1:
            continue
        passed: List[fx.Node] = []
        found = _consumers(node, modules, calls, passed)
        if found is None:
            continue
        grids = {grid for _, grid, _, _ in found}
        grid = next(iter(grids))
        # The GEMMs' requantizing epilogues clamp to all of [0, 255]; the add quantizes to any grid.
        if len(grids) != 1 or not (grid.is_uint8 or isinstance(modules[node.target], QuantizedAdd)):
            continue
        modules[node.target]._set_output(grid)
        for between in passed:
            _on_integers(between, grid, gm, modules)
        for user, _, consumer, slot in found:
            if isinstance(consumer, QuantizedAdd):
                consumer.set_quantized_input(slot)
            else:
                consumer.input_quantized = True
            chained.append(f"{node.target} -> {user.target}")
    gm.recompile()
    return chained
