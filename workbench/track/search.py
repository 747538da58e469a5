"""Automated search: Optuna's multi-objective sampler over per-layer sparsities, every trial an
exact `bench.evaluate`; the trials' Pareto front is `track.frontier` of their reports."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd

from workbench.evaluate import Report, Workbench
from workbench.evaluate.metrics import HIGHER_IS_BETTER, METRICS
from workbench.progress import Progress, drain
from workbench.pruning.plan import PruningPlan
from workbench.track.compare import COSTS
from workbench.track.frontier import TrackError, frontier


@dataclass(frozen=True)
class TrialProgress(Progress["SearchResult"]):
    """One finished trial (its exact report), or the end (the result)."""

    report: Report | None = None


@dataclass(frozen=True)
class SearchResult:
    """Every trial's plan and report, in trial order, and which of them are on the front."""

    metric: str
    cost: str
    reports: list[Report]
    front: list[bool]
    stopped: bool = False  # a Stop ended it before all its trials
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # trial, metric, cost, front

    @property
    def best(self) -> list[Report]:
        """The front's reports, cheapest first."""
        chosen = [r for r, on in zip(self.reports, self.front, strict=True) if on]
        return sorted(chosen, key=lambda r: r.size[self.cost])


def search_iter(
    bench: Workbench,
    *,
    metric: str | None = None,
    cost: str = "sparse_bytes",
    trials: int = 50,
    method: str = "l1",
    granularity: str = "unstructured",
    locked: Mapping[str, float] | Iterable[str] = (),
    min_sparsity: Mapping[str, float] | None = None,
    max_sparsity: Mapping[str, float] | None = None,
    upper: float = 0.95,
    step: float = 0.05,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> Iterator[TrialProgress]:
    """Maximise `metric` (the task's primary one by default; minimise a lower-is-better one)
    and minimise `cost` (a key of `track.COSTS`) over each free layer's sparsity, a multiple of
    `step` within its bounds (`min_sparsity`, `max_sparsity`, else 0 to `upper`). Locked layers
    keep their sparsity (a list of names: dense). Starts from the uniform allocations."""
    import optuna  # ~1 s to import: only when a search runs

    from workbench.evaluate.metrics import PRIMARY_METRIC

    metric = metric or PRIMARY_METRIC[bench.task]
    if metric not in METRICS or metric not in bench.dense_metrics:
        raise TrackError(f"this model has no metric {metric!r}")
    if cost not in COSTS:
        raise TrackError(f"unknown cost {cost!r}; choose one of {', '.join(COSTS)}")
    if trials < 1:
        raise TrackError(f"a search needs at least one trial, got {trials}")
    held = dict(locked) if isinstance(locked, Mapping) else dict.fromkeys(locked, 0.0)
    unknown = sorted({*held, *(min_sparsity or {}), *(max_sparsity or {})} - set(bench.layer_names))
    if unknown:
        raise TrackError(f"no layer(s) {', '.join(unknown)} in this model")
    free = [n for n in bench.layer_names if n not in held]
    bounds = {
        n: ((min_sparsity or {}).get(n, 0.0), (max_sparsity or {}).get(n, upper)) for n in free
    }
    for name, (low, high) in bounds.items():
        if not 0.0 <= low <= high <= 1.0:
            raise TrackError(f"{name}: bounds {low:g}..{high:g} are not within 0..1 in order")

    def plan_of(values: Mapping[str, float]) -> PruningPlan:
        return PruningPlan(
            sparsity={**held, **{n: round(values[n], 6) for n in free}},
            method=method,
            granularity=granularity,
        )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize" if HIGHER_IS_BETTER.get(metric, True) else "minimize", "minimize"],
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True),
    )
    for level in (0.25, 0.5, 0.75):  # the uniform allocations: where a person would start
        study.enqueue_trial({n: min(max(level, low), high) for n, (low, high) in bounds.items()})
    reports: list[Report] = []
    for number in range(trials):
        if stop is not None and stop.is_set():
            break
        trial = study.ask()
        values = {
            n: trial.suggest_float(n, low, high, step=step) if high > low else low
            for n, (low, high) in bounds.items()
        }
        report = bench.evaluate(plan_of(values))
        reports.append(report)
        study.tell(trial, [report.metrics[metric], float(report.size[cost])])
        yield TrialProgress(
            number + 1,
            trials,
            f"trial {number + 1}/{trials}: {metric} {report.metrics[metric]:.4g}, "
            f"{cost} {report.size[cost]:,.0f}",
            report=report,
        )
    values = [r.metrics[metric] for r in reports]
    costs = [float(r.size[cost]) for r in reports]
    front = [bool(x) for x in frontier(values, costs, HIGHER_IS_BETTER.get(metric, True))]
    table = pd.DataFrame(
        {"trial": range(len(reports)), metric: values, cost: costs, "front": front}
    )
    result = SearchResult(metric, cost, reports, front, len(reports) < trials, table)
    yield TrialProgress(trials, trials, "search finished", result)


def search(bench: Workbench, **options: object) -> SearchResult:
    """`search_iter` run to its end."""
    return drain(search_iter(bench, **options))  # type: ignore[arg-type]
