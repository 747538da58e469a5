"""The Pareto frontier of the kept runs: a metric against a size or FLOPs; a click on a point
puts that run's plan on the sliders."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui import state, widgets
from ui.history import tracking
from workbench import PRIMARY_METRIC, plots, track
from workbench.evaluate.metrics import METRICS

_RUNS_TRACE = 1  # the markers (trace 0 is the frontier's line)


def render(runs: pd.DataFrame, task: str) -> None:
    metrics = [m for m in METRICS if f"metrics.{m}" in runs and runs[f"metrics.{m}"].notna().any()]
    primary = PRIMARY_METRIC[task]
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    metric = left.selectbox(
        "Metric", metrics, index=metrics.index(primary) if primary in metrics else 0,
        format_func=lambda m: widgets.METRIC_LABELS.get(m, m),
        key=state.widget_key("pareto-metric"),
    )  # fmt: skip
    # the report's sizes, and the compacted model and latency where runs recorded them
    costs = [c for c in track.FRONTIER_COSTS if f"metrics.{c}" in runs
             and runs[f"metrics.{c}"].notna().any()]  # fmt: skip
    cost = widgets.choice(
        right, "Against", costs, "pareto-cost", format_func=lambda c: track.FRONTIER_COSTS[c]
    )
    points = track.frontier_table(runs, metric, cost)
    key = state.widget_key("pareto")
    st.plotly_chart(
        plots.frontier_chart(points, metric, track.FRONTIER_COSTS[cost]),
        width="stretch",
        key=key,
        on_select=lambda: _clicked(key, points),
        selection_mode="points",
        config={"displayModeBar": False},
    )
    unmeasured = int(points["cost"].isna().sum())
    st.caption(
        f"{int(points['front'].sum())} of {len(points)} runs are on the frontier (large, joined): "
        "no other run is as good for as little. Click a point to put its plan on the sliders."
        + (f" {unmeasured} runs without this figure are left out (a search's trials record "
           "no compacted model; latency is what the Ship section measured when kept)."
           if unmeasured else "")
    )  # fmt: skip


def picked_run(selection: Any, points: pd.DataFrame) -> str | None:
    """The run a chart selection names (its first marker point), or None."""
    for point in (selection or {}).get("points", []):
        if point.get("curve_number", _RUNS_TRACE) == _RUNS_TRACE:
            index = point.get("point_index", point.get("point_number"))
            if index is not None and 0 <= index < len(points):
                return str(points["run_id"].iloc[index])
    return None


def _clicked(key: str, points: pd.DataFrame) -> None:
    event = st.session_state.get(key)
    run_id = picked_run(getattr(event, "selection", None) or (event or {}).get("selection"), points)
    if run_id is not None:
        tracking.load(run_id)
        name = points.loc[points["run_id"] == run_id, "name"].iloc[0]
        st.toast(f"{name}: its plan is on the Prune page's sliders.", icon=":material/content_cut:")
