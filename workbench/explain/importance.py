"""Layer importance: how much each neuron or channel of every prunable layer matters.

Captum's layer methods (LayerConductance, LayerGradientXActivation, LayerActivation) look at one
layer per call, so a table of every layer would run the data through the model once per layer
(for conductance, `n_steps + 1` times per layer). `iter_channel_attribution` computes the same
quantities for all layers in one pass: forward hooks keep every layer's output, one backward pass
gives the gradient at all of them. The tests check it against Captum, layer by layer.

A channel's importance is the mean over samples of its absolute attribution, summed over the
channel's positions (the pixels of a convolution's feature map, the tokens of a sequence): a
channel's total, so conductances of different layers are in the same unit (the output's).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from workbench.evaluate.modelling import private_copy as _private_copy
from workbench.evaluate.statistics import TaylorSum, register_channel_attribution, summed_loss
from workbench.evaluate.workbench import register_analysis
from workbench.explain._common import (
    ExplainError,
    Forward,
    Progress,
    cached,
    check_indices,
    layer_module,
    lookup,
    loss_targets,
    model_copy,
    n_samples,
    plan_key,
    run_to_end,
    store,
    subset_indices,
)
from workbench.explain.text import (
    FromEmbeddings,
    Similarity,
    TokenInput,
    embedding_path,
    token_input,
)
from workbench.pruning.layers import PrunableLayer, weight_use
from workbench.pruning.plan import PruningPlan

if TYPE_CHECKING:
    from workbench.evaluate.workbench import Workbench

CAPTUM_LAYER_API = "https://captum.ai/api/layer.html"
#: Captum's default number of steps for conductance.
DEFAULT_STEPS = 50
#: Recent tables kept per workbench.
CACHE_SIZE = 16
#: The attribution criteria score channels on at most this many validation samples (a seeded
#: subset) with this many conductance steps: 16 Gauss–Legendre steps rank the demos' channels
#: as 50 do (Spearman ≥ 0.995 per layer) at a third of the cost.
CRITERION_SAMPLES = 512
CRITERION_STEPS = 16


@dataclass(frozen=True)
class LayerMethod:
    """A Captum layer-attribution method, described for people."""

    name: str
    label: str
    description: str
    url: str
    captum_class: str
    #: Needs a target output (a class) and gradients.
    uses_gradients: bool = True
    #: Integrates along a path from a baseline (n_steps + 1 evaluations per sample).
    integrates: bool = False


LAYER_METHODS: dict[str, LayerMethod] = {
    m.name: m
    for m in (
        LayerMethod(
            "conductance",
            "Conductance",
            "How much of the change in the output, from a blank input to this sample, flows "
            "through each neuron: Integrated Gradients measured at a hidden layer. The "
            "conductances of a layer add up to that change when every path runs through it.",
            CAPTUM_LAYER_API + "#layer-conductance",
            "LayerConductance",
            integrates=True,
        ),
        LayerMethod(
            "gradient_x_activation",
            "Gradient × activation",
            "Each neuron's output times the gradient of the prediction with respect to it: a "
            "first-order estimate of how much the prediction would change without the neuron. "
            "One backward pass.",
            CAPTUM_LAYER_API + "#layer-gradient-x-activation",
            "LayerGradientXActivation",
        ),
        LayerMethod(
            "activation",
            "Activation",
            "How strongly each neuron fires (its output, before the non-linearity), whatever the "
            "prediction: neurons that stay near zero carry little signal.",
            CAPTUM_LAYER_API + "#layer-activation",
            "LayerActivation",
            uses_gradients=False,
        ),
    )
}


def get_layer_method(method: str) -> LayerMethod:
    return lookup(LAYER_METHODS, method, "layer-importance method")


# ---- one pass for all layers -------------------------------------------------------------------


@dataclass(frozen=True)
class HookedLayer:
    name: str
    kind: str  # "Linear" (channels on the last axis) or "Conv*" (channels on axis 1)
    channels: int
    #: The module whose forward hook sees the output, or None when a tap in the model's graph
    #: does (a loaded torch.export program: its modules are empty shells the graph never calls).
    module: nn.Module | None


def hooked_layers(model: nn.Module, layers: Sequence[PrunableLayer]) -> list[HookedLayer]:
    tapped = _tap_graph(model, layers)
    return [
        HookedLayer(
            layer.name,
            layer.kind,
            layer.channels,
            None if layer.name in tapped else layer_module(model, layer.name),
        )
        for layer in layers
    ]


# The recorder of the running thread, for the taps in a graph (module hooks carry their own).
_active = threading.local()
_tap_lock = threading.Lock()


def _tap(value: torch.Tensor, name: str) -> torch.Tensor:
    """A graph node after a layer's operation: hands its output to the thread's recorder."""
    recorder = getattr(_active, "recorder", None)
    return value if recorder is None else recorder.record(name, value)


torch.fx.wrap("_tap")  # a leaf if the tapped model is ever traced again


def _tap_graph(model: nn.Module, layers: Sequence[PrunableLayer]) -> set[str]:
    """Names of the layers whose output a graph tap records; taps are added once per model.

    In a GraphModule that reads a layer's weight itself (`aten.conv2d(x, features_0_weight)`),
    the operation's output is the layer's output: a `_tap` node after it passes the value
    through unchanged unless a recorder is active in the running thread.
    """
    if not isinstance(model, torch.fx.GraphModule):
        return set()
    wanted = {layer.weight_name: layer.name for layer in layers}
    with _tap_lock:
        tapped: dict[str, str] = model.__dict__.setdefault("_workbench_taps", {})
        new = {w: n for w, n in wanted.items() if w not in tapped}
        if new:
            graph, found = model.graph, {}
            for node in list(graph.nodes):
                use = weight_use(node)
                if use is None or use.target not in new:
                    continue
                with graph.inserting_after(node):
                    tap = graph.call_function(_tap, (node, new[use.target]))
                node.replace_all_uses_with(tap, delete_user_cb=lambda user, t=tap: user is not t)
                found[use.target] = new[use.target]
            if found:
                model.recompile()
            tapped.update(found)
        return {name for weight, name in tapped.items() if weight in wanted}


class _Recorder:
    """Keeps each layer's output (the tensor that gradients are taken at) during `run`.

    Module layers are seen by forward hooks, which act only in the thread that installed them:
    another thread running the same model copy (input attributions need no lock) passes
    through untouched. Graph taps look up the running thread's recorder. A model exported for
    a fixed batch runs once per chunk, so each layer records one tensor per call.
    """

    def __init__(self, layers: Sequence[HookedLayer]) -> None:
        self.layers = layers
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self._handles: list[Any] = []
        self._thread = threading.get_ident()
        self._rows = 0
        self._previous: _Recorder | None = None

    def __enter__(self) -> _Recorder:
        for layer in self.layers:
            if layer.module is not None:
                self._handles.append(layer.module.register_forward_hook(self._hook(layer.name)))
        self._previous = getattr(_active, "recorder", None)
        _active.recorder = self
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        _active.recorder = self._previous

    def record(self, name: str, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise ExplainError(f"layer {name!r} does not return a single tensor")
        self.outputs.setdefault(name, []).append(output)
        # Later in-place operations (ReLU(inplace=True)) act on the clone, not on the
        # recorded output.
        return output.clone()

    def _hook(self, name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor | None:
            if threading.get_ident() != self._thread:
                return None
            return self.record(name, output)

        return hook

    def run(self, forward: Forward, inputs: torch.Tensor) -> torch.Tensor:
        self.outputs = {}
        output = forward(inputs)
        calls = forward.calls(len(inputs))
        for name, parts in self.outputs.items():
            if len(parts) > calls:
                raise ExplainError(
                    f"layer {name!r} runs more than once per forward pass (shared weights), "
                    "so the importance of its channels is ambiguous"
                )
        self._rows = len(inputs)
        return output

    def _joined(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        # Chunks of a fixed-batch program: the rows of the padding are dropped.
        joined = parts[0] if len(parts) == 1 else torch.cat(list(parts))
        return joined if len(joined) == self._rows else joined[: self._rows]

    def value(self, name: str) -> torch.Tensor:
        """A layer's output over the last run's inputs (detached)."""
        return self._joined([part.detach() for part in self.outputs[name]])

    def gradients(self, scalar: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """∂scalar/∂(each recorded output); None for a layer the scalar does not depend on."""
        names = list(self.outputs)
        flat = [part for name in names for part in self.outputs[name]]
        if not flat:  # no layer ran: nothing to differentiate
            return {}
        grads = iter(torch.autograd.grad(scalar, flat, allow_unused=True))
        out: dict[str, torch.Tensor | None] = {}
        for name in names:
            parts = self.outputs[name]
            found = [next(grads) for _ in parts]
            if all(g is None for g in found):
                out[name] = None
            else:
                filled = [
                    torch.zeros_like(p) if g is None else g
                    for p, g in zip(parts, found, strict=True)
                ]
                out[name] = self._joined(filled)
        return out


def _per_channel(values: torch.Tensor, layer: HookedLayer) -> torch.Tensor:
    """(samples, channels): |values| summed over each channel's positions."""
    if values.dim() == 1:  # a layer with one output per sample
        values = values[:, None]
    if layer.kind == "Linear":
        values = values.movedim(-1, 1)  # (N, ..., C) → (N, C, ...)
    return values.abs().reshape(values.shape[0], values.shape[1], -1).sum(dim=2)


def _selected(outputs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """The explained output of each row: the target class's logit, the single output, or (an
    embedding model, `targets` the dense embeddings) the cosine similarity to the target."""
    if targets is None:
        return outputs.reshape(outputs.shape[0], -1)[:, 0]
    if targets.is_floating_point():
        return torch.nn.functional.cosine_similarity(
            outputs.flatten(1), targets.flatten(1).to(outputs.dtype), dim=1
        )
    return outputs.gather(1, targets[:, None])[:, 0]


def _repeat(targets: torch.Tensor | None, m: int) -> torch.Tensor | None:
    """The targets of `m` stacked copies of a batch."""
    if targets is None:
        return None
    return targets.repeat(m, *([1] * (targets.dim() - 1)))


def _alphas(n_steps: int) -> list[float]:
    """The points of Captum's LayerConductance: n_steps + 1 Gauss–Legendre nodes on [0, 1].

    Captum's default "gausslegendre" rule, computed here: its builders live in a private module.
    """
    nodes, _ = np.polynomial.legendre.leggauss(n_steps + 1)
    return (0.5 * (1 + nodes)).tolist()


def iter_channel_attribution(
    forward: Forward,
    layers: Sequence[HookedLayer],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
    method: str,
    *,
    classification: bool,
    n_steps: int = DEFAULT_STEPS,
    budget: int = 512,
    embedding: bool = False,
    token: TokenInput | None = None,
) -> Iterator[Progress[dict[str, torch.Tensor]]]:
    """Σ over samples of each channel's |attribution| summed over its positions, all layers at once.

    `batches` holds (inputs, labels or None); the target is each sample's predicted class (the
    true label where labels are given) for a classifier, its single output for a regressor;
    for an `embedding` model the cosine similarity to the labels (the dense embeddings; None:
    the model's own outputs). Token ids (`token`) enter at their input embedding: the path
    of conductance runs from the padding baseline to the real embeddings (`explain.text`).
    The last event's result maps layer names to float64 tensors of shape (channels,), and has
    the number of samples under the key "__samples__".
    """
    spec = get_layer_method(method)
    if embedding and spec.uses_gradients and not spec.integrates:
        raise ExplainError(
            f"{spec.label} reads the gradient at the input alone, and an embedding model's "
            "similarity to the dense embedding peaks there (its gradient is zero); use "
            "conductance, which follows a path from a baseline"
        )
    if n_steps < 1:
        raise ExplainError(f"n_steps must be at least 1, got {n_steps}")
    totals = {layer.name: torch.zeros(layer.channels, dtype=torch.float64) for layer in layers}
    points = len(_alphas(n_steps)) if spec.integrates else 1
    alphas = _alphas(n_steps) if spec.integrates else [1.0]
    n_samples = sum(len(x) for x, _ in batches)
    total, done = n_samples * points, 0
    recorder = _Recorder(layers)
    with recorder:
        for inputs, labels in batches:
            for start in range(0, len(inputs), max(1, budget // points)):
                x = inputs[start : start + max(1, budget // points)]
                y = None if labels is None else labels[start : start + len(x)]
                if embedding and y is None:
                    with torch.no_grad():
                        y = recorder.run(forward, x).detach()  # the model's own embeddings
                per_layer = (
                    _conductance(forward, recorder, x, y, alphas, classification, budget, token)
                    if spec.integrates
                    else _single_pass(forward, recorder, x, y, spec, classification, token)
                )
                for layer in layers:
                    value = per_layer.get(layer.name)
                    if value is not None:  # a layer the forward pass never reached scores 0
                        totals[layer.name] += _per_channel(value, layer).sum(dim=0).double().cpu()
                done += len(x) * points
                if done < total:
                    yield Progress(done, total, f"{spec.label}: {done // points} of {n_samples}")
    result: dict[str, torch.Tensor] = dict(totals)
    result["__samples__"] = torch.tensor(n_samples)
    yield Progress(total, total, "done", result)


def _targets(
    outputs: torch.Tensor, labels: torch.Tensor | None, classification: bool
) -> torch.Tensor | None:
    if labels is not None and labels.is_floating_point() and labels.dim() > 1:
        return labels  # an embedding model's dense embeddings
    if not classification:
        return None
    if labels is not None:
        return labels.long()
    return outputs.argmax(dim=1)


def _single_pass(
    forward: Forward,
    recorder: _Recorder,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    spec: LayerMethod,
    classification: bool,
    token: TokenInput | None = None,
) -> dict[str, torch.Tensor]:
    if not spec.uses_gradients:  # LayerActivation
        with torch.no_grad():
            recorder.run(forward, x)
        return {name: recorder.value(name) for name in recorder.outputs}
    with torch.enable_grad(), _path(token, None):
        if token is None:
            x = x.detach().requires_grad_(True)  # so that every layer's output joins the graph
        outputs = recorder.run(forward, x)
        targets = _targets(outputs.detach(), labels, classification)
        grads = recorder.gradients(_selected(outputs, targets).sum())
    return {n: recorder.value(n) * g for n, g in grads.items() if g is not None}


def _conductance(
    forward: Forward,
    recorder: _Recorder,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    alphas: list[float],
    classification: bool,
    budget: int,
    token: TokenInput | None = None,
) -> dict[str, torch.Tensor]:
    """Captum's LayerConductance for every recorded layer, with a zero baseline (token ids:
    the padding baseline at the input embedding, as LayerConductance on the embedding's output).

    Σ_k ∂F/∂y(x_k) · (y(x_{k+1}) − y(x_k)) over the path points x_k = α_k·x, computed a chunk
    of points at a time; the last point of a chunk is carried over to the next one.
    """
    b = len(x)
    targets = None
    if labels is not None and labels.is_floating_point() and labels.dim() > 1:
        targets = labels  # an embedding model's dense embeddings
    elif classification and labels is not None:
        targets = labels.long()
    elif classification:
        with torch.no_grad():
            targets = recorder.run(forward, x).argmax(dim=1)
    chunk = max(1, budget // b)
    sums: dict[str, torch.Tensor] = {}
    carry: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for start in range(0, len(alphas), chunk):
        points = alphas[start : start + chunk]
        m = len(points)
        expanded = _repeat(targets, m)
        if token is None:
            scaled = torch.cat([a * x for a in points]).detach().requires_grad_(True)
            alpha_rows = None
        else:  # the ids repeat; the embedding hook moves each copy along the path
            scaled = x.repeat(m, *([1] * (x.dim() - 1)))
            alpha_rows = torch.tensor(points).repeat_interleave(b)
        with torch.enable_grad(), _path(token, alpha_rows):
            outputs = recorder.run(forward, scaled)
            grads = recorder.gradients(_selected(outputs, expanded).sum())
        for name, grad in grads.items():
            value = recorder.value(name)
            grad = torch.zeros_like(value) if grad is None else grad
            evals = value.reshape(m, b, *value.shape[1:])
            grads_k = grad.reshape(m, b, *grad.shape[1:])
            total = (grads_k[:-1] * (evals[1:] - evals[:-1])).sum(dim=0)
            if name in carry:
                previous_grad, previous_eval = carry[name]
                total = total + previous_grad * (evals[0] - previous_eval)
            sums[name] = sums[name] + total if name in sums else total
            carry[name] = (grads_k[-1], evals[-1])
    return sums


def _path(token: TokenInput | None, alphas: torch.Tensor | None) -> Any:
    """The embedding path for token ids; nothing for floating-point inputs."""
    return contextlib.nullcontext() if token is None else embedding_path(token, alphas)


# ---- the workbench-level API -------------------------------------------------------------------


def _batches(
    bench: Workbench, chosen: Sequence[int], labels: bool
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The chosen samples in the workbench's batches, with labels (or pseudo-labels) if asked."""
    inputs = bench.val_inputs
    index = torch.tensor(chosen, dtype=torch.long, device=inputs.device)
    inputs = inputs[index]
    if bench.task == "embedding":  # explained: the similarity to the dense embeddings
        targets = bench.dense_outputs[index]
    else:
        targets = loss_targets(bench)[index] if labels else None
    size = bench.batch_size
    return [
        (inputs[i : i + size], None if targets is None else targets[i : i + size])
        for i in range(0, len(chosen), size)
    ]


def _layers_with_modules(model: nn.Module, layers: Sequence[PrunableLayer]) -> list[HookedLayer]:
    """The layers that can be hooked; an error only when none can."""
    found, reasons = [], []
    for layer in layers:
        try:
            found.extend(hooked_layers(model, [layer]))
        except ExplainError as error:
            reasons.append(str(error))
    if not found:
        raise ExplainError(
            "no prunable layer of this model can be hooked, so there are no neurons to measure"
            + (f": {reasons[0]}" if reasons else "")
        )
    return found


def iter_layer_importance(
    bench: Workbench,
    method: str = "conductance",
    plan: PruningPlan | None = None,
    samples: int | Sequence[int] | None = None,
    *,
    layers: Sequence[str] | None = None,
    target: str = "predicted",
    n_steps: int = DEFAULT_STEPS,
) -> Iterator[Progress[pd.DataFrame]]:
    """Progress of a layer-importance table; the last event carries the DataFrame.

    `plan=None` measures the dense model. `samples`: None for the whole validation set, an int
    for a seeded random subset of that size, or indices. `target`: "predicted" (each sample's
    predicted class on the measured model) or "true" (its label); a regressor's single output.
    """
    spec = get_layer_method(method)
    if target not in ("predicted", "true"):
        raise ExplainError(f"target must be 'predicted' or 'true', got {target!r}")
    if target == "true" and bench.targets is None:
        raise ExplainError("the validation data has no labels: use the predicted class")
    chosen = subset_indices(samples, n_samples(bench))
    by_name = {layer.name: layer for layer in bench.prunable_layers}
    if layers is None:
        wanted = list(bench.prunable_layers)
    else:
        unknown = [name for name in layers if name not in by_name]
        if unknown:
            raise ExplainError(
                f"unknown layer {unknown[0]!r}; prunable layers are: {', '.join(by_name)}"
            )
        wanted = [by_name[name] for name in layers]
    state = plan_key(plan)
    key = (method, state, chosen, tuple(layer.name for layer in wanted), target, n_steps)
    found = cached(bench, "layer_importance", key)
    if found is not None:
        yield Progress(1, 1, "cached", found)
        return

    copy = model_copy(bench, state)
    classification = bench.task == "classification"
    batches = _batches(bench, chosen, labels=target == "true" and classification)
    text = not bench.val_inputs.is_floating_point() and spec.uses_gradients
    with copy.lock:  # the hooks live on the shared copy
        token = token_input(copy.model) if text else None
        hooked = (
            hooked_layers(copy.model, wanted)
            if layers is not None
            else _layers_with_modules(copy.model, wanted)
        )
        events = iter_channel_attribution(
            copy.forward,
            hooked,
            batches,
            method,
            classification=classification,
            n_steps=n_steps,
            budget=bench.batch_size,
            embedding=bench.task == "embedding",
            token=token,
        )
        for event in events:
            if event.result is None:
                yield event
            else:
                totals = event.result
    table = _table(hooked, totals, len(chosen))
    table.attrs.update(
        method=method,
        label=spec.label,
        samples=len(chosen),
        plan=state.to_json(indent=None),
        skipped=[layer.name for layer in wanted if layer.name not in totals],
    )
    store(bench, "layer_importance", key, table, CACHE_SIZE)
    yield Progress(1, 1, "done", table)


def layer_importance(
    bench: Workbench,
    method: str = "conductance",
    plan: PruningPlan | None = None,
    samples: int | Sequence[int] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """One row per (layer, channel): importance, share of the layer's total, rank in the layer."""
    return run_to_end(iter_layer_importance(bench, method, plan, samples, **options))


def _table(layers: Sequence[HookedLayer], totals: dict[str, torch.Tensor], n: int) -> pd.DataFrame:
    frames = []
    for layer in layers:
        importance = (totals[layer.name] / max(n, 1)).numpy()
        layer_total = importance.sum()
        order = np.argsort(-importance, kind="stable")
        rank = np.empty(len(importance), dtype=np.int64)
        rank[order] = np.arange(1, len(importance) + 1)
        frames.append(
            pd.DataFrame(
                {
                    "layer": layer.name,
                    "kind": layer.kind,
                    "channel": np.arange(len(importance)),
                    "importance": importance,
                    "share": importance / layer_total if layer_total > 0 else 0.0,
                    "rank": rank,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def channel_kept(bench: Workbench, plan: PruningPlan | None) -> pd.DataFrame:
    """One row per (layer, channel) of every prunable layer: the fraction of its weights kept."""
    masks = bench.masks(plan) if plan is not None else {}
    frames = []
    for layer in bench.prunable_layers:
        mask = masks.get(layer.name)
        if mask is None:
            kept = np.ones(layer.channels)
        else:
            rows = layer.logical(mask).reshape(layer.channels, -1)  # a channel a row
            kept = rows.double().mean(dim=1).cpu().numpy()
        frames.append(
            pd.DataFrame({"layer": layer.name, "channel": np.arange(layer.channels), "kept": kept})
        )
    return pd.concat(frames, ignore_index=True)


def mark_plan(table: pd.DataFrame, bench: Workbench, plan: PruningPlan | None) -> pd.DataFrame:
    """The importance table with `kept` (fraction of each channel's weights the plan keeps) and
    `removed` (the plan removes the whole channel)."""
    marked = table.merge(channel_kept(bench, plan), on=["layer", "channel"], how="left")
    marked["kept"] = marked["kept"].fillna(1.0)
    marked["removed"] = marked["kept"] == 0
    marked.attrs.update(table.attrs)
    return marked


# ---- one neuron -------------------------------------------------------------------------------


def neuron_conductance(
    bench: Workbench,
    layer: str,
    neuron: int | tuple[int, ...],
    indices: Sequence[int] | int,
    plan: PruningPlan | None = None,
    *,
    n_steps: int = DEFAULT_STEPS,
) -> torch.Tensor:
    """Captum's NeuronConductance: how much each input feature contributes to the explained
    output through one neuron of `layer` (`neuron`: its index in the layer's output without the
    batch axis, e.g. (token position, channel) in a transformer). Token ids are attributed at
    their input embeddings, from the padding baseline, one score per token (padding 0); the
    target is as for the maps (the predicted class; an embedding model's similarity to the
    dense embedding). Returns (n, *sample shape), float, on the model state of `plan`."""
    from captum.attr import NeuronConductance

    if layer not in bench.layer_names:
        raise ExplainError(
            f"unknown layer {layer!r}; prunable layers are: {', '.join(bench.layer_names)}"
        )
    if n_steps < 1:
        raise ExplainError(f"n_steps must be at least 1, got {n_steps}")
    chosen = list(check_indices(indices, n_samples(bench)))
    inputs = bench.val_inputs[torch.tensor(chosen, device=bench.val_inputs.device)]
    copy = model_copy(bench, plan_key(plan))
    embedding = bench.task == "embedding"
    with copy.lock:  # hooks on the shared copy
        module = layer_module(copy.model, layer)
        with torch.no_grad():
            outputs = copy.forward(inputs)
        forward: nn.Module = Similarity(copy.forward) if embedding else copy.forward
        rest = (bench.dense_outputs[chosen],) if embedding else ()
        if embedding or bench.task != "classification":  # one explained output per sample
            target = None if embedding or outputs.dim() == 1 else 0
        else:
            target = outputs.argmax(dim=1)
        if inputs.is_floating_point():
            return NeuronConductance(forward, module).attribute(
                inputs, neuron_selector=neuron, target=target, n_steps=n_steps,
                additional_forward_args=rest or None,
            ).detach()  # fmt: skip
        token = token_input(copy.model)
        with torch.no_grad():
            real = token.module(inputs)
            base = token.module(token.baseline(inputs))
        attr = NeuronConductance(FromEmbeddings(forward, token), module).attribute(
            real, neuron_selector=neuron, baselines=base, target=target, n_steps=n_steps,
            additional_forward_args=(inputs, *rest),
        )  # fmt: skip
        return (attr.sum(dim=-1) * token.real(inputs)).detach()


# ---- weight-level importance -------------------------------------------------------------------


def iter_weight_importance(
    bench: Workbench,
    plan: PruningPlan | None = None,
    samples: int | Sequence[int] | None = None,
) -> Iterator[Progress[dict[str, torch.Tensor]]]:
    """|w · ∂L/∂w|, L the mean loss over the samples, for every prunable weight of the model
    state: the taylor criterion's statistic (`TaylorSum`, so the batch size cannot change it),
    on the pruned model when a plan is given; {layer: weight-shaped, float64 on the CPU}."""
    chosen = subset_indices(samples, n_samples(bench))
    state = plan_key(plan)
    key = (state, chosen)
    found = cached(bench, "weight_importance", key)
    if found is not None:
        yield Progress(1, 1, "cached", found)
        return
    copy = model_copy(bench, state)
    layers = bench.prunable_layers
    named = dict(copy.model.named_parameters()) | dict(copy.model.named_buffers())
    missing = [layer.weight_name for layer in layers if layer.weight_name not in named]
    if missing:
        raise ExplainError(f"weight {missing[0]!r} is not a parameter of the model")
    batches = _batches(bench, chosen, labels=True)
    taylor = TaylorSum({layer.weight_name: named[layer.weight_name] for layer in layers})
    with copy.lock:  # functional_call swaps the copy's parameters while it runs
        for i, (inputs, targets) in enumerate(batches):
            params = {
                layer.weight_name: named[layer.weight_name].detach().clone().requires_grad_(True)
                for layer in layers
            }
            with torch.enable_grad():
                outputs = functional_call(
                    copy.forward, {f"model.{k}": v for k, v in params.items()}, (inputs,)
                )
                loss = summed_loss(outputs, targets, bench.task)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            taylor.add(grads, len(inputs))
            if i + 1 < len(batches):
                yield Progress(i + 1, len(batches), f"batch {i + 1} of {len(batches)}")
    scores = taylor.scores()
    totals = {layer.name: scores[layer.weight_name].double().cpu() for layer in layers}
    store(bench, "weight_importance", key, totals, CACHE_SIZE)
    yield Progress(len(batches), len(batches), "done", totals)


def weight_importance(
    bench: Workbench,
    layer: str,
    plan: PruningPlan | None = None,
    samples: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """|w · ∂L/∂w| (L the mean loss over the samples), shaped like the weight (float64, CPU)."""
    if layer not in bench.layer_names:
        raise ExplainError(
            f"unknown layer {layer!r}; prunable layers are: {', '.join(bench.layer_names)}"
        )
    return run_to_end(iter_weight_importance(bench, plan, samples))[layer]


# ---- for the attribution criteria (the engine's statistics) -----------------------------------


def criterion_attribution(
    model: nn.Module,
    layers: Sequence[PrunableLayer],
    inputs: torch.Tensor,
    method: str,
    *,
    classification: bool,
    budget: int = 512,
    task: str | None = None,
) -> dict[str, torch.Tensor]:
    """Mean per-channel importance of every layer that is a module, on a copy of `model`.

    What the attribution criteria rank by: `layer_importance(bench, method,
    samples=CRITERION_SAMPLES, n_steps=CRITERION_STEPS)` on the dense model gives the same
    numbers. The target is each sample's predicted class (a regressor's single output; an
    embedding model's similarity to its own embedding). Token ids enter at the embeddings.
    """
    chosen = torch.tensor(subset_indices(CRITERION_SAMPLES, len(inputs)), device=inputs.device)
    private = _private_copy(model).eval()  # hooks never touch the engine's model
    gradients = get_layer_method(method).uses_gradients
    token = token_input(private) if gradients and not inputs.is_floating_point() else None
    totals = run_to_end(
        iter_channel_attribution(
            Forward(private),
            _layers_with_modules(private, layers),
            [(inputs[chosen], None)],
            method,
            classification=classification,
            n_steps=CRITERION_STEPS,
            budget=budget,
            embedding=task == "embedding",
            token=token,
        )
    )
    n = int(totals.pop("__samples__"))
    return {name: value / max(n, 1) for name, value in totals.items()}


def plan_cost(marked: pd.DataFrame) -> pd.DataFrame:
    """Per layer of a `mark_plan` table: its channels, how many the plan removes whole, and the
    share of the layer's importance those held (and that partly pruned channels carry)."""
    rows = []
    for layer, part in marked.groupby("layer", sort=False):
        total = float(part["importance"].sum())
        removed = part[part["removed"]]
        partial = part[(part["kept"] < 1) & ~part["removed"]]
        rows.append(
            {
                "layer": layer,
                "channels": len(part),
                "removed": len(removed),
                "removed_importance": float(removed["importance"].sum()) / total if total else 0.0,
                "partly_pruned": len(partial),
                "weights_kept": float(part["kept"].mean()),
            }
        )
    return pd.DataFrame(rows)


register_channel_attribution(criterion_attribution)
register_analysis("layer_importance", layer_importance)
