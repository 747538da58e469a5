"""Progressive evaluation: numbers on a fixed, stratified subset first, then the exact ones.

When the exact evaluation of a plan would take longer than a frame (`FRAME_BUDGET`), predicted
from the measured cost of this workbench's earlier evaluations that resumed at the same layer,
`evaluate_iter` first yields an `Estimate`: the plan evaluated on a fixed subset of the
validation set (drawn once per workbench: seeded, each class in proportion to its share) by a
workbench on those samples alone that ranks weights exactly as the full one does (it shares its
data statistics), with percentile bootstrap intervals of every metric; then the exact report of
the whole set. Sizes need no data, so an estimate's are exact. `cancel()` is asked between the
exact evaluation's batches: a newer plan supersedes it (EvaluationCancelled), and nothing
stale is kept.

    for event in evaluate_iter(bench, plan):
        if event.estimate is not None: show(event.estimate)  # "≈ 91.2 % ± 1.4"
        if event.finished: show(event.result)                # the exact report
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch

from workbench.evaluate.lazy import Lazy
from workbench.evaluate.metrics import (
    label_free_task,
    metric_terms,
    percentile_interval,
    reduce_terms,
)
from workbench.evaluate.report import Report
from workbench.evaluate.workbench import Workbench
from workbench.progress import Progress
from workbench.pruning.plan import PruningPlan

__all__ = [
    "FRAME_BUDGET",
    "Estimate",
    "EvaluationProgress",
    "Estimator",
    "estimator",
    "evaluate_iter",
    "percentile_interval",
    "stratified_rows",
]

#: Seconds an exact evaluation may take before an estimate is shown first (about a frame of
#: interaction: longer, and a slider feels stuck).
FRAME_BUDGET = 0.15
#: Samples in the estimate's subset (at most a quarter of the validation set).
SUBSET = 256
#: Fewer samples than this make no useful estimate: such workbenches always answer exactly.
MIN_SUBSET = 50
#: Workbenches whose whole evaluation is fewer FLOPs than this answer exactly: on any CPU that
#: is milliseconds to tens of them (the demos: 0.5 GFLOP at most; the scale ResNet 178).
MIN_FLOPS = 2e9
#: Bootstrap resamples of the subset, and the intervals' coverage.
RESAMPLES = 200
CONFIDENCE = 0.95
#: Exact runs remembered per layer for the prediction.
MEASURED = 3
#: Regression targets are stratified by this many quantile bins.
REGRESSION_STRATA = 10


@dataclass(frozen=True)
class Estimate:
    """A plan's metrics on the estimator's subset, with bootstrap intervals; exact sizes."""

    plan: PruningPlan
    task: str
    metrics: dict[str, float]  # on the subset
    dense_metrics: dict[str, float]  # the dense model on the same samples: deltas are paired
    low: dict[str, float]  # percentile bootstrap interval of each metric
    high: dict[str, float]
    size: Mapping[str, float]  # exact: `bench.size(plan)`
    dense_size: Mapping[str, float]
    samples: int
    seconds: float  # the subset's forward pass: scaled to the whole set, a first prediction
    confidence: float = CONFIDENCE
    notes: list[str] = field(default_factory=list)

    def delta(self, metric: str) -> float:
        """Pruned minus dense value of a metric, both on the subset."""
        return self.metrics[metric] - self.dense_metrics[metric]

    def half_width(self, metric: str) -> float:
        """Half the interval's width: the "±" of a metric."""
        return (self.high[metric] - self.low[metric]) / 2


@dataclass(frozen=True)
class EvaluationProgress(Progress[Report]):
    """An evaluation's events: an estimate (when the exact one is slow), then the report."""

    estimate: Estimate | None = None


def stratified_rows(strata: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of `size` samples: each stratum's share of them is its share of all
    (largest remainders round), its members drawn by a generator seeded with `seed`."""
    n = strata.shape[0]
    if size >= n:
        return torch.arange(n)
    strata = strata.cpu()
    values, counts = strata.unique(return_counts=True)
    quota = counts.double() * size / n
    take = quota.floor().long()
    remainder = int(size - take.sum())
    take[(quota - take).argsort(descending=True, stable=True)[:remainder]] += 1
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for value, k in zip(values, take.tolist(), strict=True):
        members = (strata == value).nonzero().squeeze(1)
        rows.append(members[torch.randperm(members.shape[0], generator=generator)[:k]])
    return torch.cat(rows).sort().values


class Estimator:
    """A workbench's subset, its bootstrap resamples and the measured cost of its evaluations.

    One per workbench (`estimator(bench)`), shared by every session: thread-safe.
    """

    def __init__(
        self,
        bench: Workbench,
        samples: int = SUBSET,
        resamples: int = RESAMPLES,
        seed: int = 0,
        confidence: float = CONFIDENCE,
    ) -> None:
        self.bench, self.confidence = bench, confidence
        total = bench.dense_outputs.shape[0]
        #: The fixed subset: rows of the validation set.
        self.rows = stratified_rows(_strata(bench), min(samples, total // 4), seed)
        self.samples = int(self.rows.shape[0])
        self.flops = bench.dense_size["flops_dense"] * total  # one whole evaluation
        self.scale = total / max(self.samples, 1)  # whole set / subset, in samples
        generator = torch.Generator().manual_seed(seed)
        #: (resamples, samples) indices into the subset: the documented draw, seeded.
        self.resamples = torch.randint(
            max(self.samples, 1), (resamples, self.samples), generator=generator
        )
        # Built on a worker thread from now on: the first slow step rarely waits for it.
        self._subset = Lazy.background(self._build) if self.available else Lazy(self._build)
        # {layer: the last few seconds of exact runs resuming there}: their minimum predicts
        # (a burst of load on a shared machine does not make a fast layer look slow for good)
        self._seconds: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether estimates are worth it: enough samples, and whole evaluations that are not
        cheap whatever the machine (the timing then decides each step)."""
        return self.samples >= MIN_SUBSET and self.flops >= MIN_FLOPS

    @property
    def subset(self) -> Workbench:
        """A workbench on the subset alone, ranking weights as the full one does."""
        return self._subset.get()

    def predicted_seconds(self, plan: PruningPlan) -> float | None:
        """What an exact evaluation of `plan` would take now: 0 when its report is cached,
        None when no evaluation has resumed at its layer yet."""
        layer = self.bench.resumes_at(plan)
        if layer is None:
            return 0.0
        with self._lock:
            times = self._seconds.get(layer)
            return min(times) if times else None

    def estimate(self, plan: PruningPlan) -> Estimate:
        """The plan's metrics on the subset, each with its bootstrap interval."""
        sub, bench = self.subset, self.bench
        start = time.perf_counter()
        outputs = sub.outputs(plan)
        seconds = time.perf_counter() - start
        # The per-sample terms once: the whole subset and every resample reduce them.
        terms = metric_terms(bench.task, outputs, sub.targets, sub.dense_outputs)
        metrics = {name: value.item() for name, value in reduce_terms(bench.task, terms).items()}
        low, high = {}, {}
        resampled = reduce_terms(bench.task, terms, self.resamples.to(outputs.device))
        for name, values in resampled.items():
            low[name], high[name] = percentile_interval(values, self.confidence)
        return Estimate(
            plan=plan,
            task=bench.task if bench.labelled else label_free_task(bench.task),
            metrics=metrics,
            dense_metrics=dict(sub.dense_metrics),
            low=low,
            high=high,
            size=bench.size(plan),
            dense_size=bench.dense_size,
            samples=self.samples,
            seconds=seconds,
            confidence=self.confidence,
        )

    def evaluate(self, plan: PruningPlan, cancel: Callable[[], bool] | None = None) -> Report:
        """`bench.evaluate(plan, cancel)`, its cost measured for later predictions."""
        layer = self.bench.resumes_at(plan)
        start = time.perf_counter()
        report = self.bench.evaluate(plan, cancel)
        if layer is not None:
            self._record(layer, time.perf_counter() - start)
        return report

    def _record(self, layer: str, seconds: float) -> None:
        with self._lock:
            self._seconds.setdefault(layer, deque(maxlen=MEASURED)).append(seconds)

    def _build(self) -> Workbench:
        bench, rows = self.bench, self.rows.to(self.bench.device)
        targets = bench.targets[rows] if bench.targets is not None else None
        return Workbench(
            bench.pruned_model(PruningPlan()),  # a copy: the dense model, frozen
            (bench.val_inputs[rows], targets),
            task=bench.task,
            device=bench.device,
            batch_size=bench.batch_size,
            class_names=bench.class_names,
            statistics=bench.statistics,  # data criteria rank as on the whole set
        )


def evaluate_iter(
    bench: Workbench,
    plan: PruningPlan,
    *,
    budget: float = FRAME_BUDGET,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[EvaluationProgress]:
    """An estimate first when the exact evaluation would take longer than `budget` seconds,
    then the exact report (EvaluationCancelled when `cancel()` says so between batches).

    A layer no evaluation has resumed at yet is predicted from the subset's forward pass,
    scaled to the whole set: that estimate is shown only if the prediction exceeds the budget.
    """
    found = estimator(bench)
    if found.available:
        predicted = found.predicted_seconds(plan)
        estimate = None
        if predicted is None:
            estimate = found.estimate(plan)
            predicted = estimate.seconds * found.scale
        if predicted > budget:
            estimate = estimate or found.estimate(plan)
            yield EvaluationProgress(
                0, 1, f"estimate on {found.samples} samples", estimate=estimate
            )
    report = found.evaluate(plan, cancel)
    yield EvaluationProgress(1, 1, "exact", result=report)


# The workbench holds its estimator: the subset workbench shares the workbench's statistics,
# which refer to it, so a table keyed weakly by the workbench would keep both alive for good;
# as an attribute, the two are one cycle the garbage collector frees together.
_ATTRIBUTE = "_workbench_estimator"
_ESTIMATORS_LOCK = threading.Lock()


def estimator(bench: Workbench) -> Estimator:
    """The workbench's estimator (made on first use; it goes with the workbench)."""
    with _ESTIMATORS_LOCK:
        found = vars(bench).get(_ATTRIBUTE)
        if found is None:
            found = Estimator(bench)
            setattr(bench, _ATTRIBUTE, found)
        return found


def _strata(bench: Workbench) -> torch.Tensor:
    """What the subset is stratified by: the class (labelled, else the dense model's
    prediction), a regression target's quantile bin, or nothing (an unlabelled embedding)."""
    if bench.task == "classification":
        return bench.targets if bench.targets is not None else bench.dense_outputs.argmax(1)
    if bench.task == "regression":
        values = (bench.targets if bench.targets is not None else bench.dense_outputs).reshape(-1)
        edges = torch.quantile(
            values.double().cpu(), torch.linspace(0, 1, REGRESSION_STRATA + 1)[1:-1].double()
        )
        return torch.bucketize(values.double().cpu(), edges)
    if bench.targets is not None:  # an embedding's labels
        return bench.targets
    return torch.zeros(bench.dense_outputs.shape[0], dtype=torch.long)
