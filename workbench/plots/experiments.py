"""Plotly figures of the History page: the Pareto frontier of kept runs, two runs compared, and
Optuna's own plots of a search."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from workbench.plots._format import format_metric, is_percent, metric_label
from workbench.plots.common import ACCENT, DENSE, KEPT
from workbench.plots.common import style as _style


def frontier_chart(
    points: pd.DataFrame, metric: str, cost_label: str, height: int = 380
) -> go.Figure:
    """Every run (`track.frontier_table`: name, value, cost, front, run_id) against its cost,
    the non-dominated ones joined by the frontier's steps. One marker trace, in the table's
    order, so a selected point's index is its row (its `customdata` is the run id)."""
    fig = go.Figure()
    front = points[points["front"]].sort_values("cost")
    fig.add_scatter(
        x=front["cost"],
        y=front["value"],
        mode="lines",
        line={"shape": "hv", "color": KEPT, "width": 2},
        name="frontier",
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=points["cost"],
        y=points["value"],
        mode="markers",
        name="runs",
        customdata=points["run_id"],
        text=[
            f"{name}<br>{format_metric(metric, value)}"
            for name, value in zip(points["name"], points["value"], strict=True)
        ],
        hovertemplate="%{text}<br>" + cost_label + " %{x:,.0f}<extra></extra>",
        marker={
            "size": [13 if f else 9 for f in points["front"]],
            "color": [KEPT if f else DENSE for f in points["front"]],
            "line": {"width": 1, "color": "white"},
        },
    )
    fig.update_layout(showlegend=False)  # Streamlit sets the click and drag modes it reads
    fig.update_xaxes(title_text=cost_label)
    fig.update_yaxes(
        title_text=metric_label(metric), tickformat=".1%" if is_percent(metric) else None
    )
    return _style(fig, height)


def run_layer_bars(sparsity: pd.DataFrame, height: int = 300) -> go.Figure:
    """Per-layer sparsity of two runs: a `layer` column, then one column per run name."""
    fig = go.Figure()
    names = [c for c in sparsity.columns if c != "layer"]
    for name, color in zip(names, (KEPT, ACCENT, DENSE)[: len(names)], strict=True):
        fig.add_bar(
            x=sparsity["layer"],
            y=sparsity[name] * 100,
            name=name,
            marker_color=color,
            hovertemplate=f"{name}: %{{x}} at %{{y:.1f}}%<extra></extra>",
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="sparsity (%)", range=[0, 101], ticksuffix="%")
    fig.update_xaxes(type="category")
    return _style(fig, height)


def per_class_difference(change: pd.DataFrame, second: str, height: int = 300) -> go.Figure:
    """Each class's accuracy change from the first run to the second (`class`, `change`)."""
    fig = go.Figure()
    fig.add_bar(
        x=change["class"].astype(str),
        y=change["change"] * 100,
        marker_color=[KEPT if v >= 0 else ACCENT for v in change["change"]],
        hovertemplate="class %{x}: %{y:+.2f} pp<extra></extra>",
    )
    fig.update_yaxes(title_text=f"{second} − first (pp)", zeroline=True)
    fig.update_xaxes(title_text="class", type="category")
    return _style(fig, height)


def search_plots(
    study: Any, metric: str, cost_label: str, height: int = 360
) -> dict[str, go.Figure]:
    """Optuna's own figures of a search's study (`track.search_study(...).study`): its Pareto
    front, each layer's importance to the metric (fANOVA) and the metric's history by trial.
    Importances need two trials or more; with fewer that figure is left out."""
    from optuna import visualization as vis
    from optuna.importance import FanovaImportanceEvaluator

    name = metric_label(metric)

    def of_metric(trial: Any) -> float:
        return trial.values[0]

    figures = {
        "Pareto front": vis.plot_pareto_front(study, target_names=[name, cost_label]),
        "History": vis.plot_optimization_history(study, target=of_metric, target_name=name),
    }
    if len(study.trials) >= 2:
        # fANOVA: the share of the metric's variance each layer explains (seeded: repeatable;
        # Optuna's default evaluator ranks by reaching low values, wrong for an accuracy)
        figures["Layer importance"] = vis.plot_param_importances(
            study, FanovaImportanceEvaluator(seed=0), target=of_metric, target_name=name
        )
    return {title: _style(fig, height) for title, fig in figures.items()}
