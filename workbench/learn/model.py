"""Lessons as data: steps that set the app up, ask the learner to act, check what they did, and
explain the result with the numbers they see.

A lesson is a tuple of `Step`s. A step names the page to act on, what to set up (a demo, and a
plan to start from), a `Check` of the session's `Facts` (the model, the plan, its report, the
recoveries run on it), and texts with `{placeholders}` filled from those facts when they are
shown: never canned numbers. When a step's check first passes, the numbers it names in `record`
are kept, so a later step can compare (uniform against sensitivity-driven, one-shot against
recovered).

A teacher adds a lesson by adding one `Lesson(...)` to `workbench/learn/lessons.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from workbench.evaluate import Report
from workbench.evaluate.metrics import PRIMARY_METRIC
from workbench.plots._format import format_bytes, format_delta, format_metric, metric_label
from workbench.pruning.plan import PruningPlan


@dataclass(frozen=True)
class Run:
    """A finished recovery on the current plan, as the Recover page ran it."""

    label: str
    distill: float
    gradual: bool
    report: Report


@dataclass(frozen=True)
class Facts:
    """What a check can see: the session's model, plan and its exact report, and its runs."""

    demo: str
    plan: PruningPlan
    report: Report
    runs: tuple[Run, ...] = ()
    #: {model: (median seconds, speed-up against dense)} measured for this plan on the Prune
    #: page's Ship section (dense, masked, compacted, ...), or None before a measurement.
    latency: Mapping[str, tuple[float, float]] | None = None

    @property
    def metric(self) -> str:
        return PRIMARY_METRIC[self.report.task]

    @property
    def weight_sparsity(self) -> float:
        """The zero share of the prunable layers' weights (what the sliders set)."""
        layers = self.report.layers
        return 1.0 - float(layers["nonzero"].sum()) / float(layers["params"].sum())

    def numbers(self) -> dict[str, str]:
        """Every number a text may quote, formatted as the pages show it."""
        r, m = self.report, self.metric
        size, dense = r.size, r.dense_size
        numbers = {
            "demo": self.demo,
            "metric": metric_label(m).lower(),
            "dense": format_metric(m, r.dense_metrics[m]),
            "pruned": format_metric(m, r.metrics[m]),
            "drop": format_delta(m, r.delta(m)),
            "sparsity": f"{self.weight_sparsity:.1%}",
            "params": f"{int(r.layers['params'].sum()):,}",
            "nonzero": f"{int(r.layers['nonzero'].sum()):,}",
            "dense_bytes": format_bytes(dense["dense_bytes"]),
            "sparse_bytes": format_bytes(size["sparse_bytes"]),
            "compressed_bytes": format_bytes(size["compressed_bytes"]),
            "flops_share": f"{size['flops_effective'] / size['flops_dense']:.0%}",
            "granularity": self.plan.granularity,
        }
        for model, (seconds, speedup) in (self.latency or {}).items():
            numbers[f"{model}_ms"] = f"{seconds * 1e3:.2f} ms"
            numbers[f"{model}_speedup"] = f"{speedup:.2f}×"
        for kind, run in (("finetuned", _last(self.runs, distill=False, gradual=False)),
                          ("distilled", _last(self.runs, distill=True, gradual=False)),
                          ("gradual", _last(self.runs, gradual=True))):  # fmt: skip
            if run is not None:
                numbers[kind] = format_metric(m, run.report.metrics[m])
                numbers[f"{kind}_drop"] = format_delta(m, run.report.delta(m))
        return numbers


def _last(runs: tuple[Run, ...], *, distill: bool | None = None, gradual: bool | None = None):
    found = [
        run
        for run in runs
        if (distill is None or (run.distill > 0) == distill)
        and (gradual is None or run.gradual == gradual)
    ]
    return found[-1] if found else None


class Check(Protocol):
    def passes(self, facts: Facts) -> bool:
        """Whether the learner has done what the step asks."""
        ...

    def hint(self, facts: Facts) -> str:
        """What is still missing, in one line."""
        ...


@dataclass(frozen=True)
class OnModel:
    demo: str

    def passes(self, facts: Facts) -> bool:
        return facts.demo == self.demo

    def hint(self, facts: Facts) -> str:
        return f"pick {self.demo} in the sidebar's model list (now {facts.demo})"


@dataclass(frozen=True)
class PlanIs:
    """The plan on the sliders: its options, and the prunable weights' sparsity in a range.

    `uniform`: every layer at the same sparsity (True), or not (False); None: either.
    `levels`: the range of every pruned layer's slider (a channel plan removes more weights
    than its sliders say: the next layers' input columns go too)."""

    demo: str
    low: float = 0.0
    high: float = 1.0
    method: str | None = None
    granularity: str | None = None
    scope: str | None = None
    uniform: bool | None = None
    all_layers: bool = False
    levels: tuple[float, float] | None = None

    def problems(self, facts: Facts) -> list[str]:
        plan, found = facts.plan, []
        if facts.demo != self.demo:
            return [f"pick {self.demo} in the sidebar's model list"]
        for name, wanted in (("criterion", self.method), ("granularity", self.granularity),
                             ("scope", self.scope)):  # fmt: skip
            value = {"criterion": plan.method, "granularity": plan.granularity, "scope": plan.scope}
            if wanted is not None and value[name] != wanted:
                found.append(f"set the {name} to {wanted} (now {value[name]})")
        layers = facts.report.layers
        pruned = layers[layers["nonzero"] < layers["params"]]
        if self.all_layers and len(pruned) < len(layers):
            found.append(f"prune every layer ({len(pruned)} of {len(layers)} are pruned)")
        levels = {round(v, 3) for v in plan.sparsity.values() if v > 0}
        if self.uniform is True and len(levels) > 1:
            found.append("give every layer the same sparsity")
        if self.uniform is False and len(levels) <= 1 and plan.scope == "layer":
            found.append("give the layers different sparsities")
        if self.levels is not None:
            low, high = self.levels
            if not levels or not all(low <= v <= high for v in levels):
                found.append(f"set the sliders to {low:.0%}–{high:.0%}")
        if not self.low <= facts.weight_sparsity <= self.high:
            found.append(
                f"bring the weights' sparsity to {self.low:.0%}–{self.high:.0%} "
                f"(now {facts.weight_sparsity:.1%})"
            )
        return found

    def passes(self, facts: Facts) -> bool:
        return not self.problems(facts)

    def hint(self, facts: Facts) -> str:
        return "; ".join(self.problems(facts))


@dataclass(frozen=True)
class Recovered:
    """A finished recovery on the current plan (with distillation, or gradual, if asked)."""

    distill: bool | None = None
    gradual: bool | None = None
    plan: PlanIs | None = None  # the plan it must be on

    def passes(self, facts: Facts) -> bool:
        if self.plan is not None and not self.plan.passes(facts):
            return False
        return _last(facts.runs, distill=self.distill, gradual=self.gradual) is not None

    def hint(self, facts: Facts) -> str:
        if self.plan is not None and not self.plan.passes(facts):
            return self.plan.hint(facts)
        kind = (
            "a gradual (AGP) run" if self.gradual
            else "a fine-tune with a distillation weight above 0" if self.distill
            else "a fine-tune with distillation weight 0" if self.distill is False
            else "a recovery run"
        )  # fmt: skip
        return f"run {kind} on the Recover page and let it finish"


@dataclass(frozen=True)
class Measured:
    """Latency measured for the current plan (with a compacted model, if `compacted`)."""

    plan: PlanIs
    compacted: bool = False

    def passes(self, facts: Facts) -> bool:
        found = facts.latency or {}
        return (
            self.plan.passes(facts)
            and "masked" in found
            and (not self.compacted or "compacted" in found)
        )

    def hint(self, facts: Facts) -> str:
        if not self.plan.passes(facts):
            return self.plan.hint(facts)
        return "open *Ship* under the Prune page's charts and press *Measure latency*"


@dataclass(frozen=True)
class Setup:
    """What a step's "Set it up" button does: open a demo, with this plan on its sliders."""

    demo: str
    plan: PruningPlan = field(default_factory=PruningPlan)


@dataclass(frozen=True)
class Step:
    title: str
    task: str  # what to do, with {placeholders}
    check: Check
    explain: str  # shown once the check passes, with {placeholders} and the recorded numbers
    page: str | None = None  # where to do it, e.g. "pages/prune.py"
    setup: Setup | None = None
    record: Mapping[str, str] = field(default_factory=dict)  # {kept name: Facts.numbers() key}


@dataclass(frozen=True)
class Lesson:
    key: str
    title: str
    summary: str
    minutes: int
    steps: tuple[Step, ...]
    next: str  # what to try next, at the end


def fill(text: str, facts: Facts, recorded: Mapping[str, str]) -> str:
    """`text` with every {placeholder} filled; one that is not known yet reads as "…"."""
    return text.format_map(_Known({**facts.numbers(), **recorded}))


class _Known(dict):
    def __missing__(self, key: str) -> Any:
        return "…"
