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
}


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

    @property
    def params(self) -> int:
        return prod(self.shape)

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
        if isinstance(module, PRUNABLE_MODULES) and isinstance(module.weight, torch.Tensor):
            layers[f"{name}.weight"] = PrunableLayer(
                name=name,
                kind=type(module).__name__
                if type(module) in PRUNABLE_MODULES
                else _base_kind(module),
                weight_name=f"{name}.weight",
                shape=tuple(module.weight.shape),
                groups=getattr(module, "groups", 1),
            )
    if graph is not None:
        for node in graph.nodes:
            if node.op != "call_function" or node.target not in WEIGHT_OPS or len(node.args) < 2:
                continue
            weight = node.args[1]
            if not isinstance(weight, torch.fx.Node) or weight.op != "get_attr":
                continue
            if weight.target in layers:
                continue
            tensor = _get_attr(model, weight.target)
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                continue
            groups = _conv_groups(node)
            name = weight.target.removesuffix(".weight")
            layers[weight.target] = PrunableLayer(
                name=name,
                kind=WEIGHT_OPS[node.target],
                weight_name=weight.target,
                shape=tuple(tensor.shape),
                groups=groups,
            )
    return list(layers.values())


def _base_kind(module: nn.Module) -> str:
    return next(t.__name__ for t in PRUNABLE_MODULES if isinstance(module, t))


def _conv_groups(node: torch.fx.Node) -> int:
    if "groups" in node.kwargs:
        return int(node.kwargs["groups"])
    # conv(input, weight, bias, stride, padding, dilation, groups)
    return int(node.args[6]) if len(node.args) > 6 else 1


def _get_attr(model: nn.Module, target: str) -> object:
    return operator.attrgetter(target)(model)
