"""Integer activations between layers: on a torch.fx graph, an integer layer
whose every consumer quantizes its output onto one uint8 grid (the next conv
(depthwise too) or linear, a W4A8 linear, or an operand of a residual add) requantizes in its
epilogue and hands over uint8; the consumers skip their quantization. The integers are
those the consumers would have computed from a float output (up to the float
rounding of the accumulator's scaling)."""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

from torch import fx, nn

from .layers import ActQuant, Int4Linear, Int8Conv2d, Int8DepthwiseConv2d, Int8Linear, QuantizedAdd

_INTEGER = (Int8Linear, Int8Conv2d, Int8DepthwiseConv2d)


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
    takes_uint8 = isinstance(mod, _INTEGER) or (isinstance(mod, Int4Linear) and mod.integer_input)
    if takes_uint8 and slots[0] == 0 and len(user.args) == 1:
        return mod.in_act, mod, 0
    if isinstance(mod, QuantizedAdd):
        grid = mod.operand_grid(slots[0])
        return None if grid is None else (grid, mod, slots[0])
    return None


def chain_integer_layers(gm: fx.GraphModule) -> List[str]:
    """Sets the uint8 hand-overs; returns "producer -> consumer" lines."""
    modules = dict(gm.named_modules())
    # A module called from several places has one set of flags: left alone.
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    chained = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _INTEGER) or not node.users \
                or calls[node.target] > 1:
            continue
        found = [_consumer_grid(u, node, modules) for u in node.users]
        if any(f is None or calls[u.target] > 1 for f, u in zip(found, node.users)):
            continue
        grids = {f[0] for f in found}
        if len(grids) != 1 or not next(iter(grids)).is_uint8:
            continue
        modules[node.target]._set_output(found[0][0])
        for (grid, consumer, slot), user in zip(found, node.users):
            if isinstance(consumer, QuantizedAdd):
                consumer.set_quantized_input(slot)
            else:
                consumer.input_quantized = True
            chained.append(f"{node.target} -> {user.target}")
    return chained
