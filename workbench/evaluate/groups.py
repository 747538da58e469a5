"""Finding coupled channel groups: Torch-Pruning's dependency graph, checked on the data.

`torch_pruning.DependencyGraph` follows a model's autograd graph and says which layers' output
channels must go together (its *groups*: residual additions, depthwise convolutions, the
BatchNorms and the next layers' input columns on the way). The engine evaluates a group's
removal as masks (rows, biases and BatchNorm entries zeroed), so a group is only taken when
that evaluation is the removal: the model with half of the group's channels zeroed must give
the same outputs as the model with them physically cut out of every tensor the group names
(`shrink_modules`), on validation samples. A group that fails (a channel that passes a
LayerNorm, a sigmoid, the model's output, a grouped convolution) is not taken, and its layers
are pruned alone with the reason given.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping

import torch
from torch import fx, nn

from workbench.evaluate.heads import attention_heads, feed_forward, fit_attention
from workbench.evaluate.modelling import private_copy
from workbench.pruning.groups import ChannelGroup, ChannelGroups, Coupling
from workbench.pruning.layers import PrunableLayer, is_hf_conv1d

#: Relative tolerance of the removal check (the engine's contract: 1e-5 of the outputs).
RTOL = 1e-5
#: Samples the removal check runs on.
CHECK_SAMPLES = 4

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def find_groups(
    model: nn.Module,
    layers: list[PrunableLayer],
    sample: torch.Tensor,
    output_layers: frozenset[str],
) -> ChannelGroups:
    """The model's channel groups (members in the order of `layers`, execution order), each
    checked to be removable as masks; and why the other layers' channels are cut alone. A
    group of one layer is kept too: it knows consumers the engine's own analysis does not
    follow (input columns after a concatenation)."""
    names = [layer.name for layer in layers]
    if isinstance(model, (torch.jit.ScriptModule, fx.GraphModule)):
        why = (
            "this is a compiled program (TorchScript or torch.export): its layers are "
            "operations, not modules the dependency graph can follow"
        )
        return ChannelGroups(alone=dict.fromkeys(names, why))
    modules = dict(model.named_modules())
    if any(
        not (isinstance(modules.get(name), _LAYERS) or is_hf_conv1d(modules.get(name)))
        for name in names
    ):
        why = "some layers run as functional calls, which the dependency graph cannot follow"
        return ChannelGroups(alone=dict.fromkeys(names, why))
    work = private_copy(model).cpu().eval()
    inputs = sample[:CHECK_SAMPLES].detach().cpu()
    by_name = {layer.name: layer for layer in layers}
    # Attention heads first: the dependency graph sees q and k meet in a matmul, not heads.
    heads, alone = _checked(work, attention_heads(work, by_name), inputs)
    taken = {name for group in heads for name in group.names} | set(alone)

    def without_graph(why: str) -> ChannelGroups:
        """The heads, and the feed-forward blocks found by their layout; the rest alone."""
        blocks = [g for g in feed_forward(work, by_name) if not taken & set(g.names)]
        ffn, failed = _checked(work, blocks, inputs)
        cut = taken | {n for g in ffn for n in g.names} | set(failed)
        rest = {n: why for n in names if n not in cut}
        return ChannelGroups(tuple(heads + ffn), alone | failed | rest)

    try:
        import torch_pruning as tp
    except ImportError:
        return without_graph("Torch-Pruning is not installed (pip install torch-pruning)")

    for param in work.parameters():
        param.requires_grad_(True)  # the dependency graph follows autograd
    try:
        with warnings.catch_warnings(), torch.enable_grad():  # callers may be under no_grad
            warnings.simplefilter("ignore")
            graph = tp.DependencyGraph().build_dependency(work, example_inputs=inputs[:2])
            found = list(graph.get_all_groups(root_module_types=_LAYERS))
    except Exception as error:  # tracing arbitrary code fails in many ways
        return without_graph(f"Torch-Pruning cannot trace the model ({type(error).__name__})")
    for param in work.parameters():
        param.requires_grad_(False)

    module_names = {module: name for name, module in work.named_modules()}
    order = {name: i for i, name in enumerate(names)}
    groups = list(heads)
    for tp_group in found:
        if taken & set(_member_names(tp_group, graph, module_names, by_name)):
            continue  # the heads' projections: grouped by head above
        group, why = _group(tp_group, graph, tp, module_names, by_name, order, output_layers)
        if group is None and why is None:
            continue  # a layer on its own: nothing couples it
        if group is not None:
            why = _check_removal(work, group, inputs)
        if why is not None:
            for name in _member_names(tp_group, graph, module_names, by_name):
                alone[name] = why
        else:
            groups.append(group)
    return ChannelGroups(tuple(groups), alone)


def _member_names(tp_group, graph, module_names, by_name) -> list[str]:
    return [
        module_names[item.dep.target.module]
        for item in tp_group.items
        if graph.is_out_channel_pruning_fn(item.dep.handler)
        and module_names.get(item.dep.target.module) in by_name
    ]


def _group(
    tp_group,
    graph,
    tp,
    module_names: Mapping[nn.Module, str],
    by_name: Mapping[str, PrunableLayer],
    order: Mapping[str, int],
    output_layers: frozenset[str],
) -> tuple[ChannelGroup | None, str | None]:
    """Our plain form of one Torch-Pruning group, or (None, why) where it cannot be one."""
    kinds = tp.ops.OPTYPE
    passing = {kinds.ELEMENTWISE, kinds.CONCAT, kinds.SPLIT, kinds.RESHAPE}
    members, zeroed, consumers = [], [], []
    channels = len(tp_group.items[0].idxs)
    for item in tp_group.items:
        node, handler = item.dep.target, item.dep.handler
        module = node.module
        name = module_names.get(module) if isinstance(module, nn.Module) else None
        index = torch.tensor(list(item.idxs), dtype=torch.long)
        root = torch.tensor(list(item.root_idxs), dtype=torch.long)
        out = graph.is_out_channel_pruning_fn(handler)
        if name in by_name:
            layer = by_name[name]
            if out:
                members.append(Coupling(name, index, root, layer.shape[0]))
                if getattr(module, "bias", None) is not None:
                    zeroed.append(Coupling(f"{name}.bias", index, root, layer.shape[0]))
            else:
                consumers.append(Coupling(name, index, root, layer.shape[1]))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and out:
            for tensor in ("weight", "bias", "running_mean"):
                if getattr(module, tensor, None) is not None:
                    size = module.num_features
                    zeroed.append(Coupling(f"{name}.{tensor}", index, root, size))
        elif node.type not in passing:
            return None, (
                f"its channels pass a {type(module).__name__}"
                + (f" ({name})" if name else "")
                + ", which a removed channel does not leave unchanged"
            )
    if not members or (len(members) == 1 and members[0].name in output_layers):
        return None, None  # an output layer keeps its channels: nothing to group
    inside = {m.name for m in members}  # a depthwise convolution reads its own channels
    consumers = [c for c in consumers if c.name not in inside]
    members.sort(key=lambda m: order[m.name])
    for member in members:
        layer = by_name[member.name]
        if member.name in output_layers:
            return None, f"they reach the model's outputs through {member.name}"
        if layer.groups > 1 and not layer.groups == layer.shape[0] == channels:
            return None, f"{member.name} is a grouped convolution: its channels go by groups"
        covered = torch.zeros(layer.shape[0], dtype=torch.long)
        covered[member.index] += 1
        roots = torch.zeros(channels, dtype=torch.long)
        roots[member.root] += 1
        if layer.shape[0] != channels or not (covered == 1).all() or not (roots == 1).all():
            return None, f"only some of {member.name}'s channels are coupled with the others'"
    for consumer in consumers:
        layer = by_name[consumer.name]
        if layer.groups > 1:
            return None, f"the grouped convolution {consumer.name} reads them"
    group = ChannelGroup(channels, tuple(members), tuple(zeroed), tuple(consumers))
    return group, None


def _checked(
    model: nn.Module, groups: list[ChannelGroup], inputs: torch.Tensor
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The groups whose removal check passes, and {layer: why} for the members of the others."""
    kept, alone = [], {}
    for group in groups:
        why = _check_removal(model, group, inputs)
        if why is None:
            kept.append(group)
        else:
            alone |= dict.fromkeys(group.names, why)
    return kept, alone


def _check_removal(model: nn.Module, group: ChannelGroup, inputs: torch.Tensor) -> str | None:
    """None when zeroing half of the group's channels gives the outputs of cutting them out;
    else why not."""
    removed = torch.arange(group.channels) % 2 == 1
    masked = copy.deepcopy(model)
    with torch.no_grad():
        tensors = {**dict(masked.named_parameters()), **dict(masked.named_buffers())}
        for member in group.members:
            rows = member.removed(removed)
            weight = tensors[f"{member.name}.weight"]
            (weight.t() if is_hf_conv1d(masked.get_submodule(member.name)) else weight)[rows] = 0.0
        for coupling in group.zeroed:
            tensors[coupling.name][coupling.removed(removed)] = 0.0
        want = masked(inputs)
    shrunk = copy.deepcopy(masked)
    shrink_modules(shrunk, *group.kept(removed))
    try:
        with torch.no_grad():
            got = shrunk(inputs)
    except RuntimeError as error:  # a shape the group did not account for
        return f"cutting them out breaks the model ({str(error).splitlines()[0][:80]})"
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return "cutting them out changes the model's outputs' shape"
    scale = float(want.abs().max().clamp_min(1e-12))
    if not torch.allclose(got, want, rtol=RTOL, atol=RTOL * scale):
        return (
            "zeroing them is not the same as removing them (a channel passes an operation that "
            "does not keep zeros zero, such as a sigmoid, a LayerNorm or a bias added later)"
        )
    return None


def shrink_modules(
    model: nn.Module, rows: Mapping[str, torch.Tensor], cols: Mapping[str, torch.Tensor]
) -> None:
    """Replace modules by smaller copies in place: `rows[name]` (bool, True = kept) selects
    the output entries of every per-channel tensor of module `name` (weight rows, bias,
    BatchNorm weight/bias/running statistics), `cols[name]` the weight's input columns."""
    for name in {*rows, *cols}:
        old = model.get_submodule(name)
        new = copy.deepcopy(old)
        keep_rows, keep_cols = rows.get(name), cols.get(name)
        buffers = dict(old.named_buffers(recurse=False))
        conv1d = is_hf_conv1d(old)  # transformers' Conv1D stores its weight (in, out)
        with torch.no_grad():
            for tensor_name, tensor in [
                *old.named_parameters(recurse=False),
                *buffers.items(),
            ]:
                if tensor is None or tensor.dim() == 0:  # num_batches_tracked
                    continue
                value = tensor.detach()
                depthwise = isinstance(old, nn.modules.conv._ConvNd) and old.groups > 1
                stored_t = conv1d and tensor_name == "weight"  # its rows are columns
                if stored_t:
                    value = value.t()
                if keep_rows is not None:
                    value = value[keep_rows.to(value.device)]
                if keep_cols is not None and tensor_name == "weight" and not depthwise:
                    value = value[:, keep_cols.to(value.device)]
                if stored_t:
                    value = value.t()
                if tensor_name in buffers:
                    new.register_buffer(tensor_name, value.clone())
                else:
                    setattr(new, tensor_name, nn.Parameter(value.clone(), requires_grad=False))
        _resize(new, keep_rows, conv1d)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    fit_attention(model)


def _resize(module: nn.Module, keep_rows: torch.Tensor | None, conv1d: bool = False) -> None:
    """The size attributes a module's repr (and forward) read, from its new weight."""
    weight = module.weight
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = weight.shape
    elif conv1d:
        module.nx, module.nf = weight.shape
    elif isinstance(module, nn.modules.conv._ConvNd):
        if module.groups > 1 and keep_rows is not None:  # depthwise: one group per channel
            module.groups = weight.shape[0]
        module.out_channels = weight.shape[0]
        module.in_channels = weight.shape[1] * module.groups
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = weight.shape[0]
