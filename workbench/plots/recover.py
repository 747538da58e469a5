"""Plotly figures of the Recover page: a run's training curve and the runs side by side."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.plots._format import is_percent, metric_label
from workbench.plots.common import ACCENT, DENSE, KEPT
from workbench.plots.common import style as _style


def training_curve(
    history: pd.DataFrame,
    metric: str,
    dense: float | None = None,
    one_shot: float | None = None,
    height: int = 340,
) -> go.Figure:
    """Train loss per step (left axis) and the validation metric at each evaluation (right),
    with the dense and one-shot values as reference lines."""
    scale = 100.0 if is_percent(metric) else 1.0
    unit = " (%)" if is_percent(metric) else ""
    fig = go.Figure()
    if not history.empty:
        fig.add_scatter(
            x=history["step"],
            y=history["train_loss"],
            name="train loss",
            mode="lines",
            line={"color": DENSE, "width": 1.5},
            yaxis="y",
        )
        if metric in history.columns:
            evaluated = history.dropna(subset=[metric])
            fig.add_scatter(
                x=evaluated["step"],
                y=evaluated[metric] * scale,
                name=f"validation {metric_label(metric).lower()}",
                mode="lines+markers",
                line={"color": KEPT, "width": 2.5},
                yaxis="y2",
            )
        if "sparsity" in history.columns and history["sparsity"].nunique() > 1:
            fig.add_scatter(  # a gradual run: how far the schedule has pruned
                x=history["step"],
                y=history["sparsity"] * 100,
                name="sparsity (%)",
                mode="lines",
                line={"color": ACCENT, "width": 1.5, "dash": "dot"},
                yaxis="y3",
            )
    for value, label, dash in ((dense, "dense", "dash"), (one_shot, "one-shot", "dot")):
        if value is not None:
            fig.add_hline(
                y=value * scale,
                yref="y2",
                line={"color": "#64748B", "dash": dash, "width": 1},
                annotation_text=label,
                annotation_position="right",
            )
    _style(fig, height)
    fig.update_layout(
        xaxis={"title": "training step"},
        yaxis={"title": "train loss", "rangemode": "tozero"},
        yaxis2={
            "title": metric_label(metric) + unit,
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "tickmode": "auto",
            "nticks": 6,
            "tickformat": ".1f" if is_percent(metric) else ".3g",
        },
        yaxis3={"overlaying": "y", "side": "right", "range": [0, 100], "visible": False},
        legend={"orientation": "h", "y": 1.12, "x": 0},
        margin={"r": 70},
    )
    return fig


def comparison(runs: pd.DataFrame, metric: str, dense: float, height: int = 280) -> go.Figure:
    """The metric of each run (one-shot first), against the dense model's."""
    scale = 100.0 if is_percent(metric) else 1.0
    fig = go.Figure(
        go.Bar(
            x=runs["run"],
            y=runs[metric] * scale,
            marker_color=[DENSE if i == 0 else KEPT for i in range(len(runs))],
            text=[f"{v * scale:.1f}" for v in runs[metric]],
            textposition="outside",
        )
    )
    fig.add_hline(
        y=dense * scale,
        line={"color": "#64748B", "dash": "dash", "width": 1},
        annotation_text="dense",
        annotation_position="top left",
    )
    _style(fig, height)
    unit = " (%)" if is_percent(metric) else ""
    fig.update_layout(yaxis={"title": metric_label(metric) + unit}, showlegend=False)
    return fig


def per_class_recovery(change: pd.DataFrame, height: int = 300) -> go.Figure:
    """Each class's accuracy: dense, one-shot and recovered (`recover.per_class_change`)."""
    fig = go.Figure()
    for column, name, color in (
        ("dense_accuracy", "dense", DENSE),
        ("one_shot", "one-shot", ACCENT),
        ("recovered", "recovered", KEPT),
    ):
        fig.add_bar(x=change["class"].astype(str), y=change[column], name=name, marker_color=color)
    _style(fig, height)
    fig.update_layout(
        barmode="group",
        yaxis={"tickformat": ".0%", "range": [0, 1.02], "title": "accuracy"},
        xaxis={"title": "class", "type": "category"},
    )
    return fig
