"""Automated search: Optuna's multi-objective sampler over per-layer sparsities, every trial an
exact `bench.evaluate`; the trials' Pareto front is `track.frontier` of their reports."""

from __future__ import annotations

import math
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from workbench.evaluate import Report, Workbench
from workbench.evaluate.metrics import HIGHER_IS_BETTER, METRICS
from workbench.progress import Progress, drain
from workbench.pruning.plan import PruningPlan
from workbench.track.compare import COSTS
from workbench.track.frontier import TrackError, frontier

#: The search's samplers: Optuna's TPE (multi-objective) or FLAML's tune (lexicographic).
BACKENDS = {"optuna": "Optuna (TPE, multi-objective)", "flaml": "FLAML (CFO, lexicographic)"}


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
    backend: str = "optuna"
    study: Any = field(default=None, repr=False, compare=False)  # optuna's, for its plots

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
    runner: TrialRunner | None = None,
    backend: str = "optuna",
    tolerance: float = 0.01,
) -> Iterator[TrialProgress]:
    """Maximise `metric` (the task's primary one by default; minimise a lower-is-better one)
    and minimise `cost` (a key of `track.COSTS`) over each free layer's sparsity, a multiple of
    `step` within its bounds (`min_sparsity`, `max_sparsity`, else 0 to `upper`). Locked layers
    keep their sparsity (a list of names: dense). Starts from the uniform allocations.

    `runner`: where trials are evaluated (`workbench.scale.RayRunner`: Ray tasks, as many at
    once as the cluster has CPUs); default one at a time, here. With one in flight the sampler
    sees every result before it asks again, so a runner of width 1 gives the same trials.

    `backend`: "optuna" (TPE, multi-objective: the two objectives as they are) or "flaml"
    (FLAML's tune, CFO: lexicographic, the metric first and then the cost among the trials
    within `tolerance` of the best metric; one trial at a time). Either way every trial is an
    exact `bench.evaluate` and the front is that of all trials."""
    from workbench.evaluate.metrics import PRIMARY_METRIC

    metric = metric or PRIMARY_METRIC[bench.task]
    if metric not in METRICS or metric not in bench.dense_metrics:
        raise TrackError(f"this model has no metric {metric!r}")
    if cost not in COSTS:
        raise TrackError(f"unknown cost {cost!r}; choose one of {', '.join(COSTS)}")
    if trials < 1:
        raise TrackError(f"a search needs at least one trial, got {trials}")
    if backend not in BACKENDS:
        raise TrackError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not tolerance >= 0.0:  # NaN too
        raise TrackError(f"the tolerance is a metric difference >= 0, got {tolerance}")
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

    maximise = HIGHER_IS_BETTER.get(metric, True)
    # The uniform allocations: where a person would start.
    starts = [{n: min(max(level, low), high) for n, (low, high) in bounds.items()}
              for level in (0.25, 0.5, 0.75)]  # fmt: skip

    runner = runner or _InProcess(bench)
    if backend == "optuna":
        study = _optuna_study(maximise, seed, starts)
        sampled = _optuna_trials(study, runner, bounds, step, trials, stop, plan_of, metric, cost)
    else:
        study = None

        def evaluate(values: Mapping[str, float]) -> Report:  # one in flight: FLAML waits
            handle, report = runner.wait([runner.submit(plan_of(values))])
            return report

        sampled = _flaml_trials(
            bounds, step, trials, stop, starts, maximise, tolerance, seed, evaluate, metric, cost
        )
    reports: list[Report] = []
    try:
        for report in sampled:
            reports.append(report)
            done = len(reports)
            yield TrialProgress(
                done,
                trials,
                f"trial {done}/{trials}: {metric} {report.metrics[metric]:.4g}, "
                f"{cost} {report.size[cost]:,.0f}",
                report=report,
            )
    finally:  # a Stop, or the caller gone: trials still running elsewhere are not needed
        sampled.close()
    values = [r.metrics[metric] for r in reports]
    costs = [float(r.size[cost]) for r in reports]
    front = [bool(x) for x in frontier(values, costs, HIGHER_IS_BETTER.get(metric, True))]
    table = pd.DataFrame(
        {"trial": range(len(reports)), metric: values, cost: costs, "front": front}
    )
    result = SearchResult(
        metric, cost, reports, front, len(reports) < trials, table, backend, study
    )
    yield TrialProgress(trials, trials, "search finished", result)


class TrialRunner(Protocol):
    """Evaluates trials' plans somewhere (`workbench.scale.RayRunner`): `width` at once."""

    width: int

    def submit(self, plan: PruningPlan) -> Any: ...

    def wait(self, handles: list[Any]) -> tuple[Any, Report]: ...

    def cancel(self, handles: list[Any]) -> None: ...


class _InProcess:
    """Each trial evaluated here, when it is submitted."""

    width = 1

    def __init__(self, bench: Workbench) -> None:
        self.bench = bench
        self._reports: dict[int, Report] = {}

    def submit(self, plan: PruningPlan) -> int:
        handle = len(self._reports)
        self._reports[handle] = self.bench.evaluate(plan)
        return handle

    def wait(self, handles: list[int]) -> tuple[int, Report]:
        return handles[0], self._reports.pop(handles[0])

    def cancel(self, handles: list[int]) -> None:
        for handle in handles:
            self._reports.pop(handle, None)


def _optuna_study(maximise: bool, seed: int, starts: list[dict[str, float]]) -> Any:
    import optuna  # ~1 s to import: only when a search runs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize" if maximise else "minimize", "minimize"],
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True),
    )
    for start in starts:
        study.enqueue_trial(start)
    return study


def _optuna_trials(
    study: Any,
    runner: TrialRunner,
    bounds: Mapping[str, tuple[float, float]],
    step: float,
    trials: int,
    stop: threading.Event | None,
    plan_of: Any,
    metric: str,
    cost: str,
) -> Iterator[Report]:
    """Optuna's ask and tell, `runner.width` trials in flight; reports as they finish."""
    width = max(1, int(runner.width))
    in_flight: dict[Any, Any] = {}
    asked = finished = 0
    try:
        while finished < trials:
            stopped = stop is not None and stop.is_set()
            while not stopped and asked < trials and len(in_flight) < width:
                trial = study.ask()
                values = {
                    n: trial.suggest_float(n, low, high, step=step) if high > low else low
                    for n, (low, high) in bounds.items()
                }
                in_flight[runner.submit(plan_of(values))] = trial
                asked += 1
            if not in_flight:
                return
            handle, report = runner.wait(list(in_flight))
            study.tell(in_flight.pop(handle), [report.metrics[metric], float(report.size[cost])])
            finished += 1
            yield report
    finally:
        if in_flight:
            runner.cancel(list(in_flight))


class _Stopped(Exception):
    """Ends FLAML's loop from its evaluation function (a Stop, or the search closed)."""


def _flaml_trials(
    bounds: Mapping[str, tuple[float, float]],
    step: float,
    trials: int,
    stop: threading.Event | None,
    starts: list[dict[str, float]],
    maximise: bool,
    tolerance: float,
    seed: int,
    evaluate: Any,
    metric: str,
    cost: str,
) -> Iterator[Report]:
    """FLAML's tune.run in a thread whose evaluation function hands each configuration here
    and waits: the trials are evaluated (and yielded) in the caller's thread, one at a time."""
    import logging

    from flaml import tune  # imports ray when it is installed: only when asked for

    logging.getLogger("flaml").setLevel(logging.WARNING)
    free = {n: tune.quniform(low, high, step) for n, (low, high) in bounds.items() if high > low}
    fixed = {n: low for n, (low, high) in bounds.items() if high <= low}
    if not free:
        raise TrackError("nothing to search: every layer is locked or has one allowed sparsity")
    asks: queue.Queue = queue.Queue()
    answers: queue.Queue = queue.Queue()
    failed: list[BaseException] = []

    def objective(config: dict) -> dict[str, float]:
        asks.put(config)
        answer = answers.get()
        if answer is None:
            raise _Stopped
        return answer

    def run() -> None:
        try:
            tune.run(
                objective, config=free, num_samples=trials, verbose=0,
                points_to_evaluate=[{n: start[n] for n in free} for start in starts][:trials],
                lexico_objectives={
                    "metrics": ["metric", "cost"],
                    "modes": ["max" if maximise else "min", "min"],
                    "tolerances": {"metric": tolerance, "cost": 0.0},
                    "targets": {"metric": math.inf if maximise else -math.inf,
                                "cost": -math.inf},
                },
            )  # fmt: skip
        except _Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            failed.append(error)
        finally:
            asks.put(None)

    random_state = np.random.get_state()  # FLAML's samplers draw from numpy's global state
    np.random.seed(seed)
    thread = threading.Thread(target=run, name="flaml-search", daemon=True)
    thread.start()
    try:
        done = 0
        while (config := asks.get()) is not None:
            if done >= trials or (stop is not None and stop.is_set()):
                answers.put(None)
                continue
            report = evaluate({**fixed, **{n: float(config[n]) for n in free}})
            answers.put({"metric": report.metrics[metric], "cost": float(report.size[cost])})
            done += 1
            yield report
        if failed:
            raise failed[0]
    finally:
        while thread.is_alive():  # closed early: end FLAML's loop before returning
            answers.put(None)
            thread.join(timeout=0.05)
            while not asks.empty():
                asks.get_nowait()
        np.random.set_state(random_state)


def search_tags(metric: str, cost: str, backend: str = "optuna") -> dict[str, str]:
    """Tags for the runs of one search's trials: which search (a new id), its objective and
    its backend (`search_study` reads them back)."""
    return {"search": uuid.uuid4().hex[:12], "objective": f"{metric},{cost}", "backend": backend}


def search(bench: Workbench, **options: object) -> SearchResult:
    """`search_iter` run to its end."""
    return drain(search_iter(bench, **options))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SearchStudy:
    """One search's trials as an Optuna study (for Optuna's own plots), from its kept runs."""

    search: str  # the search's id (its runs' `search` tag)
    metric: str
    cost: str
    backend: str
    study: Any = field(repr=False, compare=False)


def search_study(runs: pd.DataFrame, search: str | None = None) -> SearchStudy | None:
    """The trials of one search (`search`: its id; default the latest) among `Store.runs`, as
    an Optuna study: each trial's per-layer sparsities and its two objective values. None when
    no run comes from a tagged search."""
    import optuna

    if "tags.search" not in runs or runs["tags.search"].isna().all():
        return None
    tagged = runs[runs["tags.search"].notna()]
    search = search or str(tagged.sort_values("start_time")["tags.search"].iloc[-1])
    trials = tagged[tagged["tags.search"] == search].sort_values("start_time")
    if trials.empty:
        raise TrackError(f"no kept runs of search {search!r}")
    first = trials.iloc[0]
    metric, cost = str(first["tags.objective"]).split(",")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize" if HIGHER_IS_BETTER.get(metric, True) else "minimize", "minimize"],
        study_name=f"search {search}",
    )
    layers = [c for c in trials if c.startswith("params.sparsity.")]
    space = {c.removeprefix("params.sparsity."): optuna.distributions.FloatDistribution(0, 1)
             for c in layers}  # fmt: skip
    for _, row in trials.iterrows():
        study.add_trial(
            optuna.trial.create_trial(
                params={c.removeprefix("params.sparsity."): float(row[c]) for c in layers},
                distributions=space,
                values=[float(row[f"metrics.{metric}"]), float(row[f"metrics.{cost}"])],
            )
        )
    return SearchStudy(search, metric, cost, str(first.get("tags.backend") or "optuna"), study)
