"""Tables of kept runs for the History page: the frontier's points and two runs side by side."""

from __future__ import annotations

import pandas as pd

from workbench.evaluate.metrics import HIGHER_IS_BETTER
from workbench.track.frontier import TrackError, frontier
from workbench.track.store import RunDetail

#: What a run's metric is traded against on the frontier: a size or FLOPs figure of its report.
COSTS = {
    "sparse_bytes": "Sparse bytes",
    "compressed_bytes": "Compressed bytes",
    "int8_bytes": "int8 + bitmask bytes",
    "flops_effective": "FLOPs / sample",
}
#: The frontier's costs: the report's, and what a run records when it is kept by hand, applied,
#: recovered or exported (`track.ship_metrics`): the compacted model and measured latency.
FRONTIER_COSTS = {
    **COSTS,
    "compacted_bytes": "Compacted bytes",
    "compacted_flops": "Compacted FLOPs / sample",
    "latency_ms": "Latency, ms (measured)",
}


def frontier_table(runs: pd.DataFrame, metric: str, cost: str) -> pd.DataFrame:
    """One row per run (`Store.runs`): run_id, name, source, value, cost, and `front`: on the
    Pareto frontier of `metric` (its better direction) against `cost` (lower is better)."""
    value_column, cost_column = f"metrics.{metric}", f"metrics.{cost}"
    for column in (value_column, cost_column):
        if column not in runs:
            raise TrackError(f"no kept run has {column.removeprefix('metrics.')!r}")
    table = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "name": runs.get("tags.mlflow.runName", runs["run_id"]),
            "source": runs.get("tags.source"),
            "value": runs[value_column].astype(float),
            "cost": runs[cost_column].astype(float),
        }
    )
    table["front"] = frontier(table["value"], table["cost"], HIGHER_IS_BETTER.get(metric, True))
    return table.reset_index(drop=True)


def layer_sparsity(first: RunDetail, second: RunDetail) -> pd.DataFrame:
    """Each layer's sparsity as cut in two runs: `layer`, then one column per run label."""
    a, b = labels(first, second)
    one = first.layers.set_index("name")["sparsity"]
    two = second.layers.set_index("name")["sparsity"]
    names = list(dict.fromkeys([*one.index, *two.index]))
    return pd.DataFrame(
        {"layer": names, a: one.reindex(names).fillna(0.0), b: two.reindex(names).fillna(0.0)}
    ).reset_index(drop=True)


def class_change(first: RunDetail, second: RunDetail) -> pd.DataFrame | None:
    """Each class's accuracy in both runs and the change (second − first); None: no classes."""
    if first.per_class is None or second.per_class is None:
        return None
    table = first.per_class[["class", "support"]].copy()
    table["first"] = first.per_class["accuracy"].to_numpy()
    table["second"] = second.per_class["accuracy"].to_numpy()
    table["change"] = table["second"] - table["first"]
    return table


def labels(first: RunDetail, second: RunDetail) -> tuple[str, str]:
    """Two names for the runs, told apart even when both have the same name."""
    if first.name != second.name:
        return first.name, second.name
    return f"{first.name} ({first.run_id[:6]})", f"{second.name} ({second.run_id[:6]})"
