"""From a plan to masks: scores, removal orders and masks, each computed once and cached."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from workbench.pruning.criteria import CRITERIA, LayerContext, LayerStatistics
from workbench.pruning.granularity import GRANULARITIES
from workbench.pruning.granularity.base import cut_is_tied
from workbench.pruning.groups import ChannelGroup, ChannelGroups
from workbench.pruning.layers import PrunableLayer
from workbench.pruning.plan import PlanError, PruningPlan


@dataclass(frozen=True)
class MaskSpec:
    """Everything that determines one layer's mask: the `removed` lowest-scored units.

    A tie at the cut is broken as torch.nn.utils.prune breaks it for this layer alone
    (`Granularity.removed_units`), unless `tied` lists the tied units to remove: a global
    ranking's choice, which the layer's own count does not determine.
    """

    method: str
    granularity: str
    removed: int
    seed: int = 0
    tied: tuple[int, ...] | None = None


class MaskBuilder:
    """Turns plans into per-layer mask specs and masks, reusing scores and sort orders."""

    def __init__(
        self,
        layers: list[PrunableLayer],
        weights: Mapping[str, torch.Tensor],
        statistics: LayerStatistics,
        max_masks: int = 256,
        output_layers: frozenset[str] = frozenset(),
        groups: Callable[[], ChannelGroups] = ChannelGroups,
    ) -> None:
        # In execution order: a global ranking concatenates the layers in this order.
        self.layers = {layer.name: layer for layer in layers}
        #: Layers whose output channels are the model's outputs: structured granularities
        #: cannot remove them (they would delete classes or the regression target).
        self.output_layers = frozenset(output_layers)
        self._weights = weights  # dense, keyed by weight name
        self._statistics = statistics
        self._unit_scores: dict[tuple[str, str, str, int], torch.Tensor] = {}
        self._orders: dict[tuple[str, str, str, int], torch.Tensor] = {}
        self._units: dict[tuple[str, str], torch.Tensor] = {}
        self._global_orders: dict[tuple, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}
        self._masks: OrderedDict[tuple[str, MaskSpec], torch.Tensor] = OrderedDict()
        self._max_masks = max_masks
        self._find_groups = groups  # found on first use: most plans never need them
        self._groups: ChannelGroups | None = None
        self._group_cuts: dict[tuple[str, MaskSpec], torch.Tensor] = {}

    # ---- plans -----------------------------------------------------------------------------

    def check(self, plan: PruningPlan) -> None:
        unknown = [name for name in (*plan.sparsity, *plan.methods) if name not in self.layers]
        if unknown:
            raise PlanError(
                f"unknown layer {unknown[0]!r}; prunable layers are: {', '.join(self.layers)}"
            )

    def channel_prunable(self, name: str) -> bool:
        """Whether structured (channel) granularity may remove this layer's output channels."""
        return name not in self.output_layers

    def skipped(self, plan: PruningPlan) -> dict[str, str]:
        """Layers the plan asks to prune that it leaves dense, each with the reason."""
        if not GRANULARITIES[plan.granularity].structured:
            return {}
        skipped = {
            name: (
                f"{name} is the model's output layer: its channels are the model's outputs "
                f"(classes or targets), so {plan.granularity} pruning leaves it dense; prune it "
                "unstructured instead"
            )
            for name, sparsity in plan.sparsity.items()
            if sparsity > 0 and not self.channel_prunable(name)
        }
        if plan.granularity == "group":
            for name, sparsity in plan.sparsity.items():
                group = self.groups.of(name)
                if group is None or group.leader == name or name in skipped:
                    continue
                leader = plan.sparsity.get(group.leader, 0.0)
                if sparsity != leader:
                    others = [n for n in group.names if n != name]
                    why = "one attention block" if group.unit == "head" else "added together"
                    skipped[name] = (
                        f"{name} shares its {group.unit}s with {', '.join(others)} ({why}), so "
                        f"it is cut with their group at {group.leader}'s {leader:.0%}, not at "
                        f"its own {sparsity:.0%}"
                    )
        return skipped

    def notes(self, plan: PruningPlan) -> list[str]:
        """What the plan leaves undone, in words: the skipped layers, and under `group` the
        layers cut alone because their channels could not be grouped, with why."""
        notes = list(self.skipped(plan).values())
        if plan.granularity == "group":
            alone: dict[str, list[str]] = {}
            for name, sparsity in plan.sparsity.items():
                why = self.groups.alone.get(name)
                if sparsity > 0 and why is not None:
                    alone.setdefault(why, []).append(name)
            notes += [
                f"{', '.join(names)}: cut alone, not with coupled layers, because {why}"
                for why, names in alone.items()
            ]
        return notes

    @property
    def groups(self) -> ChannelGroups:
        """The model's coupled channel groups (found on first use)."""
        if self._groups is None:
            self._groups = self._find_groups()
        return self._groups

    def resolve(self, plan: PruningPlan) -> dict[str, MaskSpec]:
        """The mask spec of every layer the plan prunes (layers it leaves dense are absent)."""
        self.check(plan)
        granularity = GRANULARITIES[plan.granularity]
        skipped = self.skipped(plan)
        cuts: dict[str, tuple[int, tuple[int, ...] | None]]
        if plan.granularity == "group":
            return self._group_specs(plan, skipped)
        if plan.scope == "global" and granularity.ranks_globally:
            cuts = self._global_cut(plan, skipped)
        else:
            cuts = {}
            for name, sparsity in plan.sparsity.items():
                if name in skipped:
                    continue
                layer = self.layers[name]
                units = self.n_units(layer, plan.granularity)
                cuts[name] = (granularity.count(sparsity, units, layer), None)
        return {
            name: MaskSpec(
                plan.method_for(name),
                plan.granularity,
                count,
                plan.seed if plan.method_for(name) == "random" else 0,
                tied,
            )
            for name, (count, tied) in cuts.items()
            if count > 0
        }

    def _group_specs(self, plan: PruningPlan, skipped: Mapping[str, str]) -> dict[str, MaskSpec]:
        """A group's members all get its leader's spec; a layer in no group is cut alone,
        exactly as a channel plan cuts it."""
        specs = {}
        channel = GRANULARITIES["channel"]
        for name, sparsity in plan.sparsity.items():
            if name in skipped:
                continue
            method = plan.method_for(name)
            seed = plan.seed if method == "random" else 0
            group = self.groups.of(name)
            if group is None:
                layer = self.layers[name]
                count = channel.count(sparsity, self.n_units(layer, "channel"), layer)
                if count > 0:
                    specs[name] = MaskSpec(method, "channel", count, seed)
            elif group.leader == name:
                count = round(sparsity * group.channels)
                if count > 0:
                    for member in group.names:
                        specs[member] = MaskSpec(method, "group", count, seed)
        return specs

    def group_removed(self, group: ChannelGroup, spec: MaskSpec) -> torch.Tensor:
        """Bool per channel of the group, True for the `spec.removed` lowest-ranked: the mean
        over its members of their channel scores, cut as a channel plan cuts one layer."""
        key = (group.leader, spec)
        if key not in self._group_cuts:
            scores = torch.zeros(group.channels, dtype=torch.float64)
            for member in group.members:
                layer = self.layers[member.name]
                own = self.unit_scores(layer, spec.method, "channel", spec.seed)
                # a channel may own several rows (a head's): their scores add up
                scores.index_add_(0, member.root, own[member.index].double())
            scores /= len(group.members)
            channel = GRANULARITIES["channel"]
            order = channel.removal_order(scores, None)
            self._group_cuts[key] = channel.removed_units(scores, order, spec.removed)
        return self._group_cuts[key]

    def _global_cut(
        self, plan: PruningPlan, skipped: Mapping[str, str]
    ) -> dict[str, tuple[int, tuple[int, ...] | None]]:
        """Per layer: units removed, and the tied units removed where the cut splits a tie."""
        names = [
            n for n in self.layers if plan.sparsity.get(n, 0.0) > 0 and n not in skipped
        ]  # execution order, as global_unstructured given the layers in that order
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
            starts = [0, *torch.tensor(sizes).cumsum(0).tolist()]
            self._global_orders[key] = (scores, torch.argsort(scores, stable=True), starts)
        scores, order, starts = self._global_orders[key]
        if not cut_is_tied(scores, order, target):
            bounds = torch.tensor(starts[1:-1])
            owner = torch.bucketize(order[:target], bounds, right=True)
            counts = torch.bincount(owner, minlength=len(names)).tolist()
            return {n: (count, None) for n, count in zip(names, counts, strict=True)}
        # global_unstructured's L1Unstructured: torch.topk(..., largest=False) over all scores.
        removed = torch.zeros(scores.numel(), dtype=torch.bool)
        removed[torch.topk(scores, target, largest=False).indices] = True
        cuts: dict[str, tuple[int, tuple[int, ...] | None]] = {}
        for i, n in enumerate(names):
            local = removed[starts[i] : starts[i + 1]]
            count = int(local.sum())
            layer_scores = scores[starts[i] : starts[i + 1]]
            layer_order = self._order(
                self.layers[n], plan.method_for(n), plan.granularity, plan.seed
            )
            tied = None
            if cut_is_tied(layer_scores, layer_order, count):
                at_cut = layer_scores == layer_scores[layer_order[count - 1]]
                tied = tuple(torch.nonzero(local & at_cut).flatten().tolist())
            cuts[n] = (count, tied)
        return cuts

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
            criterion = CRITERIA[method]
            # On the CPU, as the oracle (torch.nn.utils.prune on a CPU copy) computes them.
            scores = criterion.scores(context).detach().cpu()
            if scores.shape != torch.Size(layer.shape):
                raise ValueError(
                    f"criterion {method!r} gave scores shaped {tuple(scores.shape)} for layer "
                    f"{layer.name!r} with weight {layer.shape}"
                )
            units = GRANULARITIES[granularity].unit_scores(scores, layer, criterion.norm)
            # float64 holds float32 values exactly, and torch.topk compares float32 in float64
            # on the CPU: the same order and the same choice among ties as on the originals.
            self._unit_scores[key] = units.double()
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
        if spec.granularity == "group":
            group = self.groups.of(name)
            rows = group.member(name).removed(self.group_removed(group, spec))
            keep = ~rows[self._unit_index(layer, "channel")]
            return self._remember(key, keep.to(self._weights[layer.weight_name].device))
        order = self._order(layer, spec.method, spec.granularity, spec.seed)
        units = self._unit_index(layer, spec.granularity)
        if spec.tied is None:
            scores = self.unit_scores(layer, spec.method, spec.granularity, spec.seed)
            removed_units = GRANULARITIES[spec.granularity].removed_units(
                scores, order, spec.removed
            )
        else:
            # Every unit scoring below the cut's value precedes the tied ones in the order.
            removed_units = torch.zeros(order.numel(), dtype=torch.bool)
            removed_units[order[: spec.removed - len(spec.tied)]] = True
            removed_units[list(spec.tied)] = True
        keep = ~removed_units[units]
        return self._remember(key, keep.to(self._weights[layer.weight_name].device))

    def _remember(self, key: tuple[str, MaskSpec], keep: torch.Tensor) -> torch.Tensor:
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
