"""How far two criteria agree on what to remove from a layer, and what each choice costs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.evaluate.metrics import PRIMARY_METRIC
from workbench.explain._common import ExplainError, Progress
from workbench.pruning.plan import PruningPlan

if TYPE_CHECKING:
    from workbench.evaluate.workbench import Workbench

#: The sparsities of the overlap curve.
CURVE_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass(frozen=True)
class Overlap:
    """The units (channels, or single weights) two criteria remove from one layer."""

    layer: str
    sparsity: float
    granularity: str
    method: str
    baseline: str
    removed: np.ndarray  # unit indices the method removes
    baseline_removed: np.ndarray  # unit indices the baseline criterion removes
    metric: str  # the headline metric: accuracy, R², or agreement without labels
    value: float  # its value with the method's cut alone
    baseline_value: float  # its value with the baseline's cut alone
    dense_value: float

    @property
    def jaccard(self) -> float:
        """|A ∩ B| / |A ∪ B| of the removed sets (1 when both remove nothing)."""
        union = np.union1d(self.removed, self.baseline_removed).size
        if union == 0:
            return 1.0
        return np.intersect1d(self.removed, self.baseline_removed).size / union

    @property
    def shared(self) -> int:
        return int(np.intersect1d(self.removed, self.baseline_removed).size)


def removed_units(bench: Workbench, plan: PruningPlan, layer: str) -> np.ndarray:
    """Sorted indices of the units the plan removes from a layer: whole channels for channel
    granularity, flat weight indices otherwise."""
    mask = bench.masks(plan)[layer].detach().cpu()
    if plan.granularity == "channel":
        found = next(p for p in bench.prunable_layers if p.name == layer)
        kept_per_channel = found.logical(mask).reshape(found.channels, -1).any(dim=1)
        return (~kept_per_channel).nonzero().reshape(-1).numpy()
    return (~mask.reshape(-1)).nonzero().reshape(-1).numpy()


def criterion_overlap(
    bench: Workbench,
    layer: str,
    sparsity: float,
    method: str,
    baseline: str = "l1",
    granularity: str = "channel",
) -> Overlap:
    """Prune one layer alone to `sparsity` by `method` and by `baseline`: the removed sets
    and the headline metric of each pruned model (every other layer dense)."""
    if layer not in bench.layer_names:
        raise ExplainError(
            f"unknown layer {layer!r}; prunable layers are: {', '.join(bench.layer_names)}"
        )
    plans = [
        PruningPlan({layer: sparsity}, method=m, granularity=granularity)
        for m in (method, baseline)
    ]
    reports = [bench.evaluate(p) for p in plans]
    metric = PRIMARY_METRIC[reports[0].task]
    return Overlap(
        layer=layer,
        sparsity=sparsity,
        granularity=granularity,
        method=method,
        baseline=baseline,
        removed=removed_units(bench, plans[0], layer),
        baseline_removed=removed_units(bench, plans[1], layer),
        metric=metric,
        value=reports[0].metrics[metric],
        baseline_value=reports[1].metrics[metric],
        dense_value=reports[0].dense_metrics[metric],
    )


def iter_overlap_curve(
    bench: Workbench,
    layer: str,
    method: str,
    baseline: str = "l1",
    granularity: str = "channel",
    sparsities: Sequence[float] = CURVE_SPARSITIES,
) -> Iterator[Progress[pd.DataFrame]]:
    """The overlap and both metrics at each sparsity; the last event carries the table."""
    rows = []
    for i, sparsity in enumerate(sparsities):
        o = criterion_overlap(bench, layer, sparsity, method, baseline, granularity)
        rows.append(
            {
                "sparsity": sparsity,
                "jaccard": o.jaccard,
                "removed": len(o.removed),
                "shared": o.shared,
                "metric": o.metric,
                method: o.value,
                baseline: o.baseline_value,
                "dense": o.dense_value,
            }
        )
        if i + 1 < len(sparsities):
            yield Progress(i + 1, len(sparsities), f"sparsity {sparsity:.0%}")
    table = pd.DataFrame(rows)
    table.attrs.update(method=method, baseline=baseline, layer=layer, granularity=granularity)
    yield Progress(len(sparsities), len(sparsities), "done", table)
