"""Plotly figures of the Importance page. They take arrays and tables from workbench.explain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.common import CUT, KEPT, weight_heatmap
from workbench.plots.common import style as _style

#: Attribution colours: red pushes the explained output up, blue pushes it down.
ATTRIBUTION_SCALE = "RdBu_r"
#: Channel bars: removed (red) to kept (indigo), through the share of the channel's weights kept.
KEPT_SCALE = [[0.0, CUT], [0.5, "#C4B5FD"], [1.0, KEPT]]
INPUT_SCALE = "Greys"
FRAME = "#CBD5E1"


def _limit(*arrays: np.ndarray) -> float:
    values = [np.nanmax(np.abs(a)) for a in arrays if a.size]
    limit = float(max(values, default=0.0))
    return limit if limit > 0 else 1.0


def _sample_grid(n: int, cols: int, titles: Sequence[tuple[str, ...]], **options: Any) -> go.Figure:
    """Subplots with one row per sample, `cols` panels a row, titled row by row by `titles`."""
    titled = [t for row in titles for t in row]
    return make_subplots(rows=n, cols=cols, subplot_titles=titled, **options)


def _attribution_axis(title: str, length: float) -> dict:
    """The maps' one colour axis: each sample's values over its largest, −1 to 1."""
    return dict(
        colorscale=ATTRIBUTION_SCALE,
        cmin=-1,
        cmax=1,
        colorbar=dict(
            title=dict(text=title, side="top"),
            thickness=12,
            len=min(1.0, length),
            y=1,
            yanchor="top",
            tickvals=[-1, 0, 1],
            ticktext=["− max", "0", "+ max"],
        ),
    )


def image_maps(
    inputs: np.ndarray,
    dense: np.ndarray,
    pruned: np.ndarray,
    titles: Sequence[tuple[str, str, str]],
    cell: int = 230,
) -> go.Figure:
    """One row per sample: the input, then the dense and pruned attribution maps over it.

    `inputs`, `dense`, `pruned` are (n, H, W). Both maps of a row share one colour scale, so
    their colours compare; the input's outline is drawn over them.
    """
    n = len(inputs)
    fig = _sample_grid(
        n, 3, titles, horizontal_spacing=0.04, vertical_spacing=min(0.08, 0.35 / max(n, 1))
    )
    for i in range(n):
        limit = _limit(dense[i], pruned[i])
        low, high = float(np.min(inputs[i])), float(np.max(inputs[i]))
        # Only shapes on a blank background (a digit) have an outline worth drawing.
        outline = high > low and np.mean(inputs[i] <= low + 0.05 * (high - low)) >= 0.2
        fig.add_heatmap(
            z=inputs[i],
            colorscale=INPUT_SCALE,
            showscale=False,
            row=i + 1,
            col=1,
            hovertemplate="row %{y}, col %{x}<br>input %{z:.3f}<extra></extra>",
        )
        for col, values in ((2, dense[i]), (3, pruned[i])):
            fig.add_heatmap(
                z=values / limit,
                customdata=values,
                coloraxis="coloraxis",
                row=i + 1,
                col=col,
                hovertemplate="row %{y}, col %{x}<br>attribution %{customdata:.4g}<extra></extra>",
            )
            if outline:  # the input's shape, as a contour at half its intensity
                fig.add_contour(
                    z=inputs[i],
                    contours=dict(
                        start=(low + high) / 2, end=(low + high) / 2, size=1, coloring="none"
                    ),
                    line=dict(color="rgba(15, 23, 42, 0.55)", width=1.2),
                    showscale=False,
                    showlegend=False,
                    hoverinfo="skip",
                    row=i + 1,
                    col=col,
                )
    for k in range(1, 3 * n + 1):
        suffix = "" if k == 1 else str(k)
        # No ticks, but a thin frame: a digit's blank border is white on white otherwise.
        frame = dict(showticklabels=False, ticks="", showline=True, mirror=True, linecolor=FRAME)
        fig.update_layout(
            {
                f"xaxis{suffix}": dict(constrain="domain", **frame),
                f"yaxis{suffix}": dict(
                    autorange="reversed",
                    scaleanchor=f"x{suffix}",
                    constrain="domain",
                    **frame,
                ),
            }
        )
    fig.update_layout(
        coloraxis=_attribution_axis("attribution<br>(scaled per<br>sample)", 420 / (cell * n))
    )
    fig.update_annotations(font_size=12, yshift=6)
    _style(fig, cell * n + 40)
    fig.update_xaxes(showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fig


def signal_maps(
    inputs: np.ndarray,
    dense: np.ndarray,
    pruned: np.ndarray,
    titles: Sequence[tuple[str, str]],
    cell: int = 200,
) -> go.Figure:
    """One row per sample: the signal drawn twice, its points coloured by each model's
    attribution (dense left, pruned right); `inputs`, `dense`, `pruned` are (n, L)."""
    n, length = inputs.shape
    steps = np.arange(length)
    fig = _sample_grid(
        n,
        2,
        titles,
        horizontal_spacing=0.05,
        vertical_spacing=min(0.1, 0.4 / max(n, 1)),
        shared_yaxes=True,
    )
    for i in range(n):
        limit = _limit(dense[i], pruned[i])
        for col, values in ((1, dense[i]), (2, pruned[i])):
            fig.add_scatter(
                x=steps,
                y=inputs[i],
                mode="lines",
                line=dict(color="#94A3B8", width=1.5),
                hoverinfo="skip",
                showlegend=False,
                row=i + 1,
                col=col,
            )
            fig.add_scatter(
                x=steps,
                y=inputs[i],
                mode="markers",
                marker=dict(
                    color=values / limit,
                    coloraxis="coloraxis",
                    size=6 + 8 * np.abs(values) / limit,
                    line=dict(width=0.5, color="white"),
                ),
                customdata=values,
                hovertemplate="step %{x}<br>signal %{y:.3f}<br>attribution %{customdata:.4g}"
                "<extra></extra>",
                showlegend=False,
                row=i + 1,
                col=col,
            )
    fig.update_layout(coloraxis=_attribution_axis("attribution<br>(scaled)", 380 / (cell * n)))
    fig.update_xaxes(title_text="time step", row=n)
    fig.update_annotations(font_size=12)
    return _style(fig, cell * n + 50)


#: Token cells: lighter ends than the maps' scale, so the token drawn on a cell stays legible.
TOKEN_SCALE = [[0.0, "#3B82F6"], [0.5, "#FFFFFF"], [1.0, "#EF4444"]]


def token_maps(
    tokens: Sequence[Sequence[str]],
    dense: Sequence[np.ndarray],
    pruned: Sequence[np.ndarray],
    titles: Sequence[tuple[str, str]],
    per_line: int = 12,
) -> go.Figure:
    """Per sample, its tokens in reading order (wrapped every `per_line`), each cell coloured by
    its attribution: the dense model's block above the pruned one's, both on the sample's one
    colour scale. `tokens[i]` are sample i's real tokens, `dense[i]`/`pruned[i]` their scores."""
    n = len(tokens)
    lines = [max(1, -(-len(t) // per_line)) for t in tokens]
    heights = [h for count in lines for h in (count, count)]
    fig = make_subplots(
        rows=2 * n,
        cols=1,
        subplot_titles=[t for pair in titles for t in pair],
        row_heights=[h / sum(heights) for h in heights],
        vertical_spacing=min(0.06, 0.5 / max(2 * n, 1)) if n > 1 else 0.12,
    )
    for i in range(n):
        limit = _limit(np.asarray(dense[i]), np.asarray(pruned[i]))
        cells = lines[i] * per_line
        words = np.array(list(tokens[i]) + [""] * (cells - len(tokens[i])), dtype=object)
        for block, values in ((0, dense[i]), (1, pruned[i])):
            padded = np.full(cells, np.nan)
            padded[: len(values)] = values
            fig.add_heatmap(
                z=(padded / limit).reshape(lines[i], per_line),
                customdata=padded.reshape(lines[i], per_line),
                text=words.reshape(lines[i], per_line),
                texttemplate="%{text}",
                textfont=dict(size=12, color="#0F172A"),
                coloraxis="coloraxis",
                xgap=2,
                ygap=2,
                hovertemplate="%{text}<br>attribution %{customdata:.4g}<extra></extra>",
                row=2 * i + block + 1,
                col=1,
            )
    total = sum(heights)
    axis = _attribution_axis("attribution<br>(scaled per<br>sample)", 260 / (34 * total + 60 * n))
    axis["colorscale"] = TOKEN_SCALE
    fig.update_layout(coloraxis=axis)
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_yaxes(
        showticklabels=False, ticks="", showgrid=False, zeroline=False, autorange="reversed"
    )
    fig.update_annotations(font_size=12, xanchor="left", x=0)
    return _style(fig, 34 * total + 62 * n + 30)


def feature_bars(
    dense: np.ndarray,
    pruned: np.ndarray,
    feature_names: Sequence[str],
    titles: Sequence[tuple[str, str]],
    top: int = 12,
) -> go.Figure:
    """One row per sample: each feature's attribution, dense left and pruned right, for the
    `top` features with the largest attribution in either model (largest at the top)."""
    n, features = dense.shape
    names = list(feature_names) or [f"feature {j}" for j in range(features)]
    shown = min(top, features)
    fig = _sample_grid(
        n, 2, titles, horizontal_spacing=0.06, vertical_spacing=min(0.08, 0.3 / max(n, 1))
    )
    for i in range(n):
        strength = np.maximum(np.abs(dense[i]), np.abs(pruned[i]))
        order = np.argsort(-strength, kind="stable")[:shown][::-1]  # largest drawn at the top
        labels = [names[j] for j in order]
        limit = _limit(dense[i], pruned[i]) * 1.05
        for col, values in ((1, dense[i]), (2, pruned[i])):
            fig.add_bar(
                x=values[order],
                y=labels,
                orientation="h",
                marker_color=np.where(values[order] >= 0, "#DC2626", "#2563EB"),
                hovertemplate="%{y}: %{x:.4g}<extra></extra>",
                showlegend=False,
                row=i + 1,
                col=col,
            )
            fig.update_xaxes(range=[-limit, limit], row=i + 1, col=col)
        fig.update_yaxes(showticklabels=False, row=i + 1, col=2)
    fig.update_annotations(font_size=12)
    _style(fig, n * (22 * shown + 70) + 30)
    fig.update_xaxes(zeroline=True, zerolinecolor="#94A3B8", zerolinewidth=1)
    return fig


def channel_bars(rows: pd.DataFrame, title: str = "", height: int = 320) -> go.Figure:
    """A layer's channels by importance (most important left), coloured by what the plan keeps."""
    ordered = rows.sort_values("importance", ascending=False, kind="stable")
    fig = go.Figure(
        go.Bar(
            x=np.arange(1, len(ordered) + 1),
            y=ordered["importance"],
            marker=dict(
                color=ordered["kept"],
                colorscale=KEPT_SCALE,
                cmin=0,
                cmax=1,
                colorbar=dict(title="weights<br>kept", thickness=12, tickformat=".0%"),
            ),
            customdata=np.stack([ordered["channel"], ordered["share"], ordered["kept"]], axis=1),
            hovertemplate="channel %{customdata[0]}<br>importance %{y:.4g} "
            "(%{customdata[1]:.1%} of the layer)<br>weights kept %{customdata[2]:.0%}"
            "<extra></extra>",
        )
    )
    fig.update_layout(bargap=0.08, title=dict(text=title, font=dict(size=14)))
    fig.update_xaxes(title_text="channels, most important first")
    fig.update_yaxes(title_text="mean |attribution|")
    return _style(fig, height)


def channel_grid(table: pd.DataFrame, columns: int = 3) -> go.Figure:
    """Small multiples: every layer's channels by importance, removed channels in red."""
    layers = list(dict.fromkeys(table["layer"]))
    rows = -(-len(layers) // columns)
    height = 200 * rows + 40
    # Row gaps in pixels (room for the next row's titles): as a fixed fraction, 37 layers
    # (minilm-topics) ask for more than the whole figure and plotly refuses.
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=layers,
        horizontal_spacing=0.06,
        vertical_spacing=60 / height if rows > 1 else 0.2,
    )
    for i, layer in enumerate(layers):
        part = table[table["layer"] == layer].sort_values(
            "importance", ascending=False, kind="stable"
        )
        fig.add_bar(
            x=np.arange(1, len(part) + 1),
            y=part["importance"],
            marker=dict(color=part["kept"], colorscale=KEPT_SCALE, cmin=0, cmax=1),
            customdata=part["channel"],
            hovertemplate=f"{layer} channel %{{customdata}}: %{{y:.4g}}<extra></extra>",
            showlegend=False,
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_layout(bargap=0.05)
    fig.update_annotations(font_size=12)
    return _style(fig, height)


def importance_heatmap(*args: Any, **options: Any) -> go.Figure:
    """|w·∂L/∂w| per weight on a sequential scale: `weight_heatmap`'s importance colours."""
    return weight_heatmap(*args, scale="importance", **options)


def overlap_curve(table: pd.DataFrame, method_label: str, baseline_label: str) -> go.Figure:
    """Per sparsity: the headline metric of each criterion's cut, and their Jaccard overlap."""
    method, baseline = table.attrs["method"], table.attrs["baseline"]
    metric = str(table["metric"].iloc[0])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(
        x=table["sparsity"],
        y=table[method],
        name=method_label,
        mode="lines+markers",
        line=dict(color=KEPT, width=2.5),
    )
    fig.add_scatter(
        x=table["sparsity"],
        y=table[baseline],
        name=baseline_label,
        mode="lines+markers",
        line=dict(color="#F59E0B", width=2.5),
    )
    fig.add_scatter(
        x=table["sparsity"],
        y=table["dense"],
        name="dense",
        mode="lines",
        line=dict(color="#94A3B8", dash="dot"),
    )
    fig.add_bar(
        x=table["sparsity"],
        y=table["jaccard"],
        name="overlap (Jaccard)",
        marker_color="rgba(100, 116, 139, 0.25)",
        width=0.06,
        secondary_y=True,
        hovertemplate="%{x:.0%}: Jaccard %{y:.2f}<extra></extra>",
    )
    percent = metric in ("accuracy", "agreement")
    fig.update_yaxes(
        title_text=metric,
        tickformat=".0%" if percent else None,
        range=[0, 1.02] if percent else None,
        secondary_y=False,
    )
    fig.update_yaxes(
        title_text="Jaccard overlap",
        range=[0, 1.02],
        tickvals=[0, 0.25, 0.5, 0.75, 1],
        showgrid=False,
        secondary_y=True,
    )
    fig.update_xaxes(title_text="sparsity of the layer", tickformat=".0%")
    fig.update_layout(bargap=0.3)
    return _style(fig, 340)


def removal_strip(
    n_units: int, removed: np.ndarray, baseline_removed: np.ndarray, labels: tuple[str, str]
) -> go.Figure:
    """Which channels each criterion removes: one row per criterion, one cell per channel."""
    grid = np.zeros((2, n_units))
    grid[0, removed] = 1
    grid[1, baseline_removed] = 1
    both = np.zeros(n_units, dtype=bool)
    both[np.intersect1d(removed, baseline_removed)] = True
    text = np.where(np.tile(both, (2, 1)) & (grid > 0), "both", np.where(grid > 0, "removed", ""))
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=np.arange(n_units),
            y=list(labels),
            colorscale=[[0, "#E0E7FF"], [1, CUT]],
            zmin=0,
            zmax=1,
            showscale=False,
            xgap=1,
            ygap=3,
            customdata=text,
            hovertemplate="%{y}: channel %{x} %{customdata}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="channel (red: removed)", showgrid=False)
    fig.update_yaxes(showgrid=False, autorange="reversed")
    return _style(fig, 170)
