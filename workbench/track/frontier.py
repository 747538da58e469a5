"""The Pareto frontier of runs: the best metric for what each costs (bytes, FLOPs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.errors import WorkbenchError


class TrackError(WorkbenchError):
    """A run store that cannot be read or written as asked."""


def frontier(values: Sequence[float], costs: Sequence[float], higher_is_better: bool = True):
    """A boolean mask of the non-dominated points: no other point costs as little or less and
    scores as well or better, one of the two strictly. Points with a NaN are never on it."""
    value = np.asarray(values, dtype=float) * (1.0 if higher_is_better else -1.0)
    cost = np.asarray(costs, dtype=float)
    if value.shape != cost.shape or value.ndim != 1:
        raise TrackError("values and costs must be two sequences of the same length")
    on = np.zeros(len(value), dtype=bool)
    finite = np.flatnonzero(np.isfinite(value) & np.isfinite(cost))
    # Cheapest first, best first within one cost: one sweep keeps the best seen at lower cost.
    order = finite[np.lexsort((-value[finite], cost[finite]))]
    best_cheaper = -np.inf
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and cost[order[end]] == cost[order[start]]:
            end += 1
        group = order[start:end]
        top = value[group[0]]
        if top > best_cheaper:  # an equal value at a lower cost dominates it
            on[group[value[group] == top]] = True
            best_cheaper = top
        start = end
    return on
