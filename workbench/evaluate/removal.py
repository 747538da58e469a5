"""What removing a layer's output channel removes, found in the model's graph.

The definition the engine evaluates and counts: a removed channel's whole contribution is gone.

- its weight rows are zeroed (the mask equals `torch.nn.utils.prune.ln_structured`'s);
- its bias entry is zeroed;
- a BatchNorm on the channel's path (reached through operations that keep a zero channel zero:
  ReLU-like activations, dropout, pooling, flatten) gets the channel's scale, shift and running
  mean zeroed, so it outputs exactly 0 there instead of its shift;
- a layer that reads the channel only through such operations (the *consumer*) has input
  columns that always multiply zero: they count as removed in its size and FLOPs.

A path through any other operation (an addition, a concatenation, a sigmoid) keeps the channel
alive there: nothing after it counts as removed. Models the engine runs whole (not traceable)
get their biases zeroed only. The output layers (those whose outputs reach the model's output
without another prunable layer) are the model's outputs: their channels are not removable.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from workbench.evaluate.graph import GraphRunner
from workbench.pruning.layers import PRUNABLE_MODULES, PrunableLayer, weight_use

_aten = torch.ops.aten

# Operations f with f(0) = 0 elementwise, so a zero channel stays zero, in place.
_ZERO_KEEPING_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.Tanh,
    nn.SiLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Mish,
    nn.Hardswish,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Identity,
)
_ZERO_KEEPING_FUNCTIONS = {
    torch.relu,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.gelu,
    torch.tanh,
    F.tanh,
    F.silu,
    F.elu,
    F.selu,
    F.mish,
    F.hardswish,
    F.dropout,
    _aten.relu.default,
    _aten.gelu.default,
    _aten.tanh.default,
    _aten.silu.default,
    _aten.clone.default,
    _aten.dropout.default,
}
_ZERO_KEEPING_METHODS = {"relu", "tanh", "contiguous", "clone"}
_POOL_METHODS = {"mean", "amax"}
# Per-channel pooling and means: a channel of zeros pools to zeros.
_POOL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_POOL_FUNCTIONS = {
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    torch.mean,
    _aten.max_pool2d.default,
    _aten.avg_pool2d.default,
    _aten.adaptive_avg_pool2d.default,
    _aten.mean.dim,
}
_RESHAPE_FUNCTIONS = {
    torch.flatten,
    torch.reshape,
    _aten.view.default,
    _aten.reshape.default,
    _aten.flatten.using_ints,
}
_RESHAPE_METHODS = {"flatten", "view", "reshape"}
# Functional BatchNorm, with the positions of (weight, bias, running_mean) among its arguments.
_BATCH_NORM_FUNCTIONS: dict[Any, tuple[int, int, int]] = {
    F.batch_norm: (3, 4, 1),
    _aten.batch_norm.default: (1, 2, 3),
    _aten._native_batch_norm_legit_no_training.default: (1, 2, 3),
}


@dataclass(frozen=True)
class ChannelRemoval:
    """What removing output channels of one layer touches besides its weight rows."""

    layer: str
    #: Per-channel tensors zeroed with the channel (its bias; a BatchNorm's weight, bias and
    #: running mean), by parameter or buffer name.
    zeroed: tuple[str, ...] = ()
    #: (consumer layer, inputs per channel): channel c is the consumer's weight columns
    #: [c·k, (c+1)·k) along dim 1.
    consumers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class _Track:
    node: fx.Node
    axis: int  # the channel axis of the value: 1, or -1 for a Linear applied along the last dim
    block: int  # values per channel along that axis once flattened (1 before any flatten)


def analyse(
    runner: GraphRunner, layers: list[PrunableLayer], sample: torch.Tensor
) -> tuple[dict[str, ChannelRemoval], frozenset[str]]:
    """Per layer, what its channels' removal touches; and the model's output layers."""
    if runner.graph_module is None:
        return _analyse_whole(runner, layers, sample)
    shapes: dict[fx.Node, tuple[int, ...]] = {}

    def record(node: fx.Node, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            shapes[node] = tuple(value.shape)
        elif isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
            shapes[node] = tuple(value[0].shape)  # e.g. max_pool2d_with_indices, native BN

    with torch.no_grad():
        runner.run({"input": sample}, 0, runner.end, {}, node_hook=record)
    gm = runner.graph_module
    modules = dict(gm.named_modules())
    by_node = _layer_nodes(runner, layers, modules)
    removals = {}
    for layer in layers:
        nodes = [n for n, lay in by_node.items() if lay.name == layer.name]
        zeroed: list[str] = []
        consumers: dict[str, int] = {}
        for node in nodes:
            bias = _bias_of(node, modules)
            if bias is not None and bias not in zeroed:
                zeroed.append(bias)
            if len(nodes) == 1:  # a weight used twice: its users are not one channel's path
                _follow(node, layer, shapes, modules, by_node, zeroed, consumers)
        removals[layer.name] = ChannelRemoval(layer.name, tuple(zeroed), tuple(consumers.items()))
    return removals, _output_layers(runner, by_node)


def _layer_nodes(
    runner: GraphRunner, layers: list[PrunableLayer], modules: dict[str, nn.Module]
) -> dict[fx.Node, PrunableLayer]:
    by_weight = {layer.weight_name: layer for layer in layers}
    found = {}
    for node in runner.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], PRUNABLE_MODULES):
            layer = by_weight.get(f"{node.target}.weight")
        else:
            use = weight_use(node)
            layer = by_weight.get(use.target) if use is not None else None
        if layer is not None:
            found[node] = layer
    return found


def _bias_of(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    if node.op == "call_module":
        return f"{node.target}.bias" if modules[node.target].bias is not None else None
    index = 0 if node.target is _aten.addmm.default else 2  # addmm(bias, input, weight.t())
    bias = node.kwargs.get("bias", node.args[index] if len(node.args) > index else None)
    if isinstance(bias, fx.Node) and bias.op == "get_attr":
        return str(bias.target)
    return None


def _follow(
    start: fx.Node,
    layer: PrunableLayer,
    shapes: dict[fx.Node, tuple[int, ...]],
    modules: dict[str, nn.Module],
    by_node: dict[fx.Node, PrunableLayer],
    zeroed: list[str],
    consumers: dict[str, int],
) -> None:
    """Walk the users of a layer's output along zero-keeping operations."""
    if start not in shapes:
        return
    out_shape = shapes[start]
    axis = 1 if layer.kind.startswith("Conv") or len(out_shape) == 2 else -1
    stack = [_Track(start, axis, 1)]
    seen = set()
    while stack:
        track = stack.pop()
        if track.node in seen:
            continue
        seen.add(track.node)
        for user in track.node.users:
            if user in by_node:
                _consume(track, user, by_node[user], shapes, consumers)
                continue
            nxt = _step(track, user, layer, shapes, modules, zeroed)
            if nxt is not None:
                stack.append(nxt)


def _consume(
    track: _Track,
    node: fx.Node,
    consumer: PrunableLayer,
    shapes: dict[fx.Node, tuple[int, ...]],
    consumers: dict[str, int],
) -> None:
    use = weight_use(node)
    index = use.input_index if use is not None else 0
    if len(node.args) <= index or node.args[index] is not track.node:
        return  # the value is the consumer's weight or bias, not its input
    shape = shapes[track.node]
    if consumer.kind == "Linear":
        along_last = track.axis == -1 or len(shape) == 2
        if along_last and shape[-1] == consumer.shape[1]:
            consumers[consumer.name] = track.block
    elif consumer.groups == 1 and track.axis == 1 and track.block == 1:
        consumers[consumer.name] = 1


def _step(
    track: _Track,
    node: fx.Node,
    layer: PrunableLayer,
    shapes: dict[fx.Node, tuple[int, ...]],
    modules: dict[str, nn.Module],
    zeroed: list[str],
) -> _Track | None:
    """The channel's track through `node`, or None where the channel stops being zero."""
    if node.op == "call_function" and node.target is operator.getitem:
        # The values of a (values, indices) or native BatchNorm tuple.
        return _Track(node, track.axis, track.block) if node.args[1] == 0 else None
    if not node.args or node.args[0] is not track.node or node not in shapes:
        return None
    module = modules.get(node.target) if node.op == "call_module" else None
    before, after = shapes[track.node], shapes[node]
    channel_first = track.axis == 1 and track.block == 1 and len(before) >= 2
    if (
        isinstance(module, _ZERO_KEEPING_MODULES)
        or (node.op == "call_function" and node.target in _ZERO_KEEPING_FUNCTIONS)
        or (node.op == "call_method" and node.target in _ZERO_KEEPING_METHODS)
        or (isinstance(module, nn.Hardtanh) and module.min_val <= 0 <= module.max_val)
    ):
        return _Track(node, track.axis, track.block) if after == before else None
    if (
        isinstance(module, _POOL_MODULES)
        or (node.op == "call_function" and node.target in _POOL_FUNCTIONS)
        or (node.op == "call_method" and node.target in _POOL_METHODS)
    ):
        keeps_channels = channel_first and after[:2] == before[:2]
        return _Track(node, 1, 1) if keeps_channels else None
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if not channel_first or module.num_features != before[1]:
            return None
        for name in ("weight", "bias", "running_mean"):
            if getattr(module, name) is not None:
                zeroed.append(f"{node.target}.{name}")
        return _Track(node, 1, 1)
    if node.op == "call_function" and node.target in _BATCH_NORM_FUNCTIONS:
        if not channel_first:
            return None
        for position in _BATCH_NORM_FUNCTIONS[node.target]:
            arg = node.args[position] if len(node.args) > position else None
            if not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
                return None  # a BatchNorm we cannot zero: the channel outputs its shift
            zeroed.append(str(arg.target))
        return _Track(node, 1, 1)
    reshape = isinstance(module, nn.Flatten) or (
        (node.op == "call_function" and node.target in _RESHAPE_FUNCTIONS)
        or (node.op == "call_method" and node.target in _RESHAPE_METHODS)
    )
    if reshape:
        if after == before:
            return _Track(node, track.axis, track.block)
        flattens = (
            channel_first
            and len(after) == 2
            and after[0] == before[0]
            and after[1] == prod(before[1:])
        )
        return _Track(node, 1, prod(before[2:])) if flattens else None
    return None


def _output_layers(runner: GraphRunner, by_node: dict[fx.Node, PrunableLayer]) -> frozenset[str]:
    """Layers whose outputs reach the model's output without passing another prunable layer."""
    output = next(n for n in reversed(runner.nodes) if n.op == "output")
    found, stack, seen = set(), [output], set()
    leaf_layers = {}  # a leaf module running a prunable layer inside (attention's out_proj)
    for node in runner.nodes:
        if node.op == "call_module" and node not in by_node:
            prefix = f"{node.target}."
            inner = [lay.name for lay in by_node.values() if lay.weight_name.startswith(prefix)]
            if inner:
                leaf_layers[node] = inner
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in by_node:
            found.add(by_node[node].name)
            continue
        if node in leaf_layers:
            found.update(leaf_layers[node])
            continue
        stack.extend(node.all_input_nodes)
    return frozenset(found)


def _analyse_whole(
    runner: GraphRunner, layers: list[PrunableLayer], sample: torch.Tensor
) -> tuple[dict[str, ChannelRemoval], frozenset[str]]:
    # No graph: biases only; the output layer is the last one to run, if it makes the output.
    params = dict(runner.model.named_parameters())
    removals = {
        layer.name: ChannelRemoval(
            layer.name, (f"{layer.name}.bias",) if f"{layer.name}.bias" in params else ()
        )
        for layer in layers
    }
    ran: list[tuple[PrunableLayer, tuple[int, ...]]] = []
    with torch.no_grad():
        output = runner.run(
            {"input": sample},
            0,
            runner.end,
            {},
            layer_hook=lambda layer, _x, out: ran.append((layer, tuple(out.shape))),
        )
    out = output if isinstance(output, torch.Tensor) else None
    if ran and out is not None and prod(ran[-1][1]) == out.numel():
        return removals, frozenset({ran[-1][0].name})
    return removals, frozenset()
