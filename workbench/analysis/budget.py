"""Per-layer budgets from a sensitivity scan: three ways to spend one target, predicted, measured.

Given a target (a global sparsity, a number of non-zero parameters, a sparse size in bytes, or
FLOPs per sample) and constraints (locked layers, per-layer minimum and maximum sparsity, a
maximum metric drop), `solve_budget` proposes three pruning plans:

- **equal-drop**: every free layer gets the largest sparsity whose drop on its own scan curve
  stays within one common drop δ, and δ is the smallest that reaches the target. Layers that
  barely react to pruning take most of it. Each curve is made non-decreasing first (the drop at
  s is the worst drop at any level up to s), so a lucky bump never buys sparsity. With
  `interpolate=True` (default) sparsities are multiples of `step` (1 %, the Prune page's slider
  step) read off the curve linearly interpolated between scanned levels; with False only
  scanned levels are used. A step of δ can carry a layer along a flat stretch of its curve far
  past the target, so the layers that moved at the last step go only the same fraction of
  their way that the target needs. Without a target, δ is the largest common drop whose
  summed drops stay within `max_drop`.
- **uniform**: the same sparsity on every free layer (clipped to its bounds), the smallest
  multiple of `step` that reaches the target.
- **global**: the free layers' units ranked together by the scan's criterion (`scope="global"`:
  with l1, global magnitude pruning), the smallest multiple of `step` that reaches the target.
  Where the cut falls outside a layer's bounds, that layer is held at the bound and the others
  are ranked again; the plan is then per layer, rounded to `step`.

Each proposal carries the metric predicted by adding the single-layer drops read off the scan
(clipped to the metric's range) and the metric measured by evaluating the whole plan: the
difference is how much the layers interact. All three use the scan's criterion and granularity,
so only the allocation differs.

**A max drop is met as measured, not as predicted.** Layers pruned together can cost far more
than the sum of their single-layer drops, so with `max_drop` each proposal is refined with
measured evaluations: its allocation is rebuilt for a lower (or, without a target, a higher)
global sparsity, found by bisection, until the whole plan's measured drop is within the limit.
The proposal marked `recommended` is the best measured one: within the max drop, then meeting
the target, then (without a target) the most sparsity, then the best metric.

**No layer is removed whole** unless `whole_layers=True`: every free layer keeps at least one
weight (or channel), so its largest sparsity is below 1 (0.99 at the default step, less for a
layer with few channels). Locked layers stay where the user put them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
import pandas as pd

from workbench.analysis.sensitivity import primary_metric, scan_layers
from workbench.errors import WorkbenchError
from workbench.evaluate.metrics import HIGHER_IS_BETTER, METRICS, clamp_metric, compute_metrics
from workbench.evaluate.report import Report
from workbench.evaluate.size import effective_flops
from workbench.evaluate.workbench import Workbench
from workbench.pruning.granularity import GRANULARITIES
from workbench.pruning.plan import PruningPlan

__all__ = [
    "PROPOSALS",
    "TARGET_KINDS",
    "Budget",
    "BudgetError",
    "Proposal",
    "drop_table",
    "footprint",
    "recommended",
    "solve_budget",
    "tolerated_sparsity",
]

#: What a target can be, and what it measures (all as in `Report.size`, except sparsity).
TARGET_KINDS: dict[str, str] = {
    "sparsity": "share of the prunable layers' weights that are zero (at least the target, "
    "within half a weight per layer: counts round as in torch.nn.utils.prune)",
    "params": "non-zero parameters of the whole model, biases included (at most the target)",
    "bytes": "sparse fp32 storage in bytes, as report.size['sparse_bytes'] (at most the target)",
    "flops": "FLOPs per sample with zeroed weights skipped, as report.size['flops_effective'] "
    "(at most the target)",
}
#: The proposals, in the order they are returned, with their display titles.
PROPOSALS: dict[str, str] = {
    "equal-drop": "Equal drop",
    "uniform": "Uniform",
    "global": "Global ranking",
}
_EPS = 1e-9
#: Measured evaluations at most per proposal when refining it to meet a max drop.
REFINE_STEPS = 12


class BudgetError(WorkbenchError):
    """A budget that cannot be solved: unknown layer, bounds that contradict, no target..."""


@dataclass(frozen=True)
class Budget:
    """A target and the constraints on reaching it."""

    target: float | None = None  # in the kind's unit: a fraction for sparsity, else a count
    kind: str = "sparsity"
    # Layers held at a sparsity (a list of names holds them dense).
    locked: Mapping[str, float] | Iterable[str] = field(default_factory=dict)
    min_sparsity: Mapping[str, float] = field(default_factory=dict)
    max_sparsity: Mapping[str, float] = field(default_factory=dict)
    # Largest allowed drop of the metric, in its units (0.02 = 2 points of accuracy).
    max_drop: float | None = None
    metric: str | None = None  # None: the task's primary metric
    step: float = 0.01  # sparsities are multiples of this: the Prune page's sliders move by 1 %
    interpolate: bool = True  # equal-drop between scanned levels, or only at them
    # Off: every free layer keeps at least one weight (channel); a layer removed whole cuts the
    # network (or deletes classes at the output), which no single-layer scan point predicts.
    whole_layers: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.whole_layers, bool):
            raise BudgetError(f"whole_layers must be True or False, got {self.whole_layers!r}")
        if self.kind not in TARGET_KINDS:
            raise BudgetError(
                f"unknown target kind {self.kind!r}; choose one of {', '.join(TARGET_KINDS)}"
            )
        if self.target is None and self.max_drop is None:
            raise BudgetError("give a target, a maximum drop, or both")
        if self.target is not None:
            _check_number("target", self.target)
            if self.kind == "sparsity" and not 0.0 <= self.target <= 1.0:
                raise BudgetError(f"a sparsity target is between 0 and 1, got {self.target!r}")
            if self.target < 0:
                raise BudgetError(f"the target must not be negative, got {self.target!r}")
        if self.max_drop is not None:
            _check_number("max_drop", self.max_drop)
            if self.max_drop < 0:
                raise BudgetError(f"max_drop must not be negative, got {self.max_drop!r}")
        _check_number("step", self.step)
        if not 0.0 < self.step <= 0.5:
            raise BudgetError(f"step must be in (0, 0.5], got {self.step!r}")
        locked = self.locked
        if not isinstance(locked, Mapping):
            if isinstance(locked, str):
                raise BudgetError("locked must be a list of layer names or a {layer: sparsity}")
            locked = dict.fromkeys(locked, 0.0)
        maps = {}
        for name, values in (
            ("locked", locked),
            ("min_sparsity", self.min_sparsity),
            ("max_sparsity", self.max_sparsity),
        ):
            checked = {}
            for layer, value in dict(values).items():
                _check_number(f"{name} of {layer!r}", value)
                if not 0.0 <= value <= 1.0:
                    raise BudgetError(f"{name} of {layer!r} must be within [0, 1], got {value!r}")
                checked[str(layer)] = float(value)
            maps[name] = MappingProxyType(dict(sorted(checked.items())))
            object.__setattr__(self, name, maps[name])
        for layer, low in maps["min_sparsity"].items():
            high = maps["max_sparsity"].get(layer, 1.0)
            if low > high + _EPS:
                raise BudgetError(
                    f"layer {layer!r}: minimum sparsity {low:.0%} is above its maximum {high:.0%}"
                )

    @classmethod
    def from_form(
        cls,
        metric: str,
        target: float | None = None,
        kind: str = "sparsity",
        *,
        max_drop: float | None = None,
        locked: Mapping[str, float] | None = None,
        min_sparsity: Mapping[str, float] | None = None,
        max_sparsity: Mapping[str, float] | None = None,
        whole_layers: bool = False,
    ) -> Budget:
        """A budget from a form's units: sparsities (a sparsity target, locked layers' levels,
        per-layer bounds) in percent, counts as they are, and the max drop as `drop_from_form`
        reads it. `kind="drop"`: no target, the most sparsity within the max drop. A minimum
        of 0 % or a maximum of 100 % is no bound."""
        if kind == "drop":
            if target is not None:
                raise BudgetError("the most sparsity within the max drop takes no target")
            kind = "sparsity"
        if target is not None and kind == "sparsity":
            _check_number("the sparsity target", target)
            target = target / 100

        def fractions(percents: Mapping[str, float] | None, skip: float | None = None) -> dict:
            out = {}
            for layer, value in (percents or {}).items():
                _check_number(f"the sparsity of {layer!r}", value)
                if value != skip:
                    out[layer] = value / 100
            return out

        return cls(
            target=target,
            kind=kind,
            locked=fractions(locked),
            min_sparsity=fractions(min_sparsity, skip=0),
            max_sparsity=fractions(max_sparsity, skip=100),
            max_drop=None if max_drop is None else cls.drop_from_form(metric, max_drop),
            metric=metric,
            whole_layers=whole_layers,
        )

    @staticmethod
    def drop_from_form(metric: str, value: float) -> float:
        """A drop of the metric in its units, from a form's: points for a percentage metric
        (2 pp of accuracy is 0.02), else the metric's own units."""
        _check_number("the max drop", value)
        known = METRICS.get(metric)
        return value / 100 if known is not None and known.is_percentage else float(value)


@dataclass(frozen=True)
class Proposal:
    """One allocation of the budget, with what the scan predicts and what evaluation measures."""

    name: str  # a key of PROPOSALS
    plan: PruningPlan
    sparsity: dict[str, float]  # per layer, as pruned (where a global cut fell)
    metric: str
    dense: float  # the dense model's value of the metric
    predicted: float  # dense minus the sum of the single-layer drops at these sparsities
    measured: float  # bench.evaluate(plan).metrics[metric]
    footprint: dict[str, float]  # sparsity, params, bytes, flops reached (see TARGET_KINDS)
    meets_target: bool
    max_drop: float | None
    report: Report
    common_drop: float | None = None  # equal-drop: the δ every free layer stays within
    notes: tuple[str, ...] = ()
    recommended: bool = False  # the best measured proposal of its solve (see `recommended`)
    # The scan's plan before it was refined to meet the max drop as measured, and what it
    # measured (None: it was kept as is).
    unrefined: PruningPlan | None = None
    unrefined_measured: float | None = None

    @property
    def title(self) -> str:
        return PROPOSALS[self.name]

    @property
    def predicted_drop(self) -> float:
        return _drop(self.metric, self.dense, self.predicted)

    @property
    def measured_drop(self) -> float:
        return _drop(self.metric, self.dense, self.measured)

    @property
    def interaction(self) -> float:
        """Measured minus predicted drop: > 0 when layers pruned together hurt more than the sum."""
        return self.measured_drop - self.predicted_drop

    @property
    def within_max_drop(self) -> bool | None:
        if self.max_drop is None:
            return None
        return self.measured_drop <= self.max_drop + _EPS


# ---- public API --------------------------------------------------------------------------------


def solve_budget(
    bench: Workbench,
    scan: pd.DataFrame,
    budget: Budget | None = None,
    *,
    method: str | None = None,
    granularity: str | None = None,
    **fields: object,
) -> list[Proposal]:
    """The equal-drop, uniform and global proposals for a budget, in that order.

    `scan` is a sensitivity scan of this workbench (`bench.sensitivity(...)`); its criterion and
    granularity (from `scan.attrs`, or `method` / `granularity` for a table read from CSV) are
    the plans'. Give a `Budget` or its fields as keywords.
    """
    if budget is None:
        budget = Budget(**fields)  # type: ignore[arg-type]
    elif fields:
        raise TypeError("give a Budget or its fields, not both")
    method = method or scan.attrs.get("method", "l1")
    granularity = granularity or scan.attrs.get("granularity", "unstructured")
    return _Solver(bench, scan, budget, method, granularity).solve()


def recommended(proposals: Iterable[Proposal]) -> Proposal | None:
    """The proposal `solve_budget` recommends, or None when none meets the max drop measured."""
    return next((p for p in proposals if p.recommended), None)


def footprint(bench: Workbench, plan: PruningPlan) -> dict[str, float]:
    """What a plan reaches for each target kind, computed from its masks (no evaluation).

    `params`, `bytes` and `flops` equal `bench.evaluate(plan).size`'s `nonzero_params`,
    `sparse_bytes` and `flops_effective`; `sparsity` is the zero share of the prunable weights.
    """
    return _Accounting(bench).of_plan(plan)


def drop_table(scan: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The scan as drops from dense: layer, level, value, drop (> 0: worse than dense).

    With a bootstrap scan, also drop_low and drop_high: the paired interval of the drop (dense
    and pruned scored on the same resamples, `<metric>_drop_low/high`). A scan without those
    columns gets none: the dense point value minus the pruned interval is not an interval of
    the drop.
    """
    metric = metric or scan.attrs.get("primary_metric")
    if metric is None or metric not in scan.columns or metric not in HIGHER_IS_BETTER:
        raise BudgetError(f"the scan has no metric {metric!r}")
    dense = scan.attrs.get("dense", {}).get(metric)
    if dense is None:
        zero = scan[scan["level"] == 0.0]
        if zero.empty:
            raise BudgetError("the scan has no level 0 and does not say the dense metric")
        dense = zero.set_index("layer")[metric]
        reference = scan["layer"].map(dense).to_numpy(dtype=float)
    else:
        reference = np.full(len(scan), float(dense))
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    table = pd.DataFrame(
        {
            "layer": scan["layer"].to_numpy(),
            "level": scan["level"].to_numpy(dtype=float),
            "value": scan[metric].to_numpy(dtype=float),
        }
    )
    table["drop"] = sign * (reference - table["value"].to_numpy())
    if f"{metric}_drop_low" in scan.columns:
        table["drop_low"] = scan[f"{metric}_drop_low"].to_numpy(dtype=float)
        table["drop_high"] = scan[f"{metric}_drop_high"].to_numpy(dtype=float)
    return table


def tolerated_sparsity(
    scan: pd.DataFrame, max_drop: float, metric: str | None = None
) -> pd.DataFrame:
    """Per layer, the largest scanned level whose drop (and every lower level's) is within
    `max_drop`: layers that tolerate the most first.

    Columns: layer, tolerated (sparsity), drop (at that level), worst_drop (at the last level).
    """
    _check_number("max_drop", max_drop)
    metric = metric or scan.attrs.get("primary_metric")
    if metric is None:
        raise BudgetError("name the metric: this table does not say which one is primary")
    curves = _curves(scan, metric, dense=None, layers=None)
    rows = []
    for layer, curve in curves.items():
        within = curve.envelope <= max_drop + _EPS
        last = int(np.flatnonzero(within)[-1])  # level 0 (no drop) is always within
        rows.append(
            {
                "layer": layer,
                "tolerated": float(curve.levels[last]),
                "drop": float(curve.drops[last]),
                "worst_drop": float(curve.drops[-1]),
            }
        )
    table = pd.DataFrame(rows, columns=["layer", "tolerated", "drop", "worst_drop"])
    table["order"] = range(len(table))
    table = table.sort_values(
        ["tolerated", "drop", "order"], ascending=[False, True, True], kind="stable"
    )
    return table.drop(columns="order").reset_index(drop=True)


# ---- scan curves -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Curve:
    levels: np.ndarray  # increasing, from 0
    drops: np.ndarray  # single-layer drop of the metric at each level (0 at level 0)
    envelope: np.ndarray  # the worst drop at or below each level, never below 0

    def drop(self, sparsity: float) -> float:
        """Linear between scanned levels; beyond the last one, the last drop."""
        return float(np.interp(sparsity, self.levels, self.drops))

    def envelope_at(self, sparsity: float) -> float:
        return float(np.interp(sparsity, self.levels, self.envelope))


def _curves(
    scan: pd.DataFrame, metric: str, dense: float | None, layers: list[str] | None
) -> dict[str, _Curve]:
    """The drop curve of every layer of the scan (in `layers`' order when given)."""
    for column in ("layer", "level", metric):
        if column not in scan.columns:
            raise BudgetError(f"the scan has no column {column!r}")
    if metric not in HIGHER_IS_BETTER:
        raise BudgetError(f"unknown metric {metric!r}")
    names = scan_layers(scan)
    if layers is not None:
        unknown = [n for n in names if n not in layers]
        missing = [n for n in layers if n not in names]
        if unknown or missing:
            which = unknown or missing
            raise BudgetError(
                f"the scan does not match this model (layer {which[0]!r} "
                f"{'is not in the model' if unknown else 'was not scanned'}): scan it again"
            )
        names = layers
    attrs_dense = scan.attrs.get("dense", {}).get(metric)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    curves = {}
    for name in names:
        rows = scan[scan["layer"] == name].sort_values("level")
        levels = rows["level"].to_numpy(dtype=float)
        values = rows[metric].to_numpy(dtype=float)
        if len(np.unique(levels)) != len(levels):
            raise BudgetError(f"the scan repeats a level of layer {name!r}")
        if not np.isfinite(values).all():
            raise BudgetError(f"the scan's {metric} is not finite for layer {name!r}")
        if levels[0] == 0.0:
            reference = values[0]
        elif attrs_dense is not None or dense is not None:
            reference = attrs_dense if attrs_dense is not None else dense
            levels, values = np.concatenate([[0.0], levels]), np.concatenate([[reference], values])
        else:
            raise BudgetError("the scan has no level 0 and does not say the dense metric")
        drops = sign * (reference - values)
        drops[0] = 0.0
        envelope = np.maximum.accumulate(np.maximum(drops, 0.0))
        curves[name] = _Curve(levels, drops, envelope)
    return curves


# ---- size accounting ---------------------------------------------------------------------------


class _Accounting:
    """Target figures of per-layer states, as the engine's size report computes them.

    A layer's state is (non-zeros, stored bytes), read from the engine's own per-tensor
    figures (`Workbench.tensor_sizes`), so a whole plan's figures equal its report's.
    """

    def __init__(self, bench: Workbench) -> None:
        self.bench = bench
        self.names = list(bench.layer_names)
        layers = {layer.name: layer for layer in bench.prunable_layers}
        self.params = {n: layers[n].params for n in self.names}
        self.weights = {n: layers[n].weight_name for n in self.names}
        table = bench.layers
        self.flops = dict(zip(table["name"], table["flops"], strict=True))
        self.dense = bench.dense_size
        self.dense_state, self.dense_others = self._plan_states(PruningPlan())
        self._layer_cache: dict[tuple[str, float, str, str], tuple[int, int]] = {}

    def states_of(self, plan: PruningPlan) -> dict[str, tuple[int, int]]:
        return self._plan_states(plan)[0]

    def _plan_states(self, plan: PruningPlan) -> tuple[dict[str, tuple[int, int]], int]:
        """Each layer's (non-zeros, stored bytes) under the whole plan, from the engine's own
        per-tensor figures, and the non-zeros of the other parameters: under a channel plan a
        layer also loses the input columns that read removed channels, and the removed
        channels' biases and norm entries are zero."""
        sizes = self.bench.tensor_sizes(plan)
        states = {}
        for name, weight in self.weights.items():
            size = sizes.pop(weight)
            states[name] = (size.nonzero, size.sparse_bytes)
        return states, sum(size.nonzero for size in sizes.values())

    def of_plan(self, plan: PruningPlan) -> dict[str, float]:
        """Target figures of a whole plan: `bench.evaluate(plan).size`'s, without evaluating."""
        return self.of(*self._plan_states(plan))

    def layer_state(
        self, name: str, sparsity: float, method: str, granularity: str
    ) -> dict[str, tuple[int, int]]:
        """The states of one layer pruned alone (masks of a layer-scope plan are independent):
        {layer: state} of the layer and, under `group`, of the other members of its group,
        which lose the same channels."""
        key = (name, sparsity, method, granularity)
        if key not in self._layer_cache:
            plan = PruningPlan({name: sparsity}, method=method, granularity=granularity)
            states = self.states_of(plan)
            group = self.bench.channel_groups.of(name) if granularity == "group" else None
            names = group.names if group is not None else (name,)
            self._layer_cache[key] = {n: states[n] for n in names}
        return self._layer_cache[key]

    def of(
        self, states: Mapping[str, tuple[int, int]], others: int | None = None
    ) -> dict[str, float]:
        """Target figures of per-layer states; `others`: the other parameters' non-zeros
        (None: as dense, where states are combined from layers pruned alone)."""
        dense = self.dense_state
        removed = sum(dense[n][0] - states[n][0] for n in self.names)
        if others is not None:
            removed += self.dense_others - others
        saved_bytes = sum(dense[n][1] - states[n][1] for n in self.names)
        effective = effective_flops(
            self.dense["flops_dense"],
            ((self.flops.get(n, 0), states[n][0], self.params[n]) for n in self.names),
        )
        total = sum(self.params.values())
        return {
            "sparsity": sum(self.params[n] - states[n][0] for n in self.names) / total,
            "params": int(self.dense["nonzero_params"] - removed),
            "bytes": int(self.dense["sparse_bytes"] - saved_bytes),
            "flops": round(effective),
        }


# ---- the solver --------------------------------------------------------------------------------


class _Solver:
    def __init__(
        self, bench: Workbench, scan: pd.DataFrame, budget: Budget, method: str, granularity: str
    ) -> None:
        PruningPlan(method=method, granularity=granularity)  # PlanError names a bad choice
        if not GRANULARITIES[granularity].ranks_globally:
            raise BudgetError(
                f"the {granularity} pattern has one fixed sparsity, so there is nothing to "
                "allocate: scan with unstructured or channel granularity"
            )
        self.bench, self.budget = bench, budget
        self.method, self.granularity = method, granularity
        self.metric = budget.metric or scan.attrs.get("primary_metric") or primary_metric(bench)
        if self.metric not in bench.dense_metrics:
            raise BudgetError(
                f"metric {self.metric!r} is not one of this model's: "
                f"{', '.join(bench.dense_metrics)}"
            )
        # Under `group` a coupled group is allocated as one, through its leader.
        self.layers = bench.plan_layers(granularity)
        followers = bench.channel_groups.followers if granularity == "group" else {}
        for name, values in (
            ("locked", budget.locked),
            ("min_sparsity", budget.min_sparsity),
            ("max_sparsity", budget.max_sparsity),
        ):
            coupled = [layer for layer in values if layer in followers]
            if coupled:
                raise BudgetError(
                    f"{name}: layer {coupled[0]!r} is cut with its channel group, at the "
                    f"sparsity of {followers[coupled[0]]!r}: set that layer instead"
                )
            unknown = [layer for layer in values if layer not in self.layers]
            if unknown:
                raise BudgetError(
                    f"{name}: unknown layer {unknown[0]!r}; layers are {', '.join(self.layers)}"
                )
        self.curves = _curves(scan, self.metric, bench.dense_metrics[self.metric], self.layers)
        self.dense = bench.dense_metrics[self.metric]
        self.locked = dict(budget.locked)
        if GRANULARITIES[granularity].structured:
            # An output layer keeps its channels (they are the model's outputs): the engine
            # leaves it dense under a channel plan, so no budget can be spent on it.
            table = bench.layers
            for name in table.loc[~table["channel_prunable"], "name"]:
                if budget.min_sparsity.get(name, 0.0) > 0 or budget.locked.get(name, 0.0) > 0:
                    raise BudgetError(
                        f"layer {name!r} is an output layer: its channels are the model's "
                        "outputs, so a channel plan cannot remove any"
                    )
                self.locked[name] = 0.0
        self.free = [n for n in self.layers if n not in self.locked]
        self.low = {n: budget.min_sparsity.get(n, 0.0) for n in self.free}
        self.high = {n: budget.max_sparsity.get(n, 1.0) for n in self.free}
        self.accounting = _Accounting(bench)
        self.rounding = len(self.layers) / (2 * sum(self.accounting.params.values()))
        self.steps = round(1 / budget.step)
        if not budget.whole_layers:
            for name in self.free:
                self.high[name] = self._below_whole(name, self.high[name])
                if self.low[name] > self.high[name] + _EPS:
                    raise BudgetError(
                        f"layer {name!r}: a minimum sparsity of {self.low[name]:.0%} removes it "
                        f"whole (at most {self.high[name]:.0%} keeps a unit): lower the minimum "
                        "or allow whole layers (whole_layers=True)"
                    )
        self._measured: dict[tuple, float] = {}
        self.evaluations = 0  # measured evaluations spent on refining, for the notes

    # ---- helpers ---------------------------------------------------------------------------

    def _below_whole(self, name: str, high: float) -> float:
        """The largest multiple of the step up to `high` (and below 1) that keeps a unit."""
        k = math.floor(min(high, 1.0 - self.budget.step / 2) / self.budget.step + _EPS)
        while k > 0:
            value = round(k * self.budget.step, 10)
            plan = PruningPlan({name: value}, method=self.method, granularity=self.granularity)
            if bool(self.bench.masks(plan)[name].any()):
                return value
            k -= 1
        return 0.0

    def _measure(self, plan: PruningPlan) -> float:
        """The plan's metric on the whole validation set, as `bench.evaluate(plan).metrics`
        (outputs only: the size report is not needed to bisect)."""
        key = (tuple(sorted(plan.sparsity.items())), plan.scope)
        if key not in self._measured:
            bench = self.bench
            outputs = bench.outputs(plan)
            metrics = compute_metrics(bench.task, outputs, bench.targets, bench.dense_outputs)
            self._measured[key] = metrics[self.metric]
            self.evaluations += 1
        return self._measured[key]

    def _within(self, value: float) -> bool:
        assert self.budget.max_drop is not None
        return _drop(self.metric, self.dense, value) <= self.budget.max_drop + _EPS

    def _grid(self, low: float, high: float) -> list[float]:
        """`low`, then the multiples of the step in (low, high]."""
        step = self.budget.step
        first, last = math.floor(low / step + _EPS) + 1, math.floor(high / step + _EPS)
        return [low] + [round(k * step, 10) for k in range(first, last + 1)]

    def _meets(self, reached: Mapping[str, float], kind: str, target: float) -> bool:
        if kind == "sparsity":
            # Counts round per layer, as torch.nn.utils.prune rounds them: uniform 80 % is met
            # even when it removes half a weight less than 80 % in some layers.
            return reached["sparsity"] >= target - self.rounding - _EPS
        return reached[kind] <= target + _EPS

    def _layer_footprint(self, sparsity: Mapping[str, float]) -> dict[str, float]:
        if GRANULARITIES[self.granularity].structured:
            # Removed channels also take the input columns of the layers that read them (and
            # a group's channels every member's rows): only the whole plan counts them.
            return self.accounting.of_plan(self._plan(sparsity))
        counts = dict(self.accounting.dense_state)
        for name, value in sparsity.items():
            if value > 0:
                counts |= self.accounting.layer_state(name, value, self.method, self.granularity)
        return self.accounting.of(counts)

    def _plan(self, sparsity: Mapping[str, float]) -> PruningPlan:
        return PruningPlan(
            {n: v for n, v in sparsity.items() if v > 0},
            method=self.method,
            granularity=self.granularity,
        )

    def _predicted(self, sparsity: Mapping[str, float]) -> float:
        total = sum(self.curves[n].drop(s) for n, s in sparsity.items() if s > 0)
        sign = 1.0 if HIGHER_IS_BETTER[self.metric] else -1.0
        return clamp_metric(self.metric, self.dense - sign * total)

    # ---- the three allocations -------------------------------------------------------------

    def _equal_drop(self, kind: str, target: float | None) -> tuple[dict[str, float], float]:
        """Per-layer sparsities and the common drop δ."""
        options: dict[str, list[tuple[float, float]]] = {}
        for name in self.free:
            curve = self.curves[name]
            high = min(self.high[name], float(curve.levels[-1]))
            low = min(self.low[name], high)
            if self.budget.interpolate:
                values = self._grid(low, high)
            else:
                values = [low] + [float(v) for v in curve.levels if low < v <= high + _EPS]
            # The drop a layer needs to be allowed to go to each value (its minimum is free).
            options[name] = [(values[0], 0.0)] + [(v, curve.envelope_at(v)) for v in values[1:]]

        def allocation(delta: float) -> dict[str, float]:
            out = dict(self.locked)
            for name, choices in options.items():
                out[name] = max(v for v, needed in choices if needed <= delta + _EPS)
            return out

        candidates = sorted({needed for choices in options.values() for _, needed in choices})
        candidates = candidates or [0.0]
        if target is None:
            assert self.budget.max_drop is not None

            def summed(d: float) -> float:
                alloc = allocation(d)
                return sum(self.curves[n].envelope_at(s) for n, s in alloc.items())

            # The largest δ whose summed drops stay within the maximum (the smallest if none).
            over = _first_true(candidates, lambda d: summed(d) > self.budget.max_drop + _EPS)
            last = len(candidates) if over is None else over
            chosen = allocation(candidates[max(last - 1, 0)])
        else:
            index = _first_true(
                candidates,
                lambda d: self._meets(self._layer_footprint(allocation(d)), kind, target),
            )
            if index is None:
                chosen = allocation(candidates[-1])
            else:
                below = allocation(candidates[index - 1]) if index else dict(self.locked)
                for name, choices in options.items():
                    below.setdefault(name, choices[0][0])
                chosen = self._trim(below, allocation(candidates[index]), options, kind, target)
        # The common drop: the largest any free layer reaches on its own curve.
        delta = max((self.curves[n].envelope_at(chosen[n]) for n in self.free), default=0.0)
        return chosen, delta

    def _trim(
        self,
        below: dict[str, float],
        above: dict[str, float],
        options: dict[str, list[tuple[float, float]]],
        kind: str,
        target: float,
    ) -> dict[str, float]:
        """The least of `above` that meets the target: the layers that moved from `below` go
        the same fraction of their way (a drop step can move layers along long flat stretches of
        their curves, far past the target)."""

        def allocation(fraction: float) -> dict[str, float]:
            out = dict(above)
            for name, choices in options.items():
                goal = below[name] + fraction * (above[name] - below[name])
                out[name] = max(v for v, _ in choices if v <= goal + _EPS)
            return out

        fractions = {1.0}
        for name, choices in options.items():
            if above[name] > below[name]:
                span = above[name] - below[name]
                fractions.update(
                    (v - below[name]) / span for v, _ in choices if below[name] < v <= above[name]
                )
        ordered = sorted(fractions)
        index = _first_true(
            ordered, lambda f: self._meets(self._layer_footprint(allocation(f)), kind, target)
        )
        return allocation(ordered[index if index is not None else -1])

    def _uniform(self, kind: str, target: float) -> dict[str, float]:
        def allocation(value: float) -> dict[str, float]:
            out = dict(self.locked)
            for name in self.free:
                out[name] = min(max(value, self.low[name]), self.high[name])
            return out

        values = [k / self.steps for k in range(self.steps + 1)]
        index = _first_true(
            values, lambda v: self._meets(self._layer_footprint(allocation(v)), kind, target)
        )
        return allocation(values[index if index is not None else -1])

    def _global(self, kind: str, target: float) -> tuple[PruningPlan, dict[str, float], bool]:
        """The plan, where its cut falls in each layer, and whether bounds moved the cut."""
        fixed = dict(self.locked)
        free = list(self.free)
        bounded = False
        while True:
            values = [k / self.steps for k in range(self.steps + 1)]

            def cut(value: float, free: list[str] = free) -> tuple[dict, PruningPlan]:
                plan = PruningPlan(
                    dict.fromkeys(free, value) if value > 0 else {},
                    method=self.method,
                    granularity=self.granularity,
                    scope="global",
                )
                counts = self.accounting.states_of(plan)
                for name, value_fixed in fixed.items():
                    if value_fixed > 0:
                        counts |= self.accounting.layer_state(
                            name, value_fixed, self.method, self.granularity
                        )
                return counts, plan

            index = _first_true(
                values,
                lambda v: self._meets(self.accounting.of(cut(v)[0]), kind, target),
            )
            value = values[index if index is not None else -1]
            _, plan = cut(value)
            masks = self.bench.masks(plan)
            # An empty plan (a cut at 0) has no masks: every layer is dense.
            where = {
                n: 1.0 - masks[n].sum().item() / masks[n].numel() if n in masks else 0.0
                for n in free
            }
            outside = [n for n in free if not self.low[n] - _EPS <= where[n] <= self.high[n] + _EPS]
            if not outside:
                break
            bounded = True
            for name in outside:
                fixed[name] = min(max(where[name], self.low[name]), self.high[name])
                free.remove(name)
            if not free:
                where = {}
                break
        sparsity = {**fixed, **where}
        if not bounded and all(v == 0 for v in self.locked.values()):
            return plan, sparsity, False
        # A per-layer plan: held layers at their bounds, the others where the cut fell.
        step = self.budget.step
        rounded = {n: round(round(s / step) * step, 10) for n, s in sparsity.items()}
        rounded.update(self.locked)
        return self._plan(rounded), rounded, True

    # ---- proposals -------------------------------------------------------------------------

    def solve(self) -> list[Proposal]:
        budget = self.budget
        kind = budget.kind
        equal, _ = self._equal_drop(kind, budget.target)
        equal_reach = self._layer_footprint(equal)
        # Without a target, the others spend what the equal-drop allocation reached.
        target = budget.target if budget.target is not None else equal_reach[kind]
        first: dict[str, _Built] = {
            "equal-drop": (self._plan(equal), equal, ()),
            "uniform": self._built(self._uniform(kind, target)),
            "global": self._global_built(kind, target),
        }
        # The same allocations rebuilt for a global sparsity, for the refinement's bisection.
        builders: dict[str, Callable[[float], _Built]] = {
            "equal-drop": lambda t: self._built(self._equal_drop("sparsity", t)[0]),
            "uniform": lambda t: self._built(self._uniform("sparsity", t)),
            "global": lambda t: self._global_built("sparsity", t),
        }
        proposals = []
        for name, built in first.items():
            before = None
            if budget.max_drop is not None:
                built, before = self._refine(builders[name], built)
            plan, sparsity, notes = built
            proposals.append(self._proposal(name, plan, sparsity, target, notes, before))
        return _recommend(proposals, kind, budget.target is not None)

    def _built(self, sparsity: dict[str, float]) -> _Built:
        return self._plan(sparsity), sparsity, ()

    def _global_built(self, kind: str, target: float) -> _Built:
        plan, sparsity, per_layer = self._global(kind, target)
        notes = (
            (
                "Some layers' cut fell outside their bounds or was locked: they are held "
                "there and the rest ranked again, then rounded to whole steps.",
            )
            if per_layer
            else ()
        )
        return plan, sparsity, notes

    def _reach(self, plan: PruningPlan) -> float:
        return self.accounting.of_plan(plan)["sparsity"]

    def _refine(
        self, build: Callable[[float], _Built], first: _Built
    ) -> tuple[_Built, tuple[PruningPlan, float] | None]:
        """The allocation rebuilt, by bisection on its global sparsity, so that its measured
        drop is within the max drop: less sparsity when the scan's allocation breaks the limit,
        more when there is no target and it stays within it. Returns the chosen allocation and,
        when it differs from `first`, `first`'s sparsities and measured metric."""
        measured = self._measure(first[0])
        spent = self.evaluations
        if self._within(measured):
            if self.budget.target is not None:
                return first, None  # the target is met within the max drop: nothing to refine
            low, best = self._reach(first[0]), first
            most = {**self.locked, **self.high}
            high = self._layer_footprint(most)["sparsity"]
            top = build(high)
            if high > low + _EPS and self._within(self._measure(top[0])):
                low, best = high, top
        else:
            base = build(0.0)  # every free layer at its minimum
            if not self._within(self._measure(base[0])):
                drop = _drop(self.metric, self.dense, self._measure(base[0]))
                note = (
                    "No allocation meets the max drop as measured: with every free layer at its "
                    f"minimum the drop is already {drop:.4g} (the locked layers spend it)."
                )
                return (first[0], first[1], (*first[2], note)), None
            low, best, high = 0.0, base, self._reach(first[0])
        for _ in range(REFINE_STEPS):
            if high - low <= self.budget.step:  # one slider step of global sparsity
                break
            middle = (low + high) / 2
            candidate = build(middle)
            if self._within(self._measure(candidate[0])):
                low, best = middle, candidate
            else:
                high = middle
        if best is first:
            return first, None
        before = self._reach(first[0])
        after = self._reach(best[0])
        drop = _drop(self.metric, self.dense, measured)
        how = (
            f"the scan's allocation ({before:.1%} sparsity) measured a drop of {drop:.4g}, "
            "beyond the max drop, so it was backed off"
            if after < before
            else f"the scan's allocation ({before:.1%} sparsity) stayed within the max drop as "
            "measured, so it was pushed further"
        )
        note = (
            f"Refined with measured evaluations: {how} to {after:.1%}, the most sparsity the "
            f"bisection found within the limit ({self.evaluations - spent} evaluations)."
        )
        return (best[0], best[1], (*best[2], note)), (first[0], measured)

    def _proposal(
        self,
        name: str,
        plan: PruningPlan,
        sparsity: dict[str, float],
        target: float,
        notes: tuple[str, ...] = (),
        before: tuple[PruningPlan, float] | None = None,
    ) -> Proposal:
        report = self.bench.evaluate(plan)
        reached = self.accounting.of_plan(plan)
        # Without a target there is nothing to miss: the max drop decides how far each goes.
        meets = self.budget.target is None or self._meets(reached, self.budget.kind, target)
        notes = list(notes)
        if not meets:
            notes.append(
                "It cannot reach the target within the layer bounds"
                + (" and the scanned levels" if name == "equal-drop" else "")
                + (" and the max drop (measured)." if before is not None else ".")
            )
        beyond = [n for n, s in sparsity.items() if s > float(self.curves[n].levels[-1]) + _EPS]
        if beyond:
            notes.append(
                f"{len(beyond)} layer(s) go beyond the last scanned level: their predicted drop "
                "is the last one scanned."
            )
        delta = None
        if name == "equal-drop":  # the largest drop any free layer reaches on its own curve
            delta = max((self.curves[n].envelope_at(sparsity[n]) for n in self.free), default=0.0)
        return Proposal(
            name=name,
            plan=plan,
            sparsity={n: float(sparsity.get(n, 0.0)) for n in self.layers},
            metric=self.metric,
            dense=self.dense,
            predicted=self._predicted(sparsity),
            measured=report.metrics[self.metric],
            footprint=reached,
            meets_target=meets,
            max_drop=self.budget.max_drop,
            report=report,
            common_drop=delta,
            notes=tuple(notes),
            unrefined=None if before is None else before[0],
            unrefined_measured=None if before is None else before[1],
        )


_Built = tuple[PruningPlan, dict[str, float], tuple[str, ...]]  # plan, sparsities, notes


def _recommend(proposals: list[Proposal], kind: str, has_target: bool) -> list[Proposal]:
    """The proposals with the best measured one marked: within the max drop first, then meeting
    the target with the best metric (without a target: the most sparsity, then the metric).
    None is marked when none is within the max drop."""

    def rank(p: Proposal) -> tuple:
        reach = p.footprint[kind] if kind == "sparsity" else -p.footprint[kind]
        goodness = -p.measured_drop
        if has_target:
            return (p.meets_target, goodness if p.meets_target else reach, reach)
        return (reach, goodness)

    eligible = [p for p in proposals if p.within_max_drop is not False]
    if not eligible:
        return proposals
    best = max(eligible, key=rank)  # the first of equals: the order of PROPOSALS
    return [replace(p, recommended=True) if p is best else p for p in proposals]


# ---- small helpers -----------------------------------------------------------------------------


def _first_true(values: list, predicate) -> int | None:
    """Index of the first value where a monotone predicate holds (binary search), or None."""
    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        if predicate(values[middle]):
            high = middle
        else:
            low = middle + 1
    return low if low < len(values) else None


def _drop(metric: str, dense: float, value: float) -> float:
    return dense - value if HIGHER_IS_BETTER[metric] else value - dense


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BudgetError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise BudgetError(f"{name} must be finite, got {value!r}")
