"""What a run records beyond its report: the compacted model's figures and, when measured,
its latency. Both become run metrics, and the frontier offers them as costs."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.evaluate import Workbench
from workbench.pruning.plan import PruningPlan

#: The latency table's rows a run's `latency_ms` is read from, first found: the model a plan
#: ships as (its channels physically gone), else the masked one (zeros only: dense speed).
SHIPPED_ROWS = ("compacted", "masked")


def ship_metrics(
    bench: Workbench,
    plan: PruningPlan,
    *,
    model: Any = None,
    latency: pd.DataFrame | None = None,
) -> dict[str, float]:
    """`compacted_params`, `compacted_bytes` (parameters and buffers stored densely) and
    `compacted_flops` (one sample) of `wb.compact(bench, plan, model)`; left out for a model
    that cannot be compacted. With `latency` (a `plan_latency` table): `latency_ms.<row>` for
    each row, `latency_ms` (the compacted row, else the masked one) and `latency_batch`."""
    from workbench.ship import compact  # the same rank: imported when a run is kept

    found: dict[str, float] = {}
    with contextlib.suppress(WorkbenchError):  # a graph program, say: no compacted figures
        small = compact(bench, plan, model)
        found["compacted_params"] = float(small.params)
        found["compacted_bytes"] = float(small.dense_bytes)
        found["compacted_flops"] = float(small.flops(bench.val_inputs[:1]))
    if latency is not None and len(latency):
        rows = {str(r.label): float(r.median_s) * 1e3 for r in latency.itertuples()}
        found |= {f"latency_ms.{label}": value for label, value in rows.items()}
        shipped = next((rows[r] for r in SHIPPED_ROWS if r in rows), math.nan)
        found["latency_ms"] = shipped
        found["latency_batch"] = float(latency["batch"].iloc[0])
    return found
