"""Physical channel removal: the smaller dense model a channel plan implies.

The model is the engine's: `Workbench.pruned_model(plan)` with its zeros, traced by torch.fx,
with every removed channel taken out where the engine's removal analysis
(`workbench.evaluate.removal`) says it is gone: the layer's weight rows and bias, the BatchNorm
entries on its path, and the input columns of the layers that read it (its *consumers*). Where
the channel's path leaves those zero-keeping operations (a residual addition, a concatenation,
a grouped convolution, the model's output) a `ChannelScatter` puts the kept channels back at
their places among zeros, which is exactly what the engine computes there. So the compacted
model's outputs equal `bench.outputs(plan)` and its parameters are the plan's kept ones.

A plan that cuts only coupled groups (`group` granularity: residual streams, attention heads,
a feed-forward block's neurons) needs no graph: the group names every tensor along its
channels, so its modules are replaced by smaller copies in the model itself. That is how a
model torch.fx cannot trace (a Hugging Face transformer) is compacted.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from math import prod
from typing import Any

import pandas as pd
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.flop_counter import FlopCounterMode

from workbench.errors import WorkbenchError
from workbench.evaluate import Workbench
from workbench.evaluate.groups import shrink_modules
from workbench.pruning.groups import ChannelGroup
from workbench.pruning.plan import PruningPlan

#: Samples the compacted model is checked on against the pruned one before it is returned
#: (few: the tests check every validation sample; this guards each call cheaply).
CHECK_SAMPLES = 4
#: Relative tolerance of that check (the contract: outputs equal the evaluation's to 1e-5).
RTOL = 1e-5

_RESHAPES = {"view", "reshape", torch.reshape}
_ADDS = {operator.add, torch.add}


class ChannelScatter(nn.Module):
    """The kept channels back at their places in a full-width tensor of zeros, or added into
    `base` at their places (a residual addition: `base + scatter(x)` in one pass)."""

    def __init__(self, index: torch.Tensor, size: int, axis: int) -> None:
        super().__init__()
        self.register_buffer("index", index)
        self.size, self.axis = size, axis

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        if base is not None:
            return base.index_add(self.axis, self.index, x)
        shape = list(x.shape)
        shape[self.axis] = self.size
        return x.new_zeros(shape).index_copy_(self.axis, self.index, x)

    def extra_repr(self) -> str:
        return f"{len(self.index)} of {self.size} channels, axis={self.axis}"


class ChannelSelect(nn.Module):
    """Only the kept channels: after a layer whose rows cannot shrink (a grouped convolution)."""

    def __init__(self, index: torch.Tensor, axis: int) -> None:
        super().__init__()
        self.register_buffer("index", index)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(self.axis, self.index)


@dataclass
class Compacted:
    """A physically smaller model equal to the plan's evaluation, and what shrank."""

    model: nn.Module
    shapes: pd.DataFrame  # one row per parameter: shapes and counts before and after
    plan: PruningPlan

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def dense_bytes(self) -> int:
        """Bytes of its parameters and buffers stored densely (no sparse encoding needed)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def flops(self, sample: torch.Tensor) -> int:
        """FLOPs of one call on `sample`, counted as the engine counts the dense model's."""
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            self.model(sample)
        return int(counter.get_total_flops())


def compact(bench: Workbench, plan: PruningPlan, model: nn.Module | None = None) -> Compacted:
    """The plan's model with removed channels physically gone: fewer parameters and FLOPs,
    the same outputs as `bench.outputs(plan)`. For nn.Module models torch.fx can trace.

    model: a trained copy of `bench.pruned_model(plan)` holding its zeros (a recovered model,
    `Recovery.plain_model()`, or the Recovery itself) to compact instead.
    """
    model = copy.deepcopy(plain(model)) if model is not None else bench.pruned_model(plan)
    _refuse_programs(bench)
    sample = bench.val_inputs[:CHECK_SAMPLES]
    alone, groups = bench.removed_channels(plan)
    if not alone:  # only coupled groups (heads, streams): their modules shrink, no graph needed
        before = {name: tuple(p.shape) for name, p in model.named_parameters()}
        small = copy.deepcopy(model)
        _cut_groups(small, groups)
        small.to(sample.device)
        _check(model, small, sample)
        return Compacted(small, _shapes(before, small), plan)
    gm = _traced(bench, model)
    before = {name: tuple(p.shape) for name, p in gm.named_parameters()}
    _cut_groups(gm, groups)  # coupled channels: every tensor along them shrinks at once
    ShapeProp(gm).propagate(sample[:2])
    nodes = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    rows: dict[str, torch.Tensor] = {}  # module: kept output rows (layers and norms)
    cols: dict[str, torch.Tensor] = {}  # module: kept input columns (consumers)
    for k, (name, gone) in enumerate(alone.items()):
        keep = ~gone
        if not keep.any():  # no layer has zero outputs: one channel of zeros stays, exactly 0
            keep[0] = True
        _remove(gm, bench, nodes[name], keep, rows, cols, k)
    shrink_modules(gm, rows, cols)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    gm.to(sample.device)  # the index buffers added here, where the model runs
    _check(model, gm, sample)
    return Compacted(gm, _shapes(before, gm), plan)


def _shapes(before: dict[str, tuple[int, ...]], small: nn.Module) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "tensor": name,
                "before": "×".join(map(str, before[name])),
                "after": "×".join(map(str, p.shape)),
                "params_before": prod(before[name]),
                "params_after": p.numel(),
            }
            for name, p in small.named_parameters()
        ]
    )


def plain(model: Any) -> nn.Module:
    """A model with plain parameters: a Recovery's `plain_model()`, or the module itself."""
    return model.plain_model() if hasattr(model, "plain_model") else model


_BECAUSE = "not available for this model, because"


def _refuse_programs(bench: Workbench) -> None:
    because = _BECAUSE
    if isinstance(bench.model, torch.jit.ScriptModule):
        raise WorkbenchError(
            f"compaction is {because} it is a TorchScript program: its layers are compiled "
            "operations, not nn.Module layers that can be rebuilt smaller"
        )
    if isinstance(bench.model, fx.GraphModule):
        raise WorkbenchError(
            f"compaction is {because} it is a graph program (a torch.export .pt2): its layers "
            "are operations on constants, not nn.Module layers; load the weights on their "
            "architecture (.safetensors with --arch) to compact it"
        )


def _traced(bench: Workbench, model: nn.Module) -> fx.GraphModule:
    because = _BECAUSE
    try:
        gm = fx.symbolic_trace(model)
    except Exception as error:  # tracing fails in many ways on arbitrary code
        raise WorkbenchError(
            f"compaction is {because} torch.fx cannot trace it ({type(error).__name__}): "
            "data-dependent control flow in forward"
        ) from None
    calls = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    for layer in bench.prunable_layers:
        if calls.count(layer.name) != 1:
            raise WorkbenchError(
                f"compaction is {because} its layer {layer.name!r} is "
                + (
                    "called more than once in forward (a shared weight)"
                    if calls.count(layer.name)
                    else "not called as a module in forward (it runs inside another module, "
                    "such as nn.MultiheadAttention's out_proj, or as a functional call)"
                )
            )
    return gm


def _cut_groups(gm: nn.Module, groups: list[tuple[ChannelGroup, torch.Tensor]]) -> None:
    """Take each group's removed channels out of its members' rows, its norms' entries and
    its consumers' input columns: the whole coupled stream narrows, no scatter needed."""
    rows: dict[str, torch.Tensor] = {}
    cols: dict[str, torch.Tensor] = {}
    for group, removed in groups:
        if removed.all():  # no layer has zero outputs: one channel of zeros stays, exactly 0
            removed = removed.clone()
            removed[0] = False
        kept_rows, kept_cols = group.kept(removed)
        rows |= kept_rows
        for name, keep in kept_cols.items():
            cols[name] = _and(cols.get(name), keep)
    shrink_modules(gm, rows, cols)


def _remove(
    gm: fx.GraphModule,
    bench: Workbench,
    start: fx.Node,
    keep: torch.Tensor,
    rows: dict[str, torch.Tensor],
    cols: dict[str, torch.Tensor],
    k: int,
) -> None:
    """Take one layer's removed channels out along its path; scatter them back where it ends."""
    removal = bench.channel_removal(str(start.target))
    modules = dict(gm.named_modules())
    layer = modules[str(start.target)]
    out_dims = len(_shape(start))
    axis = 1 if isinstance(layer, nn.modules.conv._ConvNd) or out_dims == 2 else -1
    index = keep.nonzero().flatten()
    norms = {n.rsplit(".", 1)[0] for n in removal.zeroed} - {str(start.target)}
    consumers = dict(removal.consumers)
    targets = [n for n in gm.graph.nodes if n.op == "call_module" and n.target in norms]
    path = _path(start, targets + [n for n in gm.graph.nodes if n.target in consumers])
    path |= set(targets)
    if getattr(layer, "groups", 1) > 1:  # its rows stay: select the kept channels after it
        name = f"ship_select_{k}"
        gm.add_submodule(name, ChannelSelect(index, axis))
        with gm.graph.inserting_after(start):
            select = gm.graph.call_module(name, (start,))
        select.meta = dict(start.meta)
        for user in list(start.users):
            if user is not select and (user in path or user.target in consumers):
                user.replace_input_with(start, select)
        start = select
    else:
        rows[str(start.target)] = keep
    for norm in norms:
        rows[norm] = keep
    blocks = {start: 1}
    for node in gm.graph.nodes:  # graph order: a node's path input is placed first
        if node in path:
            source = next(a for a in node.all_input_nodes if a in blocks)
            blocks[node] = _block(node, source, blocks[source])
    for i, (node, block) in enumerate(list(blocks.items())):
        full = index if block == 1 else (index[:, None] * block + torch.arange(block)).flatten()
        if node.op != "call_module" or node.target not in consumers:
            size = len(keep) * block
            _scatter_exits(gm, node, path, set(blocks), consumers, full, size, axis, f"{k}_{i}")
        for user in node.users:
            if user.op == "call_module" and user.target in consumers and user.args[0] is node:
                cols[str(user.target)] = _and(cols.get(str(user.target)), _columns(keep, block))


def _path(start: fx.Node, targets: list[fx.Node]) -> set[fx.Node]:
    """Tensor nodes after `start` and before a target: the channel's zero-keeping path."""
    after, stack = set(), [start]
    while stack:
        for user in stack.pop().users:
            if user not in after:
                after.add(user)
                stack.append(user)
    before, stack = set(), list(targets)
    while stack:
        for arg in stack.pop().all_input_nodes:
            if arg not in before:
                before.add(arg)
                stack.append(arg)
    return {n for n in after & before if "tensor_meta" in n.meta and n not in targets}


def _block(node: fx.Node, source: fx.Node, block: int) -> int:
    """Values per channel along the channel axis of `node`'s output."""
    before, after = _shape(source), _shape(node)
    if len(after) == 2 and len(before) > 2:  # a flatten: channel c is a run of H·W features
        if node.op != "call_module" and node.target in _RESHAPES:
            node.op, node.target = "call_function", torch.flatten
            node.args, node.kwargs = (source, 1), {}
        return block * prod(before[2:])
    return block


def _scatter_exits(
    gm: fx.GraphModule,
    node: fx.Node,
    path: set[fx.Node],
    shrunk: set[fx.Node],
    consumers: dict[str, int],
    index: torch.Tensor,
    size: int,
    axis: int,
    tag: str,
) -> None:
    exits = [
        u
        for u in node.users
        if u not in path
        and not (u.op == "call_module" and u.target in consumers and u.args[0] is node)
        and not (u.op == "call_method" and u.target == "size" and u.args[1:] == (0,))
    ]
    name = f"ship_scatter_{tag}"
    for user in [u for u in exits if _residual_add(u, node, shrunk)]:
        exits.remove(user)
        base = next(a for a in user.args if a is not node)
        gm.add_submodule(f"{name}_{len(exits)}", ChannelScatter(index, size, axis))
        with gm.graph.inserting_before(user):
            added = gm.graph.call_module(f"{name}_{len(exits)}", (node, base))
        added.meta = dict(user.meta)
        user.replace_all_uses_with(added)
        gm.graph.erase_node(user)
    if not exits:
        return
    gm.add_submodule(name, ChannelScatter(index, size, axis))
    with gm.graph.inserting_after(node):
        scatter = gm.graph.call_module(name, (node,))
    scatter.meta = dict(node.meta)  # the full-width shape ShapeProp saw
    for user in exits:
        user.replace_input_with(node, scatter)


def _residual_add(user: fx.Node, node: fx.Node, shrunk: set[fx.Node]) -> bool:
    """`node + other` (no broadcast, other full width): scatter-added into `other` at once."""
    if user.op != "call_function" or user.target not in _ADDS or user.kwargs:
        return False
    if len(user.args) != 2 or user.args[0] is user.args[1]:
        return False
    other = user.args[1] if user.args[0] is node else user.args[0]
    return (
        isinstance(other, fx.Node)
        and other not in shrunk
        and "tensor_meta" in other.meta
        and "tensor_meta" in user.meta
        and _shape(other) == _shape(user)
    )


def _columns(keep: torch.Tensor, block: int) -> torch.Tensor:
    return keep.repeat_interleave(block)


def _and(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else a & b


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape)


def _check(pruned: nn.Module, compacted: nn.Module, sample: torch.Tensor) -> None:
    with torch.no_grad():
        want, got = pruned(sample), compacted(sample)
    scale = want.abs().max().clamp_min(1e-12)
    if not torch.allclose(got, want, rtol=RTOL, atol=RTOL * float(scale)):
        # A bug, not a user error: the removal analysis and this rebuild disagree.
        raise AssertionError(f"compacted outputs differ by {(got - want).abs().max():.3g}")
