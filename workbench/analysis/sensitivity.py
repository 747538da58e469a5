"""Per-layer sensitivity scans: each prunable layer pruned alone to each level, then measured.

A scan is a generator of progress events that ends with a DataFrame, so the app can draw a
progress bar, the CLI a counter, and a test can call `list()`:

    for event in scan_iter(bench, levels=(0, 0.5, 0.9)):
        if isinstance(event, ScanProgress): print(event.done, "/", event.total)
        else: frame = event

Every point is a single-layer `PruningPlan` run through the engine: `bench.outputs(plan)`, then
the engine's own `compute_metrics`, so the values equal `bench.evaluate(plan).metrics` bit for
bit (without the size accounting and report tables a scan does not show). Layers are visited
from the last to the first, and all of a layer's levels run in one pass
(`Workbench.outputs_of_levels`): the live set the engine caches at that layer's cut is read once
per batch, in cache-sized slices, and run through every level while it is warm, so a layer costs
about the part of the network after it, times the number of levels, at the speed of warm caches.

Options: a deterministic validation subset (`subset=n` samples, drawn with `seed`), and
percentile bootstrap confidence intervals over the evaluated samples (`bootstrap=B`
resamples, seeded: the same seed gives the same intervals). The interval of a drop is paired:
each resample scores the dense and the pruned model on the same samples, and the interval is
that of their difference (much narrower than the pruned interval alone, since most of the
sampling noise is shared). Completed scans are cached per
workbench and settings; a scan that is abandoned (the generator closed or garbage-collected
midway, as a Streamlit rerun does) leaves nothing in the cache.
"""

from __future__ import annotations

import copy
import math
import numbers
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.evaluate.metrics import (
    HIGHER_IS_BETTER,
    PRIMARY_METRIC,
    compute_metrics,
    metric_terms,
    percentile_interval,
    reduce_terms,
)
from workbench.evaluate.workbench import Workbench, register_analysis
from workbench.progress import Progress
from workbench.pruning.criteria import CRITERIA
from workbench.pruning.plan import PruningPlan

__all__ = [
    "DEFAULT_LEVELS",
    "LayerRunner",
    "ScanError",
    "ScanProgress",
    "ScanSettings",
    "cached_scan",
    "clear_cache",
    "layer_values",
    "parse_levels",
    "primary_metric",
    "scan",
    "scan_iter",
    "subset_indices",
]

#: Levels of a default scan: every 10 %, then the steep end where most layers break.
DEFAULT_LEVELS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
#: Coverage of the bootstrap intervals.
DEFAULT_CONFIDENCE = 0.95
#: Completed scans kept per workbench (each is a small table).
CACHE_SIZE = 16
#: Subset workbenches kept per workbench (each holds a copy of the model and its activations).
SUBSET_BENCHES = 2


class ScanError(WorkbenchError):
    """Scan settings that cannot be run: a level outside [0, 1], a subset larger than the data..."""


@dataclass(frozen=True)
class ScanProgress(Progress[pd.DataFrame]):
    """One measured point: `done` of `total`, the last one being `layer` pruned to `level`."""

    layer: str = ""
    level: float = 0.0


@dataclass(frozen=True)
class ScanSettings:
    """What a scan's values depend on besides the workbench (model and data): its cache key."""

    levels: tuple[float, ...] = DEFAULT_LEVELS
    method: str = "l1"
    granularity: str = "unstructured"
    subset: int | None = None  # samples evaluated; None: the whole validation set
    bootstrap: int = 0  # resamples for confidence intervals; 0: none
    seed: int = 0  # draws the subset and the bootstrap resamples
    confidence: float = DEFAULT_CONFIDENCE

    @classmethod
    def of(
        cls,
        bench: Workbench,
        levels: Iterable[float] | None = None,
        method: str = "l1",
        granularity: str = "unstructured",
        subset: int | None = None,
        bootstrap: int = 0,
        seed: int = 0,
        confidence: float = DEFAULT_CONFIDENCE,
    ) -> ScanSettings:
        """Checked, normalised settings for this workbench (raises ScanError or PlanError)."""
        PruningPlan(method=method, granularity=granularity)  # PlanError names a bad choice
        checked = _check_levels(DEFAULT_LEVELS if levels is None else levels)
        n = _n_samples(bench)
        if subset is not None:
            if isinstance(subset, bool) or not isinstance(subset, int):
                raise ScanError(f"subset must be a whole number of samples, got {subset!r}")
            if not 1 <= subset <= n:
                raise ScanError(
                    f"subset must be between 1 and {n} samples (the validation set), got {subset}"
                )
            if subset == n:
                subset = None  # the whole set: no subset
        if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
            raise ScanError(f"bootstrap must be a number of resamples >= 0, got {bootstrap!r}")
        if bootstrap == 1:
            raise ScanError("bootstrap needs at least 2 resamples (0 turns it off)")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ScanError(f"seed must be an integer, got {seed!r}")
        if not 0.0 < confidence < 1.0:
            raise ScanError(f"confidence must be between 0 and 1, got {confidence!r}")
        return cls(checked, method, granularity, subset, bootstrap, seed, float(confidence))


# ---- public API --------------------------------------------------------------------------------


def scan_iter(
    bench: Workbench, *args: Any, **settings: Any
) -> Iterator[ScanProgress | pd.DataFrame]:
    """`iter_scan`'s events, its last one as the bare DataFrame (the older form; see `scan`).

    Settings are checked before the first point, so a bad setting raises at once. A cached scan
    yields its DataFrame only.
    """
    events = iter_scan(bench, *args, **settings)
    return (event.result if event.finished else event for event in events)


def iter_scan(
    bench: Workbench, *args: Any, runner: LayerRunner | None = None, **settings: Any
) -> Iterator[Progress[pd.DataFrame]]:
    """The scan as `Progress` events (one per point; the last carries the DataFrame).

    Settings as `ScanSettings.of`: levels, method, granularity, subset, bootstrap, seed,
    confidence (see `scan`). `runner`: where the layers are measured (`workbench.scale`'s Ray
    tasks, each on a workbench of its own); default here, in this process.
    """
    checked = ScanSettings.of(bench, *args, **settings)  # now, so a bad setting raises at once
    return (
        Progress(1, 1, "done", event) if isinstance(event, pd.DataFrame) else event
        for event in _scan_events(bench, checked, runner)
    )


def scan(
    bench: Workbench,
    *args: Any,
    progress: Callable[[ScanProgress], None] | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """One row per (layer, level): the metrics with only that layer pruned to that level.

    Settings as `ScanSettings.of`: `levels` (default `DEFAULT_LEVELS`), `method` ("l1"),
    `granularity` ("unstructured"), `subset` (None: every sample), `bootstrap` (0: no
    intervals), `seed` (0) and `confidence` (0.95); `progress` is called with each point.

    Columns: `layer`, `level` (the requested sparsity), `sparsity` (the fraction of the layer's
    weights actually removed: channel counts round), then every metric of the workbench's
    reports, then with `bootstrap > 0` the bounds `<metric>_low` and `<metric>_high` of each
    metric and `<metric>_drop_low` and `<metric>_drop_high` of its paired drop from dense
    (dense minus pruned on the same resample; > 0 is worse, for losses too).
    Rows follow the layers' execution order, levels increasing. Under `group` granularity a
    coupled group has one set of rows, named by its leader (its other members follow the
    leader's sparsity): `frame.attrs["groups"]` maps each leader to the other members.
    `frame.attrs` also records the settings, the task's primary metric and the dense metrics
    on the evaluated samples.
    """
    frame = None
    for event in scan_iter(bench, *args, **settings):
        if isinstance(event, pd.DataFrame):
            frame = event
        elif progress is not None:
            progress(event)
    assert frame is not None  # the generator always ends with the frame
    return frame


def cached_scan(bench: Workbench, *args: Any, **settings: Any) -> pd.DataFrame | None:
    """The completed scan with these settings (as `scan`'s), or None if it has not run (nothing
    is computed)."""
    frame = _cache_get(bench, ScanSettings.of(bench, *args, **settings))
    return None if frame is None else _copy(frame)


def clear_cache(bench: Workbench | None = None) -> None:
    """Forget completed scans (of one workbench, or of all)."""
    with _LOCK:
        if bench is None:
            _SCANS.clear()
            _SUBSETS.clear()
        else:
            _SCANS.pop(bench, None)
            _SUBSETS.pop(bench, None)


def scan_layers(frame: pd.DataFrame) -> list[str]:
    """The layers a scan has rows for, in its order (under `group`: the groups' leaders and
    the layers cut alone)."""
    return list(dict.fromkeys(frame["layer"]))


def parse_levels(text: str, percent: bool = False) -> tuple[float, ...]:
    """Levels from text such as "0, 0.5, 0.9" (or "0, 50, 90" with `percent`), checked."""
    values = []
    for item in text.replace(";", ",").split(","):
        item = item.strip().removesuffix("%").strip()
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ScanError(f"not a number in the levels: {item!r}") from None
        values.append(value / 100 if percent else value)
    if not values:
        raise ScanError("give at least one level, for instance 0, 50, 90")
    if percent and any(not 0.0 <= v <= 1.0 for v in values):
        bad = next(v for v in values if not 0.0 <= v <= 1.0)
        raise ScanError(f"levels are percentages between 0 and 100, got {bad * 100:g}")
    return _check_levels(values)


def primary_metric(bench: Workbench) -> str:
    """The headline metric of the workbench's reports (accuracy, R², or label-free agreement)."""
    return PRIMARY_METRIC[bench.evaluate(PruningPlan()).task]


def subset_indices(total: int, size: int, seed: int) -> torch.Tensor:
    """The sorted indices of a deterministic random subset of `size` of `total` samples."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:size].sort().values


# ---- the scan ----------------------------------------------------------------------------------


def _scan_events(
    bench: Workbench, settings: ScanSettings, runner: LayerRunner | None = None
) -> Iterator[ScanProgress | pd.DataFrame]:
    cached = _cache_get(bench, settings)
    if cached is not None:
        yield _copy(cached)
        return
    evaluator = _Evaluator(bench, settings)
    # Under `group` a coupled group is one row set, named by its leader: its other members
    # follow the leader's sparsity, so a scan of them alone would measure nothing.
    layers = bench.plan_layers(settings.granularity)
    total = len(layers) * len(settings.levels)
    rows: dict[tuple[str, float], dict[str, float]] = {}
    done = 0
    # Last layer first: a layer's points all resume from the live set cached at its cut (the
    # dense prefix is the same for all of them), and nothing a layer stores is needed later.
    # A runner (Ray tasks, workbench.scale) measures layers elsewhere, in the order they finish.
    measured = (
        ((layer, _layer_values(bench, settings, evaluator, layer)) for layer in reversed(layers))
        if runner is None
        else runner.layer_values(settings, list(reversed(layers)))
    )
    for layer, values in measured:
        for level in settings.levels:
            rows[(layer, level)] = values[level]
            done += 1
            yield ScanProgress(done, total, f"{layer} at {level:.0%}", layer=layer, level=level)
    frame = _frame(layers, settings, rows, evaluator, _groups(bench, settings))
    _cache_put(bench, settings, frame)  # only a completed scan reaches this line
    yield _copy(frame)


class LayerRunner(Protocol):
    """Measures layers of a scan somewhere else (`workbench.scale.RayRunner`): yields each
    layer with its values by level (`layer_values`'s) as it finishes, in any order."""

    def layer_values(
        self, settings: ScanSettings, layers: list[str]
    ) -> Iterable[tuple[str, dict[float, dict[str, float]]]]: ...


def layer_values(
    bench: Workbench, settings: ScanSettings, layer: str
) -> dict[float, dict[str, float]]:
    """One layer's points of a scan, {level: metrics and `sparsity`}: what a scan of `bench`
    puts in that layer's rows (a worker of a distributed scan calls this on its own bench)."""
    return _layer_values(bench, settings, _Evaluator(bench, settings), layer)


def _layer_values(
    bench: Workbench, settings: ScanSettings, evaluator: _Evaluator, layer: str
) -> dict[float, dict[str, float]]:
    plans = [
        PruningPlan({layer: level}, method=settings.method, granularity=settings.granularity)
        for level in settings.levels
    ]
    masks = [bench.masks(plan)[layer] for plan in plans]
    # Levels that share the mask of the level before (rounded channel counts) share its
    # point; the distinct pruned ones run in one pass over the layer's live set.
    first = [
        i if i == 0 or not torch.equal(masks[i], masks[i - 1]) else -1 for i in range(len(plans))
    ]
    pruned = [i for i in first if i >= 0 and not bool(masks[i].all())]
    points = dict(zip(pruned, evaluator.points([plans[i] for i in pruned]), strict=True))
    out: dict[float, dict[str, float]] = {}
    values: dict[str, float] = {}
    for i, level in enumerate(settings.levels):
        if first[i] >= 0:
            values = points[i] if i in points else evaluator.dense_point()
            values["sparsity"] = 1.0 - masks[i].sum().item() / masks[i].numel()
        out[level] = values
    return out


class _Evaluator:
    """Metrics of a plan on the scan's samples, with bootstrap intervals when asked."""

    def __init__(self, bench: Workbench, settings: ScanSettings) -> None:
        self.bench, self.settings = bench, settings
        self.metric_names = list(bench.dense_metrics)
        self.primary = primary_metric(bench)
        self.indices: torch.Tensor | None = None  # rows of the parent's outputs to keep
        self.target = bench  # the workbench that runs the plans
        n = _n_samples(bench)
        if settings.subset is not None:
            chosen = subset_indices(n, settings.subset, settings.seed)
            if CRITERIA[settings.method].needs_data:
                # The criterion's statistics must come from all the data, as on the Prune
                # page, so the plans run on the whole set and the subset is read from it.
                self.indices = chosen.to(bench.device)
            else:
                self.target = _subset_bench(bench, settings.subset, settings.seed, chosen)
        if self.target is not bench:
            self.targets, self.dense_outputs = self.target.targets, self.target.dense_outputs
        elif self.indices is not None:
            rows = self.indices
            self.targets = None if bench.targets is None else bench.targets[rows]
            self.dense_outputs = bench.dense_outputs[rows]
        else:
            self.targets, self.dense_outputs = bench.targets, bench.dense_outputs
        self.dense_metrics = compute_metrics(
            bench.task, self.dense_outputs, self.targets, self.dense_outputs
        )
        self.resamples: torch.Tensor | None = None
        self.dense_resampled: dict[str, torch.Tensor] = {}
        if settings.bootstrap:
            generator = torch.Generator().manual_seed(settings.seed)
            count = self.dense_outputs.shape[0]
            self.resamples = torch.randint(
                count, (settings.bootstrap, count), generator=generator
            ).to(self.dense_outputs.device)
            # The dense model on the very resamples every point uses: drops are then paired.
            self.dense_resampled = bootstrap_metrics(
                bench.task, self.dense_outputs, self.targets, self.dense_outputs, self.resamples
            )

    def points(self, plans: list[PruningPlan]) -> list[dict[str, float]]:
        """The metrics of plans that prune one layer (a layer's levels), run in one pass."""
        outputs = self.target.outputs_of_levels(plans)
        if self.indices is not None:
            outputs = [out[self.indices] for out in outputs]
        return [self._metrics(out) for out in outputs]

    def dense_point(self) -> dict[str, float]:
        return self._metrics(self.dense_outputs)

    def _metrics(self, outputs: torch.Tensor) -> dict[str, float]:
        values = compute_metrics(self.bench.task, outputs, self.targets, self.dense_outputs)
        if self.resamples is not None:
            resampled = bootstrap_metrics(
                self.bench.task, outputs, self.targets, self.dense_outputs, self.resamples
            )
            for name, samples in resampled.items():
                sign = 1.0 if HIGHER_IS_BETTER[name] else -1.0
                drops = sign * (self.dense_resampled[name] - samples) + 0.0  # no -0.0
                values[f"{name}_low"], values[f"{name}_high"] = self._interval(samples)
                values[f"{name}_drop_low"], values[f"{name}_drop_high"] = self._interval(drops)
        return values

    def _interval(self, samples: torch.Tensor) -> tuple[float, float]:
        """The percentile interval of the bootstrap values at the scan's confidence."""
        return percentile_interval(samples, self.settings.confidence)


def _frame(
    layers: list[str],
    settings: ScanSettings,
    rows: dict[tuple[str, float], dict[str, float]],
    evaluator: _Evaluator,
    groups: dict[str, list[str]],
) -> pd.DataFrame:
    names = evaluator.metric_names
    columns = ["layer", "level", "sparsity", *names]
    if settings.bootstrap:
        columns += [f"{m}_{side}" for m in names for side in ("low", "high")]
        columns += [f"{m}_drop_{side}" for m in names for side in ("low", "high")]
    records = [
        {"layer": layer, "level": level, **rows[(layer, level)]}
        for layer in layers
        for level in settings.levels
    ]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame.attrs = {
        "method": settings.method,
        "granularity": settings.granularity,
        "levels": list(settings.levels),
        "subset": settings.subset,
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
        "confidence": settings.confidence,
        "samples": int(evaluator.dense_outputs.shape[0]),
        "primary_metric": evaluator.primary,
        "dense": dict(evaluator.dense_metrics),
        "groups": groups,
    }
    return frame


def _groups(bench: Workbench, settings: ScanSettings) -> dict[str, list[str]]:
    """{leader: the group's other members} for a `group` scan (each leader's rows are its
    group's), else empty."""
    if settings.granularity != "group":
        return {}
    return {g.leader: list(g.names[1:]) for g in bench.channel_groups.groups if g.names[1:]}


# ---- bootstrap ---------------------------------------------------------------------------------


def bootstrap_metrics(
    task: str,
    outputs: torch.Tensor,
    targets: torch.Tensor | None,
    dense_outputs: torch.Tensor,
    resamples: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Each metric of `compute_metrics` on every resample: {metric: (B,) values}.

    `resamples` is a (B, n) long tensor of sample indices. Every metric is a mean of per-sample
    terms (R² a ratio of two sums), so all resamples are computed at once by gathering.
    """
    terms = metric_terms(task, outputs, targets, dense_outputs)  # type: ignore[arg-type]
    return reduce_terms(task, terms, resamples)  # type: ignore[arg-type]


# ---- caches ------------------------------------------------------------------------------------

_LOCK = threading.Lock()
# Keyed by the workbench itself (by identity, held weakly): a workbench is one model on one
# validation set, and its entries go when it does.
_SCANS: weakref.WeakKeyDictionary[Workbench, OrderedDict[ScanSettings, pd.DataFrame]] = (
    weakref.WeakKeyDictionary()
)
_SUBSETS: weakref.WeakKeyDictionary[Workbench, OrderedDict[tuple[int, int], Workbench]] = (
    weakref.WeakKeyDictionary()
)


def _cache_get(bench: Workbench, settings: ScanSettings) -> pd.DataFrame | None:
    with _LOCK:
        entries = _SCANS.get(bench)
        if entries is None or settings not in entries:
            return None
        entries.move_to_end(settings)
        return entries[settings]


def _cache_put(bench: Workbench, settings: ScanSettings, frame: pd.DataFrame) -> None:
    with _LOCK:
        entries = _SCANS.setdefault(bench, OrderedDict())
        entries[settings] = frame
        entries.move_to_end(settings)
        while len(entries) > CACHE_SIZE:
            entries.popitem(last=False)


def _subset_bench(bench: Workbench, size: int, seed: int, indices: torch.Tensor) -> Workbench:
    """A workbench on the subset only: each point then runs just those samples."""
    key = (size, seed)
    with _LOCK:
        entries = _SUBSETS.setdefault(bench, OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
    rows = indices.to(bench.device)
    targets = bench.targets[rows] if bench.targets is not None else None
    sub = Workbench(
        # pruned_model copies under the runner's swap lock: another session's forward may be
        # swapping tensors on bench.model (attention, untraceable models)
        bench.pruned_model(PruningPlan()),
        (bench.val_inputs[rows], targets),
        task=bench.task,
        device=bench.device,
        batch_size=bench.batch_size,
        class_names=bench.class_names,
    )
    with _LOCK:
        entries = _SUBSETS.setdefault(bench, OrderedDict())
        entries[key] = sub
        while len(entries) > SUBSET_BENCHES:
            entries.popitem(last=False)
    return sub


def _copy(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy for the caller, so the cached table cannot be changed through it."""
    out = frame.copy()
    out.attrs = copy.deepcopy(frame.attrs)
    return out


# ---- checks ------------------------------------------------------------------------------------


def _check_levels(levels: Iterable[float]) -> tuple[float, ...]:
    values = []
    for value in levels:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ScanError(f"levels must be numbers, got {value!r}")
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ScanError(f"levels are sparsities between 0 and 1, got {value!r}")
        values.append(float(value))
    if not values:
        raise ScanError("give at least one level")
    return tuple(sorted(set(values)))


def _n_samples(bench: Workbench) -> int:
    return int(bench.dense_outputs.shape[0])


register_analysis("sensitivity", scan)
