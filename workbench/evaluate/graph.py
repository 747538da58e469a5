"""Run a model as a graph that can stop and resume at the cut before any prunable layer.

Everything that runs before a layer's first use does not depend on that layer's weight, so a
change to that layer only needs the part of the graph after the cut. `GraphRunner` executes an
`torch.fx` graph node by node, with weights replaced by masked copies, and hands back the values
that are still needed at a cut (the "live set"), so callers can cache them and resume later.
A model `torch.fx` cannot trace (a Hugging Face transformer: its embeddings slice a buffer
with a traced size) is exported with `torch.export` instead, its batch dimension dynamic and its
other dimensions those of an example batch; the exported graph reads the model's own parameters
under their own names. Models that neither can follow run whole, as a single step, and the
runner says why (`GraphRunner.whole_reason`).
"""

from __future__ import annotations

import contextlib
import operator
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from workbench.pruning.layers import PRUNABLE_MODULES, PrunableLayer, weight_use

Env = dict[fx.Node, Any]
#: Called with (layer, input, output) whenever a prunable layer runs: activation statistics, FLOPs.
LayerHook = Callable[[PrunableLayer, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class Traced:
    """A model's graph, or None and why there is none (one line)."""

    graph_module: fx.GraphModule | None
    reason: str | None = None


def trace(model: nn.Module, example: torch.Tensor | None = None) -> fx.GraphModule | None:
    """The model's FX graph, or None when it cannot be traced (data-dependent control flow)."""
    return traced(model, example).graph_module


def traced(model: nn.Module, example: torch.Tensor | None = None) -> Traced:
    """The model's graph by `torch.fx`, else (given an example batch) by `torch.export` with a
    dynamic batch dimension; else None, with the reason."""
    if isinstance(model, fx.GraphModule):
        return Traced(model)
    if isinstance(model, torch.jit.ScriptModule):
        return Traced(None, "a TorchScript model has no graph the engine can cut")
    try:
        return Traced(fx.symbolic_trace(model))
    except Exception as error:  # tracing fails in many ways on arbitrary user code
        fx_error = _one_line(error)
    if example is None:
        return Traced(None, f"torch.fx cannot trace it ({fx_error})")
    try:
        return Traced(_export(model, example))
    except Exception as error:  # noqa: BLE001 - export fails in as many ways; we run it whole
        return Traced(
            None,
            f"neither torch.fx ({fx_error}) nor torch.export ({_one_line(error)}) "
            "can follow the model",
        )


class ExportMismatch(Exception):
    """The exported graph does not compute what the model computes on the example."""


#: Samples of the example batch on which an exported graph must equal the model.
_CHECK_SAMPLES = 8


def _export(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """`torch.export` of the model (non-strict: its Python runs as is) for batches of any size
    shaped like `example` otherwise, as a GraphModule whose get_attr nodes read the model's own
    parameters; checked against the model on the example's first samples."""
    if example.dim() == 0 or example.shape[0] < 2:
        raise ExportMismatch("one sample cannot show which dimension is the batch")
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=False)
    graph_module = program.module()
    sample = example[:_CHECK_SAMPLES]
    with torch.no_grad():
        expected, got = tree_leaves(model(sample)), tree_leaves(graph_module(sample))
    same = len(expected) == len(got) and all(
        torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
        for a, b in zip(expected, got, strict=False)
    )
    if not same:
        raise ExportMismatch("the exported graph's outputs differ from the model's")
    return graph_module


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


class GraphRunner:
    """Executes a model in segments between cuts, with some weights overridden."""

    def __init__(
        self,
        model: nn.Module,
        layers: list[PrunableLayer],
        example: torch.Tensor | None = None,
        tracing: Traced | None = None,
    ) -> None:
        """`example`: a batch of inputs, for `torch.export` where torch.fx fails; `tracing`:
        another runner's on the same model (`for_layers`: the model is not traced again)."""
        self.model = model
        self.tracing = tracing if tracing is not None else traced(model, example)
        self.graph_module = self.tracing.graph_module
        #: Why every run is a whole run (no graph to cut); None when there is a graph.
        self.whole_reason = self.tracing.reason
        self.layers = layers
        self._by_weight = {layer.weight_name: layer for layer in layers}
        #: Held while a run swaps tensors on the model itself (a TorchScript model's weights in
        #: place; functional_call's reparametrisation, on the whole model or on a module that
        #: holds prunable layers): such runs go one at a time, and so does copying the model.
        #: Every other run is functional and needs no lock.
        self.swap_lock = threading.RLock()
        if self.graph_module is None:
            self.nodes: list[fx.Node] = []
            self.cuts = {layer.name: 0 for layer in layers}
            self.end = 1
            return
        gm = self.graph_module
        self.nodes = list(gm.graph.nodes)
        self.end = len(self.nodes)
        # The model's input: the first placeholder (a torch.export graph lists its weights'
        # get_attr nodes before it).
        self._input = next((n for n in self.nodes if n.op == "placeholder"), None)
        self._index = {node: i for i, node in enumerate(self.nodes)}
        self._modules = dict(gm.named_modules())
        # Leaf modules whose tensors a run may replace, besides a prunable layer's own weight
        # and bias: attention holding out_proj, BatchNorms of removable channels.
        self._holders = {
            node.target
            for node in self.nodes
            if node.op == "call_module"
            and any(
                w.startswith(f"{node.target}.") and w != f"{node.target}.weight"
                for w in self._by_weight
            )
        }
        last_use = {
            node: max((self._index[u] for u in node.users), default=-1) for node in self.nodes
        }
        self._free_after: list[list[fx.Node]] = [[] for _ in self.nodes]
        for node, i in last_use.items():
            if i >= 0 and node.op != "get_attr":
                self._free_after[i].append(node)
        self._last_use = last_use
        self._live: dict[int, list[fx.Node]] = {}
        self.cuts = self._find_cuts()

    def for_layers(self, layers: list[PrunableLayer]) -> GraphRunner:
        """A runner on the same model and graph, cutting before these layers."""
        return GraphRunner(self.model, layers, tracing=self.tracing)

    # ---- structure -------------------------------------------------------------------------

    def _weights_read_by(self, node: fx.Node) -> list[str]:
        """Weight names of prunable layers whose values this node reads."""
        if node.op == "call_module":
            prefix = f"{node.target}."
            return [w for w in self._by_weight if w.startswith(prefix)]
        names = []
        for arg in node.all_input_nodes:
            if arg.op == "get_attr" and arg.target in self._by_weight:
                names.append(arg.target)
        return names

    def _find_cuts(self) -> dict[str, int]:
        cuts: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            for weight in self._weights_read_by(node):
                cuts.setdefault(self._by_weight[weight].name, i)
        # Layers the graph never reads (dead weights) cannot change the output.
        for layer in self.layers:
            cuts.setdefault(layer.name, self.end)
        return cuts

    def live_nodes(self, cut: int) -> list[fx.Node]:
        if self.graph_module is None:
            return []
        if cut not in self._live:  # values made before the cut and still read at or after it
            self._live[cut] = [
                n for n in self.nodes[:cut] if n.op != "get_attr" and self._last_use[n] >= cut
            ]
        return self._live[cut]

    def input_env(self, cut: int, batch: torch.Tensor) -> Env | None:
        """The live set at `cut` when it is the model's input alone (nothing to cache: any plan
        resumes there for free), else None."""
        if self.graph_module is None or self.live_nodes(cut) != [self._input]:
            return None
        return {self._input: batch}

    def allow_overrides(self, names: Iterable[str]) -> None:
        """Declare parameters or buffers (besides prunable weights) that runs may replace: the
        modules holding them are then run functionally, never with tensors swapped in place
        while another thread runs them."""
        if self.graph_module is None:
            return
        names = list(names)
        for node in self.nodes:
            prefix = f"{node.target}."
            if node.op == "call_module" and any(n.startswith(prefix) for n in names):
                self._holders.add(node.target)

    # ---- execution -------------------------------------------------------------------------

    def run(
        self,
        start_env: Mapping[Any, Any],
        start: int,
        stop: int,
        weights: Mapping[str, torch.Tensor],
        layer_hook: LayerHook | None = None,
        node_hook: Callable[[fx.Node, Any], None] | None = None,
    ) -> Any:
        """Run nodes [start, stop); return the live set at `stop`, or the output at the end.

        At start 0, `start_env` is `{"input": batch}`; otherwise the live set at `start`.
        `weights` maps parameter and buffer names (weights, and the biases and BatchNorm
        entries of removed channels) to the tensors to use instead of the model's own.
        `node_hook(node, value)` sees every value the graph computes.
        """
        if self.graph_module is None:
            return self._run_whole(start_env["input"], weights, layer_hook)
        env: dict[Any, Any] = dict(start_env)
        for i in range(start, stop):
            node = self.nodes[i]
            if node.op == "get_attr":
                continue  # resolved where used, so overrides apply
            if node.op == "output":
                return self._load(node.args[0], env, weights)
            env[node] = self._execute(node, env, weights, layer_hook)
            if node_hook is not None:
                node_hook(node, env[node])
            for dead in self._free_after[i]:
                env.pop(dead, None)
        return {node: env[node] for node in self.live_nodes(stop)}

    def _load(self, arg: Any, env: Mapping[Any, Any], weights: Mapping[str, torch.Tensor]) -> Any:
        def value(node: fx.Node) -> Any:
            if node.op == "get_attr":
                if node.target in weights:
                    return weights[node.target]
                return _attr(self.graph_module, node.target)
            return env[node]

        return fx.node.map_arg(arg, value)

    def _execute(
        self,
        node: fx.Node,
        env: Mapping[Any, Any],
        weights: Mapping[str, torch.Tensor],
        layer_hook: LayerHook | None,
    ) -> Any:
        if node.op == "placeholder":
            if "input" in env and node is self._input:
                return env["input"]
            if node.args:  # a placeholder with a default value
                return node.args[0]
            raise TypeError(
                f"the model takes more than one input ({node.target!r}); give one tensor"
            )
        args = self._load(node.args, env, weights)
        kwargs = self._load(node.kwargs, env, weights)
        if node.op == "call_function":
            result = node.target(*args, **kwargs)
            if layer_hook is not None:
                use = weight_use(node)
                if use is not None and use.target in self._by_weight:
                    layer_hook(self._by_weight[use.target], args[use.input_index], result)
            return result
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, node.target)(*rest, **kwargs)
        if node.op == "call_module":
            module = self._modules[node.target]
            own_weight = f"{node.target}.weight"
            if isinstance(module, PRUNABLE_MODULES) and own_weight in self._by_weight:
                if own_weight in weights:
                    bias = weights.get(f"{node.target}.bias", module.bias)
                    result = _call_with_weight(module, weights[own_weight], bias, args, kwargs)
                else:
                    result = module(*args, **kwargs)
                if layer_hook is not None:
                    layer_hook(self._by_weight[own_weight], args[0], result)
                return result
            prefix = f"{node.target}."
            if node.target not in self._holders:
                return module(*args, **kwargs)
            inner = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
            if _plain_batch_norm(module) and not kwargs:
                return _batch_norm(module, inner, args[0])
            # functional_call swaps the tensors on the module for the call (attention holding
            # out_proj), so every run of such a module, overridden or not, takes the lock.
            with self.swap_lock:
                return functional_call(module, inner, tuple(args), kwargs)
        raise NotImplementedError(f"unsupported graph node {node.op!r}")

    def _run_whole(
        self, batch: torch.Tensor, weights: Mapping[str, torch.Tensor], layer_hook: LayerHook | None
    ) -> Any:
        if isinstance(self.model, torch.jit.ScriptModule):
            return self._run_scripted(batch, weights, layer_hook)
        with self.swap_lock:  # functional_call swaps the weights on the model; hooks go on it
            return self._run_module(batch, weights, layer_hook)

    def _run_module(
        self, batch: torch.Tensor, weights: Mapping[str, torch.Tensor], layer_hook: LayerHook | None
    ) -> Any:
        handles = []
        if layer_hook is not None:
            modules = dict(self.model.named_modules())
            for layer in self.layers:
                module = modules.get(layer.name)
                if module is not None:
                    handles.append(
                        module.register_forward_hook(
                            lambda _m, a, out, layer=layer: layer_hook(layer, a[0], out)
                        )
                    )
        try:
            return functional_call(self.model, dict(weights), (batch,))
        finally:
            for handle in handles:
                handle.remove()

    def _run_scripted(
        self, batch: torch.Tensor, weights: Mapping[str, torch.Tensor], layer_hook: LayerHook | None
    ) -> Any:
        # functional_call cannot enter TorchScript, and ScriptModules take no forward hooks: swap
        # the weights on the model itself (the engine's private copy) and put them back, and see
        # each layer's input where an operation reads its weight.
        with self.swap_lock, _swapped(self.model, weights):
            if layer_hook is None:
                return self.model(batch)
            current = {name: _attr(self.model, name) for name in self._by_weight}
            with _WeightReads(current, self._by_weight, layer_hook):
                return self.model(batch)


@contextlib.contextmanager
def _swapped(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    originals = []
    try:
        for name, tensor in weights.items():
            owner_name, _, attr = name.rpartition(".")
            owner = _attr(model, owner_name) if owner_name else model
            originals.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, tensor)
        yield
    finally:
        for owner, attr, tensor in reversed(originals):
            setattr(owner, attr, tensor)


# Operations that read a layer weight, with the positions of (activation, weight); what a
# TorchScript Linear or Conv becomes at the dispatcher (linear decomposes into t + addmm/mm).
_aten = torch.ops.aten
_READS: dict[Any, tuple[int, int]] = {
    _aten.convolution.default: (0, 1),
    _aten._convolution.default: (0, 1),
    _aten.conv1d.default: (0, 1),
    _aten.conv2d.default: (0, 1),
    _aten.conv3d.default: (0, 1),
    _aten.linear.default: (0, 1),
    _aten.addmm.default: (1, 2),
    _aten.mm.default: (0, 1),
}


class _WeightReads(TorchDispatchMode):
    """Calls the layer hook whenever an operation reads a layer's weight (matched by storage)."""

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor],
        layers: Mapping[str, PrunableLayer],
        hook: LayerHook,
    ) -> None:
        super().__init__()
        self._by_storage = {}
        for name, tensor in tensors.items():
            self._by_storage.setdefault(_storage(tensor), layers[name])
        self._hook = hook

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        result = func(*args, **(kwargs or {}))
        positions = _READS.get(func)
        if positions is not None and len(args) > positions[1]:
            weight = args[positions[1]]
            layer = self._by_storage.get(_storage(weight)) if torch.is_tensor(weight) else None
            if layer is not None:
                self._hook(layer, args[positions[0]], result)
        return result


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _attr(module: nn.Module, target: str) -> Any:
    return operator.attrgetter(target)(module)


def _plain_batch_norm(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        and not module.training
        and module.running_mean is not None
        and module.running_var is not None
    )


def _batch_norm(module: Any, tensors: Mapping[str, torch.Tensor], x: torch.Tensor) -> Any:
    # _BatchNorm.forward in evaluation mode (running statistics), some tensors replaced: the
    # same F.batch_norm call, so the result is bit-identical.
    module._check_input_dim(x)

    def get(name: str) -> Any:
        return tensors[name] if name in tensors else getattr(module, name)

    return torch.nn.functional.batch_norm(
        x,
        get("running_mean"),
        get("running_var"),
        get("weight"),
        get("bias"),
        False,
        0.0,
        module.eps,
    )


def _call_with_weight(
    module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None, args: Any, kwargs: Any
) -> Any:
    # The same calls the modules' own forward makes, with the masked weight (and bias) in place
    # of theirs, so the result is bit-identical to running a model pruned the same way.
    if isinstance(module, nn.Linear):
        return torch.nn.functional.linear(args[0], weight, bias)
    return module._conv_forward(args[0], weight, bias)  # Conv1d/2d/3d
