"""The History page's runs table, and loading any run's plan onto the sliders."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import state, widgets
from ui.history import tracking
from workbench import PRIMARY_METRIC


def label(runs: pd.DataFrame, run_id: str) -> str:
    """How a picker names a run: its name and when it was kept."""
    row = runs.loc[runs["run_id"] == run_id].iloc[0]
    name = row.get("tags.mlflow.runName") or run_id[:8]
    return f"{name} · {row['start_time']:%d %b %H:%M:%S} · {row.get('tags.source') or 'keep'}"


def render(runs: pd.DataFrame, task: str) -> None:
    metric = PRIMARY_METRIC[task]
    shown = pd.DataFrame(
        {
            "name": runs.get("tags.mlflow.runName"),
            "source": runs.get("tags.source"),
            "kept": runs["start_time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "metric": [widgets.fmt_metric(metric, v) for v in runs[f"metrics.{metric}"]],
            "sparsity": runs["metrics.sparsity"],
            "sparse": [widgets.fmt_bytes(v) for v in runs["metrics.sparse_bytes"]],
            "compressed": [widgets.fmt_bytes(v) for v in runs["metrics.compressed_bytes"]],
            "flops": [widgets.fmt_count(v) for v in runs["metrics.flops_effective"]],
            "method": runs.get("params.method"),
            "granularity": runs.get("params.granularity"),
            "scope": runs.get("params.scope"),
        }
    )
    widgets.table(st, shown, {
        "name": "Run", "source": "From", "kept": "Kept (UTC)",
        "metric": widgets.METRIC_LABELS[metric],
        "sparsity": st.column_config.ProgressColumn("Sparsity", format="percent"),
        "sparse": "Sparse", "compressed": "Compressed", "flops": "FLOPs",
        "method": "Criterion", "granularity": "Granularity", "scope": "Scope",
    })  # fmt: skip
    pick, go = st.columns([3, 1], vertical_alignment="bottom")
    chosen = pick.selectbox(
        "Run to load",
        list(runs["run_id"]),
        format_func=lambda run_id: label(runs, run_id),
        key=state.widget_key("history-load"),
    )
    go.button(
        "Load onto the sliders", icon=":material/content_cut:", on_click=_load, args=(chosen,),
        key=state.widget_key("history-load-button"), width="stretch",
    )  # fmt: skip


def _load(run_id: str) -> None:
    tracking.load(run_id)
    st.toast("The run's plan is on the Prune page's sliders (Undo there brings the last back).")
