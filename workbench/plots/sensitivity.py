"""Plotly figures of the Sensitivity page. They draw tables from workbench.analysis; no maths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from workbench.analysis import PROPOSALS
from workbench.plots._format import format_metric as fmt_metric
from workbench.plots._format import is_percent, metric_label
from workbench.plots.common import ACCENT, DENSE, KEPT
from workbench.plots.common import style as _style

#: One colour per proposal, the same on every chart and card.
PROPOSAL_COLORS = {"equal-drop": KEPT, "uniform": ACCENT, "global": "#10B981"}
_PALETTE = qualitative.Plotly + qualitative.D3


_label = metric_label


def curves(
    scan: pd.DataFrame,
    metric: str,
    layers: list[str],
    dense: float,
    height: int = 380,
) -> go.Figure:
    """The metric against the layer's sparsity, one line per layer, bootstrap bands if any."""
    percent = is_percent(metric)
    ci = f"{metric}_low" in scan.columns
    fig = go.Figure()
    for i, layer in enumerate(layers):
        rows = scan[scan["layer"] == layer]
        color = _PALETTE[i % len(_PALETTE)]
        x = rows["level"] * 100
        if ci:
            fig.add_scatter(
                x=pd.concat([x, x[::-1]]),
                y=pd.concat([rows[f"{metric}_high"], rows[f"{metric}_low"][::-1]]),
                fill="toself",
                fillcolor=color,
                opacity=0.15,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
                legendgroup=layer,
            )
        fig.add_scatter(
            x=x,
            y=rows[metric],
            mode="lines+markers",
            name=layer,
            legendgroup=layer,
            line=dict(color=color, width=2),
            marker=dict(size=6),
            hovertemplate=(
                f"{layer} at %{{x:.0f}}%<br>{_label(metric)} "
                + ("%{y:.2%}" if percent else "%{y:.4f}")
                + "<extra></extra>"
            ),
        )
    fig.add_hline(
        y=dense,
        line=dict(color="#64748B", width=1.2, dash="dash"),
        annotation_text=f"dense {fmt_metric(metric, dense)}",
        annotation_position="bottom left",
        annotation_font=dict(color="#64748B", size=11),
    )
    fig.update_xaxes(title_text="sparsity of the layer (%)", range=[-2, 102], ticksuffix="%")
    fig.update_yaxes(
        title_text=_label(metric) + (" (band: bootstrap interval)" if ci else ""),
        tickformat=".0%" if percent else None,
    )
    return _style(fig, height)


def drop_heatmap(drops: pd.DataFrame, metric: str, layers: list[str]) -> go.Figure:
    """Layers (rows, in execution order) × levels: how much the metric drops, red = worse."""
    percent = is_percent(metric)
    table = drops.pivot(index="layer", columns="level", values="drop").reindex(layers)
    scale = 100 if percent else 1
    z = table.to_numpy() * scale
    limit = max(float(abs(z).max()), 1e-9) if z.size else 1.0
    levels = [f"{level:.0%}" for level in table.columns]
    unit = " pp" if percent else ""
    interval = ""
    custom = None
    if "drop_low" in drops.columns:  # the paired bootstrap interval of each drop
        bounds = [
            drops.pivot(index="layer", columns="level", values=side).reindex(layers).to_numpy()
            for side in ("drop_low", "drop_high")
        ]
        custom = np.stack(bounds, axis=-1) * scale
        interval = " (interval %{customdata[0]:.2f} to %{customdata[1]:.2f})"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=levels,
            y=list(table.index),
            colorscale="RdBu_r",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            text=[[f"{v:.1f}" if percent else f"{v:.3g}" for v in row] for row in z],
            texttemplate="%{text}",
            textfont=dict(size=11),
            customdata=custom,
            hovertemplate=(
                f"%{{y}} at %{{x}}: {_label(metric)} drops by %{{z:.2f}}{unit}{interval}"
                "<extra></extra>"
            ),
            colorbar=dict(title=f"drop{unit}", thickness=12),
        )
    )
    fig.update_yaxes(autorange="reversed", type="category", title_text="layer")
    fig.update_xaxes(type="category", title_text="sparsity of the layer")
    return _style(fig, 90 + 34 * len(layers))


def tolerance_bars(table: pd.DataFrame, max_drop_label: str) -> go.Figure:
    """Each layer's tolerated sparsity (largest scanned level within the drop), most first."""
    fig = go.Figure(
        go.Bar(
            x=table["tolerated"] * 100,
            y=table["layer"],
            orientation="h",
            marker_color=KEPT,
            text=[f"{v:.0%}" for v in table["tolerated"]],
            textposition="auto",
            hovertemplate=f"%{{y}} tolerates %{{x:.0f}}% within {max_drop_label}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="tolerated sparsity (%)", range=[0, 100], ticksuffix="%")
    return _style(fig, 80 + 30 * len(table))


def proposal_bars(sparsity: pd.DataFrame, height: int = 320) -> go.Figure:
    """Per-layer sparsity of each proposal: a `layer` column, then one column per proposal name."""
    fig = go.Figure()
    for name in [c for c in sparsity.columns if c != "layer"]:
        fig.add_bar(
            x=sparsity["layer"],
            y=sparsity[name] * 100,
            name=PROPOSALS.get(name, name),
            marker_color=PROPOSAL_COLORS.get(name, DENSE),
            hovertemplate=f"{PROPOSALS.get(name, name)}: %{{x}} at %{{y:.1f}}%<extra></extra>",
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="sparsity (%)", range=[0, 101], ticksuffix="%")
    fig.update_xaxes(type="category")
    return _style(fig, height)
