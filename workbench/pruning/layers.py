"""Finding the prunable layers of any model: by module type, or by the operation using a weight."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from math import prod

import torch
from torch import nn

# Modules whose `weight` we prune, with the functional operation that consumes it.
PRUNABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# Graph operations (call_function targets) whose second argument is a prunable weight. Models
# that lost their module types (a loaded torch.export program, a traced graph) are served by these.
_aten = torch.ops.aten
WEIGHT_OPS: dict[object, str] = {
    torch.nn.functional.linear: "Linear",
    torch.nn.functional.conv1d: "Conv1d",
    torch.nn.functional.conv2d: "Conv2d",
    torch.nn.functional.conv3d: "Conv3d",
    _aten.linear.default: "Linear",
    _aten.conv1d.default: "Conv1d",
    _aten.conv2d.default: "Conv2d",
    _aten.conv3d.default: "Conv3d",
    # Decomposed programs (ep.run_decompositions(), core ATen): the kind follows the weight's
    # rank for convolution; addmm/mm read a Linear weight through a transpose (see weight_use).
    _aten.convolution.default: "Conv",
    _aten.addmm.default: "Linear",
    _aten.mm.default: "Linear",
}

# Where each operation reads its activation and its weight, when not (input, weight, ...).
_ARG_POSITIONS: dict[object, tuple[int, int]] = {
    _aten.addmm.default: (1, 2),  # addmm(bias, input, weight.t())
    _aten.mm.default: (0, 1),  # mm(input, weight.t())
}
# Operations that hand addmm/mm a Linear weight transposed: t(w), permute(w, [1, 0]), transpose.
_TRANSPOSES = {
    _aten.t.default,
    _aten.permute.default,
    _aten.transpose.int,
    _aten.numpy_T.default,
}
# The weight rank of each layer kind (TorchScript keeps a module type only as `original_name`).
_WEIGHT_RANK = {"Linear": 2, "Conv1d": 3, "Conv2d": 4, "Conv3d": 5}


@dataclass(frozen=True)
class WeightUse:
    """A graph node's use of a prunable weight: which attribute, and where its activation is."""

    target: str  # the get_attr target, e.g. "features.0.weight"
    kind: str  # "Linear", "Conv", "Conv2d", ...
    input_index: int  # position of the activation among the node's arguments
    groups: int
    #: addmm/mm reading the weight as stored, (in, out): transformers' Conv1D, whose layer
    #: module discovery finds (`PrunableLayer.transposed`); never a layer found by graph alone.
    transposed: bool = False


def weight_use(node: torch.fx.Node) -> WeightUse | None:
    """The prunable weight a call_function node reads, or None."""
    if node.op != "call_function" or node.target not in WEIGHT_OPS:
        return None
    input_index, weight_index = _ARG_POSITIONS.get(node.target, (0, 1))
    if len(node.args) <= weight_index:
        return None
    weight = node.args[weight_index]
    transposed = False
    if node.target in _ARG_POSITIONS:
        # A Linear weight is read through a plain 2-D transpose; a Conv1D's as stored (in, out).
        # Any other matrix product (attention scores, a user's own matmul) is no layer.
        if isinstance(weight, torch.fx.Node) and _is_transpose(weight):
            weight = weight.args[0]
        else:
            transposed = True
    if not isinstance(weight, torch.fx.Node) or weight.op != "get_attr":
        return None
    if node.target is _aten.convolution.default and _arg(node, 6, "transposed", False):
        return None  # a transposed convolution's weight is (in, out, ...): not prunable here
    return WeightUse(
        target=str(weight.target),
        kind=WEIGHT_OPS[node.target],
        input_index=input_index,
        groups=_conv_groups(node),
        transposed=transposed,
    )


def _is_transpose(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or node.target not in _TRANSPOSES:
        return False
    if node.target is _aten.permute.default:
        return list(_arg(node, 1, "dims", [])) == [1, 0]
    if node.target is _aten.transpose.int:
        return {_arg(node, 1, "dim0", 0), _arg(node, 2, "dim1", 1)} in ({0, 1}, {-1, -2})
    return True


def _arg(node: torch.fx.Node, index: int, name: str, default: object) -> object:
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[index] if len(node.args) > index else default


@dataclass(frozen=True)
class PrunableLayer:
    """A weight the workbench can prune, named like the module that owns it."""

    name: str  # module path as in model.named_modules(), e.g. "features.0"
    kind: str  # "Linear", "Conv2d", ...
    weight_name: str  # parameter path, e.g. "features.0.weight"
    shape: tuple[int, ...]
    groups: int = (
        1  # convolution groups: weight[o, i] reads input channel (o // (out/groups))*i_g + i
    )
    #: The weight is stored (in, out), as transformers' Conv1D (GPT-2's layers): `shape` and
    #: every mask and score are (out, in), a channel a row, and `stored` lays them out as the
    #: parameter is (a channel a column). The one place that knows the channel axis.
    transposed: bool = False

    @property
    def params(self) -> int:
        return prod(self.shape)

    @property
    def channel_axis(self) -> int:
        """The axis of the stored weight that indexes output channels."""
        return 1 if self.transposed else 0

    def logical(self, stored: torch.Tensor) -> torch.Tensor:
        """A weight-shaped tensor as the parameter stores it -> (out, in, ...) (a view)."""
        return stored.t() if self.transposed else stored

    def stored(self, logical: torch.Tensor) -> torch.Tensor:
        """An (out, in, ...) tensor -> laid out as the parameter stores it (a view)."""
        return logical.t() if self.transposed else logical

    @property
    def channels(self) -> int:
        """Output neurons (Linear) or output filters (ConvNd): the units of channel pruning."""
        return self.shape[0]


def find_prunable_layers(
    model: nn.Module, graph: torch.fx.Graph | None = None
) -> list[PrunableLayer]:
    """Every Linear and Conv1d/2d/3d weight, found by module type and, given a graph, by operation.

    Layers come in module order; the engine re-sorts them in execution order.
    """
    layers: dict[str, PrunableLayer] = {}
    for name, module in model.named_modules():
        if is_hf_conv1d(module):  # a Linear stored (in, out): its channels are columns
            layers[f"{name}.weight"] = PrunableLayer(
                name=name,
                kind="Linear",
                weight_name=f"{name}.weight",
                shape=tuple(module.weight.shape[::-1]),
                transposed=True,
            )
            continue
        kind = _module_kind(module)
        if kind is not None:
            layers[f"{name}.weight"] = PrunableLayer(
                name=name,
                kind=kind,
                weight_name=f"{name}.weight",
                shape=tuple(module.weight.shape),
                groups=int(getattr(module, "groups", 1)),
            )
    if graph is not None:
        for node in graph.nodes:
            use = weight_use(node)
            if use is None or use.target in layers or use.transposed:
                continue
            tensor = _get_attr(model, use.target)
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                continue
            kind = use.kind
            if kind == "Conv":
                kind = {3: "Conv1d", 4: "Conv2d", 5: "Conv3d"}.get(tensor.dim(), "")
            expected_rank = _WEIGHT_RANK.get(kind)
            if expected_rank != tensor.dim():
                continue  # e.g. mm on a 3-D tensor: not a layer weight we know how to prune
            layers[use.target] = PrunableLayer(
                name=use.target.removesuffix(".weight"),
                kind=kind,
                weight_name=use.target,
                shape=tuple(tensor.shape),
                groups=use.groups,
            )
    return list(layers.values())


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' `pytorch_utils.Conv1D` (GPT-2's attention and MLP layers), recognised
    without importing transformers: x @ weight + bias with weight (nx, nf)."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and type(module).__module__.startswith("transformers.")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
        and tuple(weight.shape) == (getattr(module, "nx", None), getattr(module, "nf", None))
    )


def _module_kind(module: nn.Module) -> str | None:
    """The kind ("Linear", "Conv2d", ...) of a module whose `weight` we prune, else None."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    if isinstance(module, PRUNABLE_MODULES):
        return type(module).__name__ if type(module) in PRUNABLE_MODULES else _base_kind(module)
    if isinstance(module, torch.jit.ScriptModule):
        # TorchScript keeps the class name only; the weight's rank confirms the layout.
        kind = getattr(module, "original_name", None)
        if _WEIGHT_RANK.get(kind) == weight.dim() and not getattr(module, "transposed", False):
            return kind
    return None


def _base_kind(module: nn.Module) -> str:
    return next(t.__name__ for t in PRUNABLE_MODULES if isinstance(module, t))


def _conv_groups(node: torch.fx.Node) -> int:
    # conv(input, weight, bias, stride, padding, dilation, groups); convolution(input, weight,
    # bias, stride, padding, dilation, transposed, output_padding, groups)
    index = 8 if node.target is _aten.convolution.default else 6
    if node.target in _ARG_POSITIONS or WEIGHT_OPS.get(node.target) == "Linear":
        return 1
    return int(_arg(node, index, "groups", 1))


def _get_attr(model: nn.Module, target: str) -> object:
    return operator.attrgetter(target)(model)
