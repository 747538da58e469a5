"""Shared pieces of the explain package: errors, progress events, private model copies, caches.

Captum runs on private copies of the workbench's model (`Workbench.pruned_model(plan)`), never on
`bench.model`: hooks and gradients on a copy cannot disturb the engine, and the engine's lock is
held only while the copy is made, so computing maps never blocks the Prune page's sliders.
"""

from __future__ import annotations

import operator
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.evaluate.modelling import as_output_tensor as _as_tensor
from workbench.progress import Progress as Progress  # re-exported: explain yields these
from workbench.progress import drain
from workbench.pruning.plan import PruningPlan

if TYPE_CHECKING:
    from workbench.evaluate.workbench import Workbench

T = TypeVar("T")

#: Private model copies kept per workbench (the dense one and a few recent plans).
MODEL_COPIES = 4


class ExplainError(WorkbenchError):
    """A request the explain package cannot serve: unknown method, bad option, no module..."""


class SampleIndexError(ExplainError, IndexError):
    """A sample index outside the validation set."""


# The one progress protocol (workbench.progress); run_to_end is its old name here.
run_to_end = drain


def lookup(registry: Mapping[str, T], name: str, what: str) -> T:
    """`registry[name]`, or an ExplainError that names the choices (`what`: of what kind)."""
    found = registry.get(name)
    if found is None:
        raise ExplainError(f"unknown {what} {name!r}; choose one of {', '.join(registry)}")
    return found


def fixed_batch(model: nn.Module) -> int | None:
    """The batch size a `torch.export` program was exported for, or None when any batch runs.

    A program exported without a dynamic batch dimension guards its input's first size
    (`Guard failed: x.size()[0] == 2`); its placeholder's example value records that size.
    """
    if not isinstance(model, torch.fx.GraphModule):
        return None
    for node in model.graph.nodes:
        if node.op != "placeholder":
            continue
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            size = value.shape[0]
            # A dynamic dimension is a SymInt, not an int.
            return size if isinstance(size, int) and not isinstance(size, bool) else None
    return None


class Forward(nn.Module):
    """The model with its prediction tensor as output (tuples and dicts of logits unwrapped).

    A program exported for a fixed batch runs inputs of any length: they go through in chunks
    of that batch, the last one padded with copies of its last sample, and the padded rows'
    outputs are dropped (so no gradient flows through them).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch = fixed_batch(model)

    def calls(self, n: int) -> int:
        """How many times the model runs for `n` inputs."""
        return 1 if self.batch is None or n <= 0 else -(-n // self.batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or len(x) == self.batch:
            return _as_tensor(self.model(x))
        outputs = []
        for chunk in x.split(self.batch):
            pad = self.batch - len(chunk)
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, *chunk.shape[1:])])
            outputs.append(_as_tensor(self.model(chunk)))
        return torch.cat(outputs)[: len(x)]


@dataclass
class ModelCopy:
    """A private copy of the model in one pruning state; `lock` serialises hooks on it."""

    model: nn.Module
    forward: Forward
    lock: threading.Lock


class _PerBench:
    """Per-workbench caches that die with their workbench."""

    def __init__(self) -> None:
        self.models: OrderedDict[Hashable, ModelCopy] = OrderedDict()
        self.results: dict[str, OrderedDict[Hashable, Any]] = {}


_registry: weakref.WeakKeyDictionary[Any, _PerBench] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _entry(bench: Workbench) -> _PerBench:
    with _registry_lock:
        entry = _registry.get(bench)
        if entry is None:
            entry = _registry[bench] = _PerBench()
        return entry


def plan_key(plan: PruningPlan | None) -> PruningPlan:
    """The model state a plan stands for: None and every all-zero plan are the dense model."""
    if plan is None or plan.is_dense:
        return PruningPlan()
    return plan


def model_copy(bench: Workbench, plan: PruningPlan | None) -> ModelCopy:
    """A private copy of the model pruned by `plan` (the dense model for None), cached per plan."""
    key = plan_key(plan)
    entry = _entry(bench)
    with _registry_lock:
        found = entry.models.get(key)
        if found is not None:
            entry.models.move_to_end(key)
            return found
    # pruned_model deep-copies under the engine's lock and writes the plan's zeros in.
    model = bench.pruned_model(key).eval()
    copy = ModelCopy(model, Forward(model).eval(), threading.Lock())
    with _registry_lock:
        copy = entry.models.setdefault(key, copy)
        entry.models.move_to_end(key)
        while len(entry.models) > MODEL_COPIES:
            entry.models.popitem(last=False)
    return copy


def cached(bench: Workbench, kind: str, key: Hashable) -> Any | None:
    entry = _entry(bench)
    with _registry_lock:
        table = entry.results.get(kind)
        if table is None or key not in table:
            return None
        table.move_to_end(key)
        return table[key]


def store(bench: Workbench, kind: str, key: Hashable, value: Any, limit: int) -> None:
    entry = _entry(bench)
    with _registry_lock:
        table = entry.results.setdefault(kind, OrderedDict())
        table[key] = value
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)


def clear_cache(bench: Workbench | None = None) -> None:
    """Forget cached model copies and results (of one workbench, or of all)."""
    with _registry_lock:
        if bench is None:
            _registry.clear()
        else:
            _registry.pop(bench, None)


def check_indices(indices: Sequence[int] | torch.Tensor | int, n: int) -> tuple[int, ...]:
    """Validation-set indices as a tuple of ints, or a precise error."""
    if isinstance(indices, torch.Tensor):
        if indices.is_floating_point() or indices.is_complex():
            raise ExplainError("sample indices must be integers")
        indices = indices.reshape(-1).tolist()
    elif not isinstance(indices, Sequence) or isinstance(indices, str):
        indices = [indices]  # a single index
    out = []
    for i in indices:
        try:
            if isinstance(i, bool):
                raise TypeError
            i = operator.index(i)  # ints and numpy integers; floats and strings refused
        except TypeError:
            raise ExplainError(f"sample indices must be integers, got {i!r}") from None
        if not 0 <= i < n:
            raise SampleIndexError(
                f"sample index {i} is out of range: the validation set has {n} samples "
                f"(indices 0 to {n - 1})"
            )
        out.append(i)
    if not out:
        raise ExplainError("choose at least one sample")
    return tuple(out)


def subset_indices(samples: int | Sequence[int] | None, n: int, seed: int = 0) -> tuple[int, ...]:
    """All samples (None), a seeded random subset of `samples` of them (int), or given indices.

    A random subset rather than the first n: a validation set sorted by class would otherwise
    give the statistics of a few classes only.
    """
    if samples is None:
        return tuple(range(n))
    if isinstance(samples, int) and not isinstance(samples, bool):
        if samples < 1:
            raise ExplainError(f"the number of samples must be positive, got {samples}")
        if samples >= n:
            return tuple(range(n))
        generator = torch.Generator().manual_seed(seed)
        return tuple(sorted(torch.randperm(n, generator=generator)[:samples].tolist()))
    return tuple(sorted(set(check_indices(samples, n))))


def n_samples(bench: Workbench) -> int:
    """Validation samples of a workbench (labelled or not)."""
    return int(bench.dense_outputs.shape[0])


def loss_targets(bench: Workbench) -> torch.Tensor:
    """The labels, or without labels the dense model's predictions (as the taylor criterion)."""
    if bench.targets is not None:
        return bench.targets
    if bench.task == "classification":
        return bench.dense_outputs.argmax(dim=1)
    return bench.dense_outputs.reshape(-1)


def target_positions(bench: Workbench) -> str:
    """How a model's outputs are read: "classes" (N, C), "scalar" (N,) or "column" (N, 1)."""
    outputs = bench.dense_outputs
    if bench.task == "classification":
        return "classes"
    return "scalar" if outputs.dim() == 1 else "column"


def layer_module(model: nn.Module, layer: str) -> nn.Module:
    """The module of a prunable layer, or a clear error for layers that only exist in a graph."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        module = None
    if isinstance(module, torch.jit.ScriptModule):
        raise ExplainError(
            f"layer {layer!r} is compiled TorchScript, which takes no forward hooks; layer "
            "importance needs a regular nn.Module (input attributions still work)"
        )
    if not isinstance(module, nn.Module) or isinstance(module, nn.ModuleList):
        raise ExplainError(
            f"layer {layer!r} has no module in this model (its weight is used by a graph "
            "operation, as in a loaded torch.export program), so its neurons cannot be hooked; "
            "layer importance needs layers that are modules"
        )
    return module
