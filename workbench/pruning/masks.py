"""From a plan to masks: scores, removal orders and masks, each computed once and cached."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from workbench.pruning.criteria import CRITERIA, LayerContext, LayerStatistics
from workbench.pruning.granularity import GRANULARITIES
from workbench.pruning.layers import PrunableLayer
from workbench.pruning.plan import PlanError, PruningPlan


@dataclass(frozen=True)
class MaskSpec:
    """Everything that determines one layer's mask: remove the first `removed` units in order."""

    method: str
    granularity: str
    removed: int
    seed: int = 0


class MaskBuilder:
    """Turns plans into per-layer mask specs and masks, reusing scores and sort orders."""

    def __init__(
        self,
        layers: list[PrunableLayer],
        weights: Mapping[str, torch.Tensor],
        statistics: LayerStatistics,
        max_masks: int = 256,
    ) -> None:
        self.layers = {layer.name: layer for layer in layers}
        self._weights = weights  # dense, keyed by weight name
        self._statistics = statistics
        self._unit_scores: dict[tuple[str, str, str, int], torch.Tensor] = {}
        self._orders: dict[tuple[str, str, str, int], torch.Tensor] = {}
        self._units: dict[tuple[str, str], torch.Tensor] = {}
        self._global_orders: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._masks: OrderedDict[tuple[str, MaskSpec], torch.Tensor] = OrderedDict()
        self._max_masks = max_masks

    # ---- plans -----------------------------------------------------------------------------

    def check(self, plan: PruningPlan) -> None:
        unknown = [name for name in (*plan.sparsity, *plan.methods) if name not in self.layers]
        if unknown:
            raise PlanError(
                f"unknown layer {unknown[0]!r}; prunable layers are: {', '.join(self.layers)}"
            )

    def resolve(self, plan: PruningPlan) -> dict[str, MaskSpec]:
        """The mask spec of every layer the plan prunes (layers it leaves dense are absent)."""
        self.check(plan)
        granularity = GRANULARITIES[plan.granularity]
        seed = plan.seed
        if plan.scope == "global" and granularity.ranks_globally:
            removed = self._global_counts(plan)
        else:
            removed = {}
            for name, sparsity in plan.sparsity.items():
                layer = self.layers[name]
                units = self.n_units(layer, plan.granularity)
                removed[name] = granularity.count(sparsity, units, layer)
        return {
            name: MaskSpec(
                plan.method_for(name),
                plan.granularity,
                count,
                seed if plan.method_for(name) == "random" else 0,
            )
            for name, count in removed.items()
            if count > 0
        }

    def _global_counts(self, plan: PruningPlan) -> dict[str, int]:
        names = [name for name, s in plan.sparsity.items() if s > 0]
        if not names:
            return {}
        sizes = [self.n_units(self.layers[n], plan.granularity) for n in names]
        values = [plan.sparsity[n] for n in names]
        if len(set(values)) == 1:  # the common case, computed exactly as global_unstructured
            target = round(values[0] * sum(sizes))
        else:
            target = round(sum(v * s for v, s in zip(values, sizes, strict=True)))
        key = (
            tuple(names),
            tuple(plan.method_for(n) for n in names),
            plan.granularity,
            plan.seed,
        )
        if key not in self._global_orders:
            scores = torch.cat(
                [
                    self.unit_scores(
                        self.layers[n], plan.method_for(n), plan.granularity, plan.seed
                    )
                    for n in names
                ]
            )
            owner = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(sizes))
            self._global_orders[key] = (torch.argsort(scores.cpu(), stable=True), owner)
        order, owner = self._global_orders[key]
        counts = torch.bincount(owner[order[:target]], minlength=len(names)).tolist()
        return dict(zip(names, counts, strict=True))

    # ---- cached pieces ---------------------------------------------------------------------

    def n_units(self, layer: PrunableLayer, granularity: str) -> int:
        return int(self._unit_index(layer, granularity).max()) + 1

    def _unit_index(self, layer: PrunableLayer, granularity: str) -> torch.Tensor:
        key = (layer.name, granularity)
        if key not in self._units:
            self._units[key] = GRANULARITIES[granularity].units(layer)
        return self._units[key]

    def unit_scores(
        self, layer: PrunableLayer, method: str, granularity: str, seed: int = 0
    ) -> torch.Tensor:
        """The criterion's score of each unit (weights summed per unit), in float64 on the CPU."""
        key = (layer.name, method, granularity, seed)
        if key not in self._unit_scores:
            context = LayerContext(layer, self._weights[layer.weight_name], self._statistics, seed)
            scores = CRITERIA[method].scores(context).detach().double().cpu()
            if scores.shape != torch.Size(layer.shape):
                raise ValueError(
                    f"criterion {method!r} gave scores shaped {tuple(scores.shape)} for layer "
                    f"{layer.name!r} with weight {layer.shape}"
                )
            units = self._unit_index(layer, granularity).reshape(-1)
            n = int(units.max()) + 1
            self._unit_scores[key] = torch.zeros(n, dtype=torch.float64).index_add_(
                0, units, scores.reshape(-1)
            )
        return self._unit_scores[key]

    def _order(
        self, layer: PrunableLayer, method: str, granularity: str, seed: int
    ) -> torch.Tensor:
        key = (layer.name, method, granularity, seed)
        if key not in self._orders:
            scores = self.unit_scores(layer, method, granularity, seed)
            self._orders[key] = GRANULARITIES[granularity].removal_order(scores, layer)
        return self._orders[key]

    def mask(self, name: str, spec: MaskSpec) -> torch.Tensor:
        """Boolean mask shaped like the layer's weight, True where the weight is kept."""
        key = (name, spec)
        if key in self._masks:
            self._masks.move_to_end(key)
            return self._masks[key]
        layer = self.layers[name]
        order = self._order(layer, spec.method, spec.granularity, spec.seed)
        units = self._unit_index(layer, spec.granularity)
        removed_units = torch.zeros(order.numel(), dtype=torch.bool)
        removed_units[order[: spec.removed]] = True
        keep = ~removed_units[units]
        keep = keep.to(self._weights[layer.weight_name].device)
        self._masks[key] = keep
        if len(self._masks) > self._max_masks:
            self._masks.popitem(last=False)
        return keep

    def masks(self, plan: PruningPlan) -> dict[str, torch.Tensor]:
        """Masks of every layer the plan names (all True for layers it leaves dense)."""
        specs = self.resolve(plan)
        out = {}
        for name in plan.sparsity:
            if name in specs:
                out[name] = self.mask(name, specs[name])
            else:
                weight = self._weights[self.layers[name].weight_name]
                out[name] = torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
        return out
