"""The Prune page's experiment bar: undo / redo of plan changes, Keep, and the recent runs."""

from __future__ import annotations

import streamlit as st

from ui import state, widgets
from ui.guard import guard
from ui.history import tracking
from ui.ship import section as ship
from ui.text import plain
from workbench import PRIMARY_METRIC, Report

RECENT = 5  # runs the panel lists; the History page has them all


def render(report: Report | None) -> None:
    bar = st.columns([0.7, 0.7, 0.9, 3.2], vertical_alignment="top")
    bar[0].button(
        "Undo", icon=":material/undo:", on_click=state.undo, disabled=not state.can_undo(),
        key=state.widget_key("undo"), width="stretch", help="The plan before the last change.",
    )  # fmt: skip
    bar[1].button(
        "Redo", icon=":material/redo:", on_click=state.redo, disabled=not state.can_redo(),
        key=state.widget_key("redo"), width="stretch",
    )  # fmt: skip
    # Not a callback: this panel is a fragment, and a callback of a fragment draws nothing.
    if bar[2].button(
        "Keep", icon=":material/bookmark_add:", disabled=report is None,
        key=state.widget_key("keep"), width="stretch",
        help="Keep this plan and its exact numbers as a run: compare runs on the History page.",
    ):  # fmt: skip
        with guard("Cannot keep this plan"):
            tracking.keep(report, latency=ship.measured(report.plan))  # if the Ship section did
            st.toast("Kept: the History page lists it.", icon=":material/bookmark_added:")
    runs = tracking.runs()
    kept = widgets.open_expander(
        bar[3], f"Kept runs ({len(runs)})", ":material/history:", "runs-open"
    )
    if kept is None:
        return
    with kept:
        if runs.empty:
            st.caption("None yet: **Keep** a plan to compare it later.")
        metric = PRIMARY_METRIC[report.task] if report is not None else None
        for values in runs.head(RECENT).to_dict("records"):
            text, load = st.columns([4, 1], vertical_alignment="center")
            text.markdown(_line(values, metric))
            load.button(
                "Load", key=state.widget_key("load-run", values["run_id"]), on_click=_load,
                args=(values["run_id"],), help="Put this run's plan on the sliders (Undo: back).",
            )  # fmt: skip
        st.page_link(
            "pages/history.py", label="All runs, compare, frontier", icon=":material/compare:"
        )


def _line(values: dict, metric: str | None) -> str:
    """A run in one line: its name, where it came from, its metric and its sparse size."""
    parts = [f"**{plain(values.get('tags.mlflow.runName') or values['run_id'][:8])}**"]
    parts.append(f"{values.get('tags.source') or 'keep'}")
    score = values.get(f"metrics.{metric}")
    if metric is not None and score is not None and score == score:  # NaN: not measured
        label = widgets.METRIC_LABELS.get(metric, metric)
        parts.append(f"{label} {widgets.fmt_metric(metric, score)}")
    if (size := values.get("metrics.sparse_bytes")) is not None:
        parts.append(f"{widgets.fmt_bytes(size)} sparse")
    return " · ".join(parts)


def _load(run_id: str) -> None:
    tracking.load(run_id)  # Undo brings the plan before it back
