"""The engine: exact metrics and size of any pruning plan, paying only for what a change touches."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

from workbench.errors import WorkbenchError
from workbench.evaluate.graph import GraphRunner
from workbench.evaluate.groups import find_groups
from workbench.evaluate.lazy import Lazy
from workbench.evaluate.metrics import (
    Task,
    compute_metrics,
    confusion_matrix,
    declared_task,
    dense_predictions,
    infer_task,
    label_free_task,
)
from workbench.evaluate.modelling import (
    as_output_tensor,
    as_tensors,
    named_tensor,
    private_copy,
    task_of,
)
from workbench.evaluate.removal import ChannelRemoval, analyse
from workbench.evaluate.report import Report, lazy_copy
from workbench.evaluate.size import Figures, TensorSize, effective_flops, total_size
from workbench.evaluate.statistics import DataStatistics
from workbench.pruning.granularity import GRANULARITIES
from workbench.pruning.groups import ChannelGroup, ChannelGroups
from workbench.pruning.layers import PrunableLayer, find_prunable_layers
from workbench.pruning.masks import MaskBuilder, MaskSpec
from workbench.pruning.plan import PruningPlan

#: Default bound on the memory held by cached activations (the live sets at layer cuts).
DEFAULT_CACHE_BYTES = 1 << 30
#: Identical plans (same masks) are answered from this many recent reports.
REPORT_CACHE_SIZE = 64
#: Live-set bytes per slice in `outputs_of_levels`: small enough to stay in a core's L2 cache.
LEVEL_CHUNK_BYTES = 4 << 20
#: Fewest samples in a slice: smaller batches often take other kernels (other rounding).
MIN_SLICE = 64


class EvaluationCancelled(WorkbenchError):
    """An evaluation stopped between batches because its caller no longer wants it."""


class Workbench:
    """Evaluates pruning plans on a private copy of a model; the caller's model is never modified.

    Thread-safe: one workbench can serve many sessions, each with its own plans. The lock
    guards the shared caches (masks, live sets, sizes, reports) only: forward passes run
    outside it, so sessions evaluating different plans overlap.
    """

    def __init__(
        self,
        model: nn.Module,
        val_data: Dataset | tuple[torch.Tensor, torch.Tensor | None] | torch.Tensor,
        *,
        task: Task | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 512,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        class_names: Sequence[str] | None = None,
        statistics: DataStatistics | None = None,
    ) -> None:
        """`statistics`: another workbench's, on the same model, for the criteria that read
        data: a workbench on a subset of its data then ranks weights exactly as it does."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        inputs, targets = as_tensors(val_data)
        #: False for data without targets: metrics then compare with the dense model only.
        self.labelled = targets is not None
        task = task or declared_task(model)  # an embedding model says so; its outputs cannot
        if task is None and targets is not None:
            task = infer_task(targets)
        if task not in (None, "classification", "regression", "embedding"):
            raise ValueError(
                f"task must be 'classification', 'regression' or 'embedding', got {task!r}"
            )
        if task in ("classification", "embedding") and targets is not None:
            targets = targets.long()  # an embedding's labels: classes of its nearest centroid
        self.targets = targets.to(self.device) if targets is not None else None
        self._inputs = [b.to(self.device) for b in inputs.split(batch_size)]

        self.model = private_copy(model).to(self.device).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        # Traced once (torch.fx, else torch.export on the first batch: a transformer's graph).
        self._runner = GraphRunner(self.model, [], example=self._inputs[0])
        layers = find_prunable_layers(self.model, _graph(self._runner))
        if not layers:
            raise ValueError(
                "the model has no prunable layers: the workbench prunes the weights of "
                "nn.Linear and nn.Conv1d/2d/3d layers (or of linear/convolution operations)"
            )
        self._runner = self._runner.for_layers(layers)
        # Without targets, the model's outputs tell the task: logits, or one value per sample.
        self.task: Task = task or task_of(
            self._runner.run({"input": self._inputs[0]}, 0, self._runner.end, {})
        )
        # (out, in, ...) for every layer, a transposed one's too (`PrunableLayer.logical`): masks
        # and scores are laid out so; `PrunableLayer.stored` turns them back for the parameter.
        self._dense = {
            layer.weight_name: layer.logical(_weight(self.model, self._runner, layer))
            for layer in layers
        }
        _check_finite(layers, self._dense)
        # Execution order: a change to a layer invalidates nothing that runs before it.
        self._layers = sorted(layers, key=lambda layer: self._runner.cuts[layer.name])
        self.layer_names = [layer.name for layer in self._layers]

        # What removing a channel removes besides its weight rows (see evaluate.removal).
        self._removals, output_layers = analyse(self._runner, self._layers, self._inputs[0])
        self._producers: dict[str, list[tuple[str, int]]] = {}  # consumer: [(producer, block)]
        for removal in self._removals.values():
            for consumer, block in removal.consumers:
                self._producers.setdefault(consumer, []).append((removal.layer, block))
        self._per_channel = {
            name: _attr_of(self.model, self._runner, name)
            for removal in self._removals.values()
            for name in removal.zeroed
        }
        self._runner.allow_overrides(self._per_channel)

        self.statistics = statistics or DataStatistics(
            self._runner, self._dense, self._batches, self.task, as_output_tensor
        )
        self._builder = MaskBuilder(
            self._layers,
            self._dense,
            self.statistics,
            output_layers=output_layers,
            groups=lambda: self._find_groups(output_layers),
        )
        self._lock = threading.RLock()
        self._activations = _ActivationCache(cache_bytes)
        # Cuts worth caching: where the live set is only the input, every plan resumes there
        # for free (`_input_cut`, the deepest such).
        cuts = sorted({self._runner.cuts[layer.name] for layer in self._layers})
        input_only = [c for c in cuts if self._runner.input_env(c, self._inputs[0]) is not None]
        self._input_cut = max(input_only, default=0)
        self._cacheable = [c for c in cuts if 0 < c < self._runner.end and c not in input_only]
        self._masked: OrderedDict[tuple[str, MaskSpec], torch.Tensor] = OrderedDict()
        self._zeroed: OrderedDict[tuple[str, MaskSpec], dict[str, torch.Tensor]] = OrderedDict()
        self._sizes: dict[tuple, TensorSize] = {}
        self._dense_other_sizes: dict[str, TensorSize] | None = None  # read-only once built
        self._reports: OrderedDict[tuple, Report] = OrderedDict()
        self._last_specs: dict[str, MaskSpec] | None = None
        self._exact_slices: dict[tuple, bool] = {}  # see _slices_exact

        self.dense_outputs = self._forward({}, {})
        self._check_outputs()
        self.class_names = list(class_names or [])
        # The dense predictions every classification report compares with: computed once.
        self._reference = (
            dense_predictions(self.dense_outputs) if self.task == "classification" else None
        )
        self.dense_metrics = compute_metrics(
            self.task, self.dense_outputs, self.targets, self.dense_outputs, self._reference
        )
        self._dense_confusion = self._confusion(self.dense_outputs)
        self._layer_flops, self._flops_dense = self._count_flops()
        self._other_params = {
            name: p for name, p in self.model.named_parameters() if name not in self._dense
        }
        self.dense_size = self._size(self._tensor_sizes({}))

    # ---- public API --------------------------------------------------------------------------

    @property
    def layers(self) -> pd.DataFrame:
        """One row per prunable layer, in execution order."""
        total = sum(p.numel() for p in self.model.parameters())
        return pd.DataFrame(
            {
                "name": [layer.name for layer in self._layers],
                "kind": [layer.kind for layer in self._layers],
                "shape": ["×".join(map(str, layer.shape)) for layer in self._layers],
                "params": [layer.params for layer in self._layers],
                "share": [layer.params / total for layer in self._layers],
                "channels": [layer.channels for layer in self._layers],
                # False for the output layers: their channels are the model's outputs.
                "channel_prunable": [
                    self._builder.channel_prunable(layer.name) for layer in self._layers
                ],
                "flops": [self._layer_flops.get(layer.name, 0) for layer in self._layers],
            }
        )

    @property
    def incremental_note(self) -> str | None:
        """None when a change reruns only the graph after its first changed layer; else one
        line saying that every change reruns the whole model, and why."""
        reason = self._runner.whole_reason
        if reason is None:
            return None
        return f"not incremental: every change reruns the whole model, because {reason}"

    @property
    def output_layers(self) -> frozenset[str]:
        """Layers whose outputs are the model's outputs: channel granularity leaves them dense."""
        return self._builder.output_layers

    @property
    def channel_groups(self) -> ChannelGroups:
        """The coupled channel groups the `group` granularity removes together (found on first
        use), and the layers it prunes alone, with why (`workbench.evaluate.groups`)."""
        with self._lock:
            return self._builder.groups

    def plan_layers(self, granularity: str) -> list[str]:
        """The layers whose own sparsity a plan of `granularity` sets, in execution order:
        every layer, except under `group` the members of a coupled group that follow its
        leader (`channel_groups.followers`)."""
        if granularity != "group":
            return list(self.layer_names)
        followers = self.channel_groups.followers
        return [name for name in self.layer_names if name not in followers]

    def removed_channels(
        self, plan: PruningPlan
    ) -> tuple[dict[str, torch.Tensor], list[tuple[ChannelGroup, torch.Tensor]]]:
        """What a structured plan removes: {layer: bool per output channel, True = removed} of
        the layers cut on their own, and each coupled group it cuts with its removed channels.
        Empty for unstructured and N:M plans."""
        with self._lock:
            specs = self._builder.resolve(plan)
            alone, groups = {}, []
            for name, spec in specs.items():
                if spec.granularity == "group":
                    group = self._builder.groups.of(name)
                    if group.leader == name:
                        groups.append((group, self._builder.group_removed(group, spec)))
                    continue
                removed = self._removed_channels(name, spec)
                if removed is not None and removed.any():
                    alone[name] = removed.cpu()
            return alone, groups

    def channel_removal(self, layer: str) -> ChannelRemoval:
        """What removing the layer's channels zeroes besides its weight rows, and which
        layers' input columns it removes."""
        self._builder.check(PruningPlan(sparsity={layer: 0.0}))
        return self._removals[layer]

    @property
    def val_inputs(self) -> torch.Tensor:
        """The validation inputs, on the workbench's device (read-only)."""
        return torch.cat(self._inputs)

    @property
    def prunable_layers(self) -> list[PrunableLayer]:
        return list(self._layers)

    def dense_weight(self, layer: str) -> torch.Tensor:
        """A layer's dense weight as its parameter stores it (read-only: do not modify it)."""
        found = self._builder.layers[layer]
        return found.stored(self._dense[found.weight_name])

    def masks(self, plan: PruningPlan) -> dict[str, torch.Tensor]:
        """{layer: bool mask shaped like its weight, True = kept} for every layer the plan names."""
        with self._lock:
            masks = self._builder.masks(plan)
            return {name: self._builder.layers[name].stored(m) for name, m in masks.items()}

    def unit_scores(
        self, layer: str, method: str = "l1", granularity: str = "unstructured", seed: int = 0
    ) -> torch.Tensor:
        """The criterion's score of each unit of a layer, float64: one per weight, or per
        channel the ℓp norm of its weights' scores (`Criterion.norm`), as ln_structured."""
        with self._lock:
            found = self._builder.layers[layer]
            scores = self._builder.unit_scores(found, method, granularity, seed)
            if not found.transposed or scores.numel() != found.params:
                return scores
            # One per weight, in the order of the parameter's elements (a Conv1D's (in, out)).
            return found.stored(scores.reshape(found.shape)).reshape(scores.shape)

    def evaluate(self, plan: PruningPlan, cancel: Callable[[], bool] | None = None) -> Report:
        """Metrics and size of the pruned model, equal to a fresh evaluation of a pruned copy.

        `cancel()` is asked between batches; when it says True the evaluation stops with
        EvaluationCancelled and leaves nothing in the caches (a newer plan superseded it)."""
        with self._lock:
            specs = self._builder.resolve(plan)
            key = tuple(sorted(specs.items()))
            notes = self._builder.notes(plan)
            structured = GRANULARITIES[plan.granularity].structured
            # A coupled group names its consumers' columns itself; layers cut alone need the graph.
            alone = [spec for spec in specs.values() if spec.granularity != "group"]
            if structured and alone and _graph(self._runner) is None:
                notes.append(WHOLE_MODEL_CHANNEL_NOTE)
            cached = self._reports.get(key)
            if cached is not None:
                self._reports.move_to_end(key)
                return _fresh_copy(cached, plan, notes)
            weights, sizes = self._overrides(specs), self._tensor_sizes(specs)
        # Outside the lock: other sessions' evaluations run meanwhile. Two sessions asking for
        # the same new plan at once both compute it (the same numbers); the cache keeps one.
        outputs = self._forward(specs, weights, cancel)
        report = self._report(plan, specs, outputs, sizes)
        with self._lock:
            self._reports[key] = report
            if len(self._reports) > REPORT_CACHE_SIZE:
                self._reports.popitem(last=False)
        return _fresh_copy(report, plan, notes)

    def size(self, plan: PruningPlan) -> Figures:
        """`evaluate(plan).size` without running the model (sizes do not depend on the data)."""
        with self._lock:
            return self._size(self._tensor_sizes(self._builder.resolve(plan)))

    def resumes_at(self, plan: PruningPlan) -> str | None:
        """The first layer an evaluation of `plan` would run now: the one after the deepest
        cached live set it can resume from (the first layer when it runs whole); None when
        its report is cached. Looks only: nothing is computed or reordered."""
        with self._lock:
            specs = self._builder.resolve(plan)
            if tuple(sorted(specs.items())) in self._reports:
                return None
            start, _ = self._resume(self._cache_key(specs), peek=True)
        cuts = self._runner.cuts
        later = [layer.name for layer in self._layers if cuts[layer.name] >= start]
        return later[0] if later else self._layers[-1].name

    def tensor_sizes(self, plan: PruningPlan) -> dict[str, TensorSize]:
        """{parameter name: its storage figures under the plan} for every parameter of the
        model, without running it: `evaluate(plan).size` totals these (`size.total_size`).

        Under a channel plan a layer's weight (`PrunableLayer.weight_name`) also loses the
        input columns that read removed channels, and removed channels' biases and norm
        entries are zero.
        """
        with self._lock:
            return self._tensor_sizes(self._builder.resolve(plan))

    def evaluate_model(self, model: nn.Module, plan: PruningPlan) -> Report:
        """The report of `model`, a trained copy of `pruned_model(plan)` (same parameter names),
        on the validation set: its outputs, and the sizes of its own tensors counted as the
        plan's (a fresh evaluation, nothing cached)."""
        outputs = self._outputs_of(model)
        with self._lock:
            specs = self._builder.resolve(plan)
            names = list(self._tensor_sizes(specs))  # the engine's order: totals round alike
            sparse = {
                layer.weight_name
                for layer in self._layers
                if layer.name in specs or self._dead_inputs(layer, specs)
            }
        sizes = {
            name: TensorSize.of(named_tensor(model, name).detach(), sparse=name in sparse)
            for name in names
        }
        report = self._report(plan, specs, outputs, sizes)
        report.notes.extend(self._builder.notes(plan))
        return report

    def model_metrics(self, model: nn.Module) -> dict[str, float]:
        """The metrics of `model` (a trained copy of this one) on the validation set."""
        outputs = self._outputs_of(model)
        return compute_metrics(
            self.task, outputs, self.targets, self.dense_outputs, self._reference
        )

    def kept(self, plan: PruningPlan) -> dict[str, torch.Tensor]:
        """{parameter or buffer name: bool mask, True = kept} of every tensor the plan zeroes:
        the pruned layers' weights (with the input columns that read removed channels), and the
        per-channel entries (biases, BatchNorm) of removed channels. `pruned_model` writes these
        zeros; fine-tuning holds them."""
        with self._lock:
            specs = self._builder.resolve(plan)
            masks: dict[str, torch.Tensor] = {}
            for layer in self._layers:
                spec, dead = specs.get(layer.name), self._dead_inputs(layer, specs)
                if spec is None and not dead:
                    continue
                keep = (
                    self._builder.mask(layer.name, spec)
                    if spec is not None
                    else torch.ones(layer.shape, dtype=torch.bool, device=self.device)
                )
                if dead:
                    columns = self._dead_columns(layer, dead).to(keep.device)
                    keep = keep & ~columns.view(1, -1, *(1,) * (keep.dim() - 2))
                masks[layer.weight_name] = layer.stored(keep)
            for name, spec in specs.items():
                for tensor_name, removed in self._removed_entries(name, spec).items():
                    masks[tensor_name] = ~removed.to(self.device)
            return masks

    def outputs(self, plan: PruningPlan) -> torch.Tensor:
        """The pruned model's outputs on the validation inputs."""
        with self._lock:
            specs = self._builder.resolve(plan)
            weights = self._overrides(specs)
        return self._forward(specs, weights)

    def outputs_of_levels(
        self, plans: Sequence[PruningPlan], chunk_bytes: int = LEVEL_CHUNK_BYTES
    ) -> list[torch.Tensor]:
        """`[outputs(plan) for plan in plans]` in one pass, for plans that prune only layers at
        or after one cut (a scan's levels of one layer): each batch's live set at that cut is
        read once and run through every plan while it is in cache, in slices of about
        `chunk_bytes` where every live value is batched. Each sample runs the same operations
        as in `outputs`, so the values are the same (checked bit for bit in the tests)."""
        with self._lock:
            specs = [self._builder.resolve(plan) for plan in plans]
            weights = [self._overrides(s) for s in specs]
            named = {name for s in specs for name in s}
            cuts = self._runner.cuts
            start = min((cuts[name] for name in named), default=self._runner.end)
            # The deepest cached dense live set at or before the start (nothing before it is
            # pruned by any of the plans).
            resume, envs = self._input_cut if self._input_cut <= start else 0, None
            for cut in reversed(self._cacheable):
                if cut > start:
                    continue
                if cut <= resume:
                    break
                envs = self._activations.get((cut, (None,) * self._prefix_length(cut)))
                if envs is not None:
                    resume = cut
                    break
        if start >= self._runner.end:  # nothing the plans prune is read: the dense outputs
            return [self.dense_outputs.clone() for _ in plans]
        outputs: list[list[torch.Tensor]] = [[] for _ in plans]
        saved = []
        for b, inputs in enumerate(self._inputs):
            env = self._start_env(envs, b, resume, inputs)
            if start != resume:
                env = self._runner.run(env, resume, start, {})
                saved.append(env)
            pieces = _slices(env, inputs.shape[0], chunk_bytes)
            results: list[list[torch.Tensor]] = [[] for _ in plans]
            for piece in pieces:
                for i, plan_weights in enumerate(weights):
                    result = self._runner.run(piece, start, self._runner.end, plan_weights)
                    results[i].append(as_output_tensor(result))
            if len(pieces) > 1 and not self._slices_exact(
                env, start, pieces, weights[0], results[0]
            ):
                results = [  # kernels that depend on the batch size: whole batches
                    [as_output_tensor(self._runner.run(env, start, self._runner.end, w))]
                    for w in weights
                ]
            for out, result in zip(outputs, results, strict=True):
                out.extend(result)
        if saved and start in self._cacheable:
            with self._lock:  # the dense live set at the start, for the next pass or a slider
                self._activations.put((start, (None,) * self._prefix_length(start)), saved)
        return [torch.cat(out) for out in outputs]

    def _slices_exact(
        self,
        env: dict,
        start: int,
        pieces: list[dict],
        weights: dict[str, torch.Tensor],
        sliced: list[torch.Tensor],
    ) -> bool:
        """Whether slicing this batch this way gives the whole batch's values bit for bit: the
        kernels a CPU library picks may depend on the batch size, so each (cut, slice sizes) is
        checked once against a whole-batch run and remembered."""
        key = (start, tuple(next(iter(p.values())).shape[0] for p in pieces))
        with self._lock:
            known = self._exact_slices.get(key)
        if known is None:
            whole = as_output_tensor(self._runner.run(env, start, self._runner.end, weights))
            known = torch.equal(torch.cat(sliced), whole)
            with self._lock:
                self._exact_slices[key] = known
        return known

    def _prefix_length(self, cut: int) -> int:
        """How many layers run before `cut` (the length of an activation key's prefix)."""
        return sum(1 for layer in self._layers if self._runner.cuts[layer.name] < cut)

    def pruned_model(self, plan: PruningPlan) -> nn.Module:
        """A new model with the plan's zeros written in (the caller owns it), parameters frozen.

        Removed channels are removed (see `workbench.evaluate.removal`): their biases and
        BatchNorm entries are zeroed, and so are the input columns that only read them
        (`kept(plan)` lists every zero). Its zeros are plain values: to train it with them
        held, use `wb.finetune` or `wb.masked_model`.
        """
        with self._runner.swap_lock:  # a run may be swapping tensors on it (functional_call, jit)
            model = private_copy(self.model)
        tensors = {**dict(model.named_buffers()), **dict(model.named_parameters())}
        with torch.no_grad():
            for name, keep in self.kept(plan).items():
                target = tensors.get(name)
                if target is None:
                    raise ValueError(f"the model has no parameter or buffer {name!r} to write to")
                # +0.0 where removed: what the evaluation computes, and torch.nn.utils.prune.
                target.masked_fill_(~keep.to(target.device), 0.0)
        for param in model.parameters():
            param.requires_grad_(False)
        return model

    def attribute(self, *args: Any, **options: Any) -> Any:
        """Captum input attributions: `wb.attribute(self, ...)` (workbench.explain)."""
        return _analysis("attribute")(self, *args, **options)

    def layer_importance(self, *args: Any, **options: Any) -> pd.DataFrame:
        """Per-channel Captum importance: `wb.layer_importance(self, ...)` (workbench.explain)."""
        return _analysis("layer_importance")(self, *args, **options)

    def sensitivity(self, *args: Any, **options: Any) -> pd.DataFrame:
        """Each layer pruned alone to each level: `wb.sensitivity(self, ...)`."""
        return _analysis("sensitivity")(self, *args, **options)

    # ---- evaluation --------------------------------------------------------------------------

    def _find_groups(self, output_layers: frozenset[str]) -> ChannelGroups:
        """The coupled groups (the mask builder asks once, under the lock); their per-channel
        tensors become tensors a run may replace."""
        with self._runner.swap_lock:
            groups = find_groups(self.model, self._layers, self._inputs[0], output_layers)
        names = [c.name for g in groups.groups for c in g.zeroed if c.name not in self._per_channel]
        self._per_channel.update({n: _attr_of(self.model, self._runner, n) for n in names})
        self._runner.allow_overrides(names)
        return groups

    def _batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Without targets, the dense model's predictions stand in for them (taylor's loss); an
        # embedding's loss is to its dense embedding, labelled or not.
        labels = self.targets if self.task != "embedding" else None
        targets = labels if labels is not None else self._pseudo_targets()
        return list(zip(self._inputs, targets.split(self.batch_size), strict=True))

    def _pseudo_targets(self) -> torch.Tensor:
        if self.task == "classification":
            return self.dense_outputs.argmax(dim=1)
        if self.task == "embedding":
            return self.dense_outputs
        return self.dense_outputs.reshape(-1)

    def _overrides(self, specs: dict[str, MaskSpec]) -> dict[str, torch.Tensor]:
        """The tensors a plan replaces: masked weights, and the per-channel entries (biases,
        BatchNorm) of removed channels, by parameter or buffer name."""
        weights = {}
        for name, spec in specs.items():
            layer = self._builder.layers[name]
            weights[layer.weight_name] = layer.stored(self._masked_weight(name, spec))
            weights.update(self._zeroed_entries(name, spec))
        return weights

    def _removed_channels(self, name: str, spec: MaskSpec) -> torch.Tensor | None:
        """Bool per output channel, True where removed; None unless the spec removes channels."""
        if not GRANULARITIES[spec.granularity].structured:
            return None
        mask = self._builder.mask(name, spec)
        return ~mask.reshape(mask.shape[0], -1).any(dim=1)

    def _removed_entries(self, name: str, spec: MaskSpec) -> dict[str, torch.Tensor]:
        """{per-channel tensor: bool per entry, True where removed} that removing the layer's
        channels zeroes: its bias and BatchNorm entries; for a group, its leader carries all
        of the group's."""
        removed = self._removed_channels(name, spec)
        if removed is None:
            return {}
        if spec.granularity == "group":
            group = self._builder.groups.of(name)
            if group.leader != name:
                return {}
            channels = self._builder.group_removed(group, spec)
            return {c.name: c.removed(channels) for c in group.zeroed}
        return {
            tensor_name: removed
            for tensor_name in self._removals[name].zeroed
            if self._per_channel[tensor_name].shape[:1] == removed.shape
        }

    def _zeroed_entries(self, name: str, spec: MaskSpec) -> dict[str, torch.Tensor]:
        key = (name, spec)
        if key not in self._zeroed:
            entries = {}
            for tensor_name, removed in self._removed_entries(name, spec).items():
                dense = self._per_channel[tensor_name]
                entries[tensor_name] = torch.where(removed.to(dense.device), 0.0, dense)
            self._zeroed[key] = entries
            if len(self._zeroed) > 4 * len(self._layers):
                self._zeroed.popitem(last=False)
        self._zeroed.move_to_end(key)
        return self._zeroed[key]

    def _dead_inputs(self, layer: PrunableLayer, specs: dict[str, MaskSpec]) -> tuple:
        """(producer, spec, block) of every producer whose removed channels this layer reads;
        block None: a group's leader (the group's consumer columns say which)."""
        alone = tuple(
            (producer, specs[producer], block)
            for producer, block in self._producers.get(layer.name, [])
            if producer in specs and GRANULARITIES[specs[producer].granularity].structured
        )
        if not any(spec.granularity == "group" for spec in specs.values()):
            return alone
        grouped = tuple(
            (group.leader, specs[group.leader], None)
            for group in self._builder.groups.reading(layer.name)
            if group.leader in specs and specs[group.leader].granularity == "group"
        )
        return alone + grouped

    def _effective_weight(
        self, layer: PrunableLayer, specs: dict[str, MaskSpec], dead: tuple | None = None
    ) -> torch.Tensor:
        """The weight as the removal leaves it: masked, and the input columns that read
        removed channels zeroed too (they only ever multiply zeros)."""
        spec = specs.get(layer.name)
        weight = (
            self._dense[layer.weight_name]
            if spec is None
            else self._masked_weight(layer.name, spec)
        )
        dead = self._dead_inputs(layer, specs) if dead is None else dead
        if not dead:
            return weight
        columns = self._dead_columns(layer, dead).to(weight.device)
        return torch.where(columns.view(1, -1, *(1,) * (weight.dim() - 2)), 0.0, weight)

    def _dead_columns(self, layer: PrunableLayer, dead: tuple) -> torch.Tensor:
        columns = torch.zeros(layer.shape[1], dtype=torch.bool)
        for producer, spec, block in dead:
            if block is None:
                group = self._builder.groups.of(producer)
                channels = self._builder.group_removed(group, spec)
                columns |= group.consumer(layer.name).removed(channels)
                continue
            removed = self._removed_channels(producer, spec).cpu()
            columns |= removed.repeat_interleave(block)[: layer.shape[1]]
        return columns

    def _masked_weight(self, name: str, spec: MaskSpec) -> torch.Tensor:
        key = (name, spec)
        if key not in self._masked:
            dense = self._dense[self._builder.layers[name].weight_name]
            # Removed weights become +0.0: outputs equal torch.nn.utils.prune's weight * mask
            # exactly, and compressed sizes are not inflated by -0.0 bit patterns.
            self._masked[key] = torch.where(self._builder.mask(name, spec), dense, 0.0)
            if len(self._masked) > 4 * len(self._layers):
                self._masked.popitem(last=False)
        self._masked.move_to_end(key)
        return self._masked[key]

    def _cache_key(self, specs: dict[str, MaskSpec]) -> Callable[[int], tuple]:
        """The activation cache's key of a plan's live set at a cut: valid wherever every
        layer used before the cut has the same mask."""
        cuts = self._runner.cuts
        signature = [specs.get(layer.name) for layer in self._layers]

        def key(cut: int) -> tuple:
            prefix = tuple(
                s
                for layer, s in zip(self._layers, signature, strict=True)
                if cuts[layer.name] < cut
            )
            return (cut, prefix)

        return key

    def _resume(self, key: Callable[[int], tuple], peek: bool = False) -> tuple[int, list | None]:
        """The deepest cut whose live set is cached (or only the input), and that live set;
        `peek` leaves the cache's order alone. Call under the lock."""
        for cut in reversed(self._cacheable):
            if cut <= self._input_cut:
                break
            envs = self._activations.peek(key(cut)) if peek else self._activations.get(key(cut))
            if envs is not None:
                return cut, envs
        return self._input_cut, None

    def _forward(
        self,
        specs: dict[str, MaskSpec],
        weights: dict[str, torch.Tensor],
        cancel: Callable[[], bool] | None = None,
    ) -> torch.Tensor:
        """Outputs for all validation inputs, resuming from the deepest cached cut. Only the
        cache lookups hold the lock; the forward pass runs outside it. `cancel()` is asked
        before each batch: True stops with EvaluationCancelled, and nothing is cached."""
        cuts, key = self._runner.cuts, self._cache_key(specs)
        with self._lock:
            start, start_envs = self._resume(key)
            # Keep the live set before the first layer that changed since the last plan: the
            # next plan (the next step of the same slider) will most likely start there.
            if self._last_specs is None:
                wanted = [c for c in self._cacheable if c > start]
            else:
                changed = [
                    cuts[layer.name]
                    for layer in self._layers
                    if self._last_specs.get(layer.name) != specs.get(layer.name)
                ]
                wanted = [c for c in changed[:1] if c > start and c in self._cacheable]
            self._last_specs = dict(specs)

        stops = sorted(set(wanted)) + [self._runner.end]
        saved: dict[int, list] = {cut: [] for cut in wanted}
        outputs = []
        for b, inputs in enumerate(self._inputs):
            if cancel is not None and cancel():
                raise EvaluationCancelled("a newer plan superseded this evaluation")
            env = self._start_env(start_envs, b, start, inputs)
            position = start
            for stop in stops:
                result = self._runner.run(env, position, stop, weights)
                if stop == self._runner.end:
                    outputs.append(as_output_tensor(result))
                else:
                    saved[stop].append(result)
                    if b == 0:  # at each cut: what is held never outgrows the budget
                        saved = self._fit_budget(saved, len(self._inputs))
                    env, position = result, stop
            if b == 0:
                stops = [*sorted(saved), self._runner.end]
        with self._lock:
            # Shallow first: the deep cuts (small live sets, long prefixes saved) are the most
            # recently used, so the least recently used order evicts shallow ones first.
            for cut in sorted(saved):
                self._activations.put(key(cut), saved[cut])
            if start_envs is not None:
                self._activations.get(key(start))  # keep the entry we resumed from the freshest
        return torch.cat(outputs)

    def _start_env(self, envs: list | None, b: int, start: int, inputs: torch.Tensor) -> Any:
        """Batch `b`'s live set at `start`: cached, or the input itself."""
        if envs is not None:
            return envs[b]
        return self._runner.input_env(start, inputs) if start else {"input": inputs}

    def _fit_budget(self, saved: dict[int, list], n_batches: int) -> dict[int, list]:
        """Drop cuts whose live sets would not fit the cache, judged from the first batch:
        the deepest are kept first (they save the most work for their bytes); cuts the batch
        has not reached yet stay."""
        kept, room = {}, self._activations.budget
        for cut in sorted(saved, reverse=True):
            if not saved[cut]:
                kept[cut] = saved[cut]
                continue
            estimate = _env_bytes(saved[cut][0]) * n_batches
            if estimate <= room:
                kept[cut] = saved[cut]
                room -= estimate
        return kept

    def _check_outputs(self) -> None:
        out, n = self.dense_outputs, sum(batch.shape[0] for batch in self._inputs)
        if out.shape[0] != n:
            raise ValueError(f"the model returned {out.shape[0]} outputs for {n} inputs")
        if not torch.isfinite(out).all():
            raise ValueError("the dense model produces NaN or infinite outputs on this data")
        if self.task == "classification":
            if out.dim() != 2:
                raise ValueError(
                    f"a classifier must return (batch, classes) logits, got {tuple(out.shape)}"
                )
            low, high = (
                (int(self.targets.min()), int(self.targets.max()))
                if self.targets is not None
                else (0, 0)
            )
            if low < 0 or high >= out.shape[1]:
                raise ValueError(
                    f"labels must be within 0..{out.shape[1] - 1} for a model with "
                    f"{out.shape[1]} outputs; found labels from {low} to {high}"
                )
        elif self.task == "embedding":
            if out.dim() != 2:
                raise ValueError(
                    f"an embedding model must return (batch, dim); got {tuple(out.shape)}"
                )
        elif out.numel() != n:
            raise ValueError(
                f"a regressor must return one value per sample; got shape {tuple(out.shape)}"
            )

    def _confusion(self, outputs: torch.Tensor) -> np.ndarray | None:
        if self.task != "classification":
            return None
        n_classes = outputs.shape[1]
        # Without targets, rows are the dense model's predictions: the diagonal is agreement.
        truth = self.targets if self.targets is not None else self.dense_outputs.argmax(dim=1)
        return confusion_matrix(outputs.argmax(dim=1), truth, n_classes).cpu().numpy()

    # ---- size and FLOPs ----------------------------------------------------------------------

    def _count_flops(self) -> tuple[dict[str, int], int]:
        try:
            return self._flops_of(self._inputs[0][:1])
        except (AssertionError, RuntimeError):
            # A program exported for a fixed batch size runs whole batches only: count one
            # batch, then per sample (every layer's work grows linearly with the batch).
            batch = self._inputs[0]
            per_layer, total = self._flops_of(batch)
            return {k: v // len(batch) for k, v in per_layer.items()}, total // len(batch)

    def _flops_of(self, sample: torch.Tensor) -> tuple[dict[str, int], int]:
        per_layer: dict[str, int] = {}

        def record(layer: PrunableLayer, inputs: torch.Tensor, output: torch.Tensor) -> None:
            # FlopCounterMode's formulas: 2·out·in·positions (linear), 2·|output|·|kernel| (conv).
            if layer.kind == "Linear":
                positions = inputs.numel() // layer.shape[1]
                flops = 2 * layer.params * positions
            else:
                flops = 2 * output.numel() * (layer.params // layer.shape[0])
            per_layer[layer.name] = per_layer.get(layer.name, 0) + flops

        with torch.no_grad():
            self._runner.run({"input": sample}, 0, self._runner.end, {}, layer_hook=record)
            counter = FlopCounterMode(display=False)
            with counter:
                self._runner.run({"input": sample}, 0, self._runner.end, {})
        return per_layer, int(counter.get_total_flops())

    def _tensor_size(self, layer: PrunableLayer, specs: dict[str, MaskSpec]) -> TensorSize:
        spec, dead = specs.get(layer.name), self._dead_inputs(layer, specs)
        key = (layer.name, spec, dead)
        if key not in self._sizes:
            weight = self._effective_weight(layer, specs, dead)
            # Unpruned weights are stored dense; pruned ones in the smaller sparse encoding.
            self._sizes[key] = TensorSize.of(
                weight, sparse=spec is not None or bool(dead), lazy=True
            )
        return self._sizes[key]

    def _tensor_sizes(self, specs: dict[str, MaskSpec]) -> dict[str, TensorSize]:
        sizes = {layer.weight_name: self._tensor_size(layer, specs) for layer in self._layers}
        return {**sizes, **self._other_sizes(specs)}

    def _other_sizes(self, specs: dict[str, MaskSpec]) -> dict[str, TensorSize]:
        """Sizes of the other parameters (biases, norms), with removed channels' entries zeroed."""
        zeroed_by = {}
        for name, spec in specs.items():
            for tensor_name in self._zeroed_entries(name, spec):
                zeroed_by[tensor_name] = (name, spec)
        if not zeroed_by and self._dense_other_sizes is not None:
            return self._dense_other_sizes  # no channel removed: the same every step
        sizes = {}
        for tensor_name, param in self._other_params.items():
            key = (tensor_name, zeroed_by.get(tensor_name))
            if key not in self._sizes:
                value = param
                if key[1] is not None:
                    value = self._zeroed_entries(*key[1])[tensor_name]
                self._sizes[key] = TensorSize.of(value, sparse=False, lazy=True)  # dense
            sizes[tensor_name] = self._sizes[key]
        if not zeroed_by:
            self._dense_other_sizes = sizes
        return sizes

    def _report(
        self,
        plan: PruningPlan,
        specs: dict[str, MaskSpec],
        outputs: torch.Tensor,
        sizes: dict[str, TensorSize],
    ) -> Report:
        def layer_table() -> pd.DataFrame:
            with self._lock:  # reads the mask cache
                return self._layer_table(specs, sizes)

        # The tables only a view asks for are built when it does.
        return Report(
            plan=plan,
            task=self.task if self.labelled else label_free_task(self.task),
            metrics=compute_metrics(
                self.task, outputs, self.targets, self.dense_outputs, self._reference
            ),
            dense_metrics=dict(self.dense_metrics),
            size=self._size(sizes),
            dense_size=self.dense_size,
            layers=Lazy(layer_table),
            class_names=self.class_names,
            confusion=Lazy(lambda: self._confusion(outputs)),
            dense_confusion=self._dense_confusion,
        )

    def _outputs_of(self, model: nn.Module) -> torch.Tensor:
        """Another model's outputs on the validation inputs, in evaluation mode."""
        training = model.training
        try:
            model.eval()
            with torch.no_grad():
                return torch.cat([as_output_tensor(model(batch)) for batch in self._inputs])
        finally:
            model.train(training)

    def _size(self, sizes: dict[str, TensorSize]) -> Figures:
        nonzero = {layer.name: sizes[layer.weight_name].nonzero for layer in self._layers}
        effective = effective_flops(
            self._flops_dense,
            (
                (self._layer_flops.get(layer.name, 0), nonzero[layer.name], layer.params)
                for layer in self._layers
            ),
        )
        return total_size(list(sizes.values()), self._flops_dense, effective)

    def _layer_table(
        self, specs: dict[str, MaskSpec], sizes: dict[str, TensorSize]
    ) -> pd.DataFrame:
        columns: dict[str, list] = {}
        for layer in self._layers:
            spec = specs.get(layer.name)
            size = sizes[layer.weight_name]
            dead = self._dead_inputs(layer, specs)
            row = {
                "name": layer.name,
                "kind": layer.kind,
                "params": layer.params,
                "nonzero": size.nonzero,
                "sparsity": 1 - size.nonzero / layer.params,
                "method": spec.method if spec else None,
                "granularity": spec.granularity if spec else None,
                "removed_units": spec.removed if spec else 0,
                # Input columns that read removed channels of an earlier layer.
                "removed_inputs": int(self._dead_columns(layer, dead).sum()) if dead else 0,
                "flops": self._layer_flops.get(layer.name, 0),
            }
            for name, value in row.items():
                columns.setdefault(name, []).append(value)
        return pd.DataFrame(columns)  # from columns: a list of row dicts is several times slower


# Without a graph the engine cannot see which later layers read a channel (issue: TorchScript).
WHOLE_MODEL_CHANNEL_NOTE = (
    "this model runs as a whole (no graph to follow), so the input columns of later layers that "
    "read a removed channel are not counted as removed: sizes and FLOPs are an upper bound"
)


def _fresh_copy(report: Report, plan: PruningPlan, notes: list[str]) -> Report:
    """A report the caller may modify without touching the cached one or other sessions'
    (its sizes are read-only; its tables are copied when first read)."""
    return lazy_copy(
        report,
        plan=plan,
        notes=list(notes),
        metrics=dict(report.metrics),
        dense_metrics=dict(report.dense_metrics),
    )


class _ActivationCache:
    """Live sets at cuts, least recently used evicted first, bounded in bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[tuple, tuple[list, int]] = OrderedDict()

    def peek(self, key: tuple) -> list | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def get(self, key: tuple) -> list | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: tuple, envs: list) -> None:
        size = sum(_env_bytes(env) for env in envs)
        if size > self.budget:
            return
        if key in self._entries:
            self.used -= self._entries.pop(key)[1]
        while self.used + size > self.budget and self._entries:
            self.used -= self._entries.popitem(last=False)[1][1]
        self._entries[key] = (envs, size)
        self.used += size


def _env_bytes(env: dict) -> int:
    seen, total = set(), 0
    for value in env.values():
        if isinstance(value, torch.Tensor):
            # A batch is often a view of one big tensor: count what the view covers, once.
            ptr = value.data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += value.numel() * value.element_size()
    return total


def _slices(env: dict, n: int, chunk_bytes: int) -> list[dict]:
    """The live set cut along the batch into slices of about `chunk_bytes`, or whole when a
    value is not batched (a constant, a shape)."""
    batched = (
        isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n for v in env.values()
    )
    if not all(batched):
        return [env]
    per_sample = max(1, _env_bytes(env) // max(n, 1))
    size = max(MIN_SLICE, chunk_bytes // per_sample)
    if size >= n:
        return [env]
    return [{k: v[i : i + size] for k, v in env.items()} for i in range(0, n, size)]


# Analyses live above the engine and register themselves here when imported (import workbench
# imports them all): the engine's convenience methods reach them without importing upward.
_ANALYSES: dict[str, Callable[..., Any]] = {}


def register_analysis(name: str, function: Callable[..., Any]) -> None:
    _ANALYSES[name] = function


def _analysis(name: str) -> Callable[..., Any]:
    if name not in _ANALYSES:
        raise RuntimeError(f"no {name!r} analysis is registered: import workbench first")
    return _ANALYSES[name]


def _graph(runner: GraphRunner) -> torch.fx.Graph | None:
    return runner.graph_module.graph if runner.graph_module is not None else None


def _weight(model: nn.Module, runner: GraphRunner, layer: PrunableLayer) -> torch.Tensor:
    return _attr_of(model, runner, layer.weight_name)


def _attr_of(model: nn.Module, runner: GraphRunner, name: str) -> torch.Tensor:
    value = runner.graph_module if runner.graph_module is not None else model
    for part in name.split("."):
        value = getattr(value, part)
    return value.detach()


def _check_finite(layers: list[PrunableLayer], weights: dict[str, torch.Tensor]) -> None:
    bad = [layer.name for layer in layers if not torch.isfinite(weights[layer.weight_name]).all()]
    if bad:
        raise ValueError(f"NaN or infinite weights in layer(s): {', '.join(bad)}")
