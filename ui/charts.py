"""Plotly figure builders. They take tables and arrays from the core; no tensor maths here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DENSE = "#CBD5E1"  # slate-300: what the dense model had
KEPT = "#4F46E5"  # indigo-600: what survives pruning
REMOVED = "rgba(239, 68, 68, 0.10)"  # shaded pruned region
CUT = "#DC2626"


def _style(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=36, b=10),
        plot_bgcolor="white",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        font=dict(size=12),
    )
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(gridcolor="#EEF2F7", zeroline=False)
    return fig


def histogram(
    bins: pd.DataFrame, cut: float | None, title: str = "", log: bool = False, height: int = 300
) -> go.Figure:
    """Dense and kept weight counts per bin, magnitude cut as lines, the pruned region shaded."""
    centers = (bins["left"] + bins["right"]) / 2
    width = float((bins["right"] - bins["left"]).iloc[0])
    fig = go.Figure()
    fig.add_bar(x=centers, y=bins["dense"], width=width, marker_color=DENSE, name="dense")
    fig.add_bar(x=centers, y=bins["kept"], width=width, marker_color=KEPT, name="kept")
    if cut is not None:
        fig.add_vrect(x0=-cut, x1=cut, fillcolor=REMOVED, line_width=0, layer="below")
        for x in (-cut, cut):
            fig.add_vline(x=x, line_color=CUT, line_width=1.5, line_dash="dash")
        fig.add_annotation(
            x=cut,
            y=1,
            yref="paper",
            text=f"|w| ≤ {cut:.3g} removed",
            showarrow=False,
            xanchor="left",
            font=dict(color=CUT, size=11),
        )
    fig.update_layout(barmode="overlay", bargap=0, title=dict(text=title, font=dict(size=14)))
    fig.update_xaxes(title_text="weight value")
    fig.update_yaxes(title_text="count", type="log" if log else "linear")
    return _style(fig, height)


def histogram_grid(
    panels: list[tuple[str, pd.DataFrame, float | None]], log: bool = False, columns: int = 3
) -> go.Figure:
    """Small multiples: one histogram per layer, same colours as the detail view."""
    rows = -(-len(panels) // columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[p[0] for p in panels],
        horizontal_spacing=0.06,
        vertical_spacing=0.12 if rows > 1 else 0.2,
    )
    for i, (_, bins, cut) in enumerate(panels):
        row, col = i // columns + 1, i % columns + 1
        centers = (bins["left"] + bins["right"]) / 2
        width = float((bins["right"] - bins["left"]).iloc[0])
        fig.add_bar(
            x=centers,
            y=bins["dense"],
            width=width,
            marker_color=DENSE,
            row=row,
            col=col,
            name="dense",
            showlegend=i == 0,
        )
        fig.add_bar(
            x=centers,
            y=bins["kept"],
            width=width,
            marker_color=KEPT,
            row=row,
            col=col,
            name="kept",
            showlegend=i == 0,
        )
        if cut is not None:
            fig.add_vrect(x0=-cut, x1=cut, fillcolor=REMOVED, line_width=0, row=row, col=col)
    fig.update_layout(barmode="overlay", bargap=0)
    fig.update_yaxes(type="log" if log else "linear")
    fig.update_annotations(font_size=12)
    return _style(fig, 230 * rows + 40)


def weight_heatmap(
    values: np.ndarray,
    kept: np.ndarray,
    row_label: str,
    col_label: str,
    show_mask: bool = True,
    height: int = 420,
) -> go.Figure:
    """Weights on a diverging scale; removed weights greyed out when the mask is shown."""
    limit = float(np.abs(values).max()) or 1.0
    shown = np.where(kept > 0, values, np.nan) if show_mask else values
    fig = go.Figure()
    if show_mask:
        removed = np.where(kept > 0, np.nan, 1.0)
        fig.add_heatmap(
            z=removed,
            colorscale=[[0, "#E5E7EB"], [1, "#E5E7EB"]],
            showscale=False,
            hoverinfo="skip",
        )
    fig.add_heatmap(
        z=shown,
        colorscale="RdBu",
        zmid=0,
        zmin=-limit,
        zmax=limit,
        colorbar=dict(title="w", thickness=12),
        customdata=kept,
        hovertemplate="row %{y}, col %{x}<br>w=%{z:.4f}<br>kept %{customdata:.0%}<extra></extra>",
    )
    fig.update_yaxes(autorange="reversed", title_text=row_label, showgrid=False)
    fig.update_xaxes(title_text=col_label)
    return _style(fig, height)


def layer_bars(layers: pd.DataFrame, height: int = 300) -> go.Figure:
    """Per layer: sparsity (bars, left axis) and remaining parameters (markers, right axis)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(
        x=layers["name"],
        y=layers["sparsity"],
        name="sparsity",
        marker_color=KEPT,
        hovertemplate="%{x}: %{y:.1%} removed<extra></extra>",
    )
    fig.add_scatter(
        x=layers["name"],
        y=layers["nonzero"],
        name="remaining params",
        mode="markers+lines",
        marker=dict(color="#F59E0B", size=9),
        line=dict(color="#F59E0B", width=1),
        secondary_y=True,
        hovertemplate="%{x}: %{y:,} weights left<extra></extra>",
    )
    fig.update_yaxes(title_text="sparsity", tickformat=".0%", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(
        title_text="remaining weights", secondary_y=True, showgrid=False, rangemode="tozero"
    )
    return _style(fig, height)


def per_class(table: pd.DataFrame, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_bar(x=table["class"], y=table["dense_accuracy"], name="dense", marker_color=DENSE)
    fig.add_bar(x=table["class"], y=table["accuracy"], name="pruned", marker_color=KEPT)
    fig.update_layout(barmode="group")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], title_text="accuracy")
    fig.update_xaxes(title_text="class", type="category")
    return _style(fig, height)


def confusion_change(change: np.ndarray, class_names: list[str], height: int = 320) -> go.Figure:
    """Pruned minus dense confusion counts: red where predictions moved to, blue where they left."""
    limit = max(1, int(np.abs(change).max()))
    fig = go.Figure(
        go.Heatmap(
            z=change,
            x=class_names,
            y=class_names,
            colorscale="RdBu_r",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            text=np.where(change != 0, change, ""),
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z:+d}<extra></extra>",
            colorbar=dict(thickness=12),
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="true class", type="category")
    fig.update_xaxes(title_text="predicted class", type="category")
    return _style(fig, height)
