"""Plotly figure builders. They take tables and arrays from the core; no tensor maths here.

Figures are written as plain Plotly specs and wrapped in `go.Figure` once: the same figures as
the builder API (add_vline, make_subplots...), at about a twentieth of the Python time, which is
what a slider drag waits for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

DENSE = "#CBD5E1"  # slate-300: what the dense model had
KEPT = "#4F46E5"  # indigo-600: what survives pruning
REMOVED = "rgba(239, 68, 68, 0.10)"  # shaded pruned region
CUT = "#DC2626"
ACCENT = "#F59E0B"
GRID = "#EEF2F7"


def _layout(height: int, **extra: object) -> dict:
    layout = {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 36, "b": 10},
        "plot_bgcolor": "white",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "font": {"size": 12},
        "xaxis": {"showgrid": False, "zeroline": False},
        "yaxis": {"gridcolor": GRID, "zeroline": False},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def style(fig: go.Figure, height: int) -> go.Figure:
    """The same look on a figure made with Plotly's builder API (every axis, subplots too)."""
    layout = _layout(height)
    xaxis, yaxis = layout.pop("xaxis"), layout.pop("yaxis")
    fig.update_layout(**layout)
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(**yaxis)
    return fig


def _bars(bins: pd.DataFrame, xaxis: str = "x", yaxis: str = "y", legend: bool = True) -> list:
    centers = ((bins["left"] + bins["right"]) / 2).tolist()
    width = float((bins["right"] - bins["left"]).iloc[0])
    return [
        {"type": "bar", "x": centers, "y": bins[column].tolist(), "width": width,
         "marker": {"color": color}, "name": column, "xaxis": xaxis, "yaxis": yaxis,
         "showlegend": legend, "hovertemplate": f"%{{y:,}} {column}<extra></extra>"}
        for column, color in (("dense", DENSE), ("kept", KEPT))
    ]  # fmt: skip


def _cut_shapes(cut: float, xref: str = "x", yref: str = "y domain") -> list:
    line = {"color": CUT, "width": 1.5, "dash": "dash"}
    return [
        {"type": "rect", "xref": xref, "yref": yref, "x0": -cut, "x1": cut, "y0": 0, "y1": 1,
         "fillcolor": REMOVED, "line": {"width": 0}, "layer": "below"},
        {"type": "line", "xref": xref, "yref": yref, "x0": -cut, "x1": -cut, "y0": 0, "y1": 1,
         "line": line},
        {"type": "line", "xref": xref, "yref": yref, "x0": cut, "x1": cut, "y0": 0, "y1": 1,
         "line": line},
    ]  # fmt: skip


def histogram(
    bins: pd.DataFrame, cut: float | None, title: str = "", log: bool = False, height: int = 300
) -> go.Figure:
    """Dense and kept weight counts per bin; the magnitude cut as lines, its region shaded."""
    shapes, annotations = [], []
    if cut is not None:
        shapes = _cut_shapes(cut)
        annotations = [
            {"x": cut, "y": 1, "yref": "paper", "text": f"|w| ≤ {cut:.3g} removed",
             "showarrow": False, "xanchor": "left", "font": {"color": CUT, "size": 11}}
        ]  # fmt: skip
    layout = _layout(
        height,
        barmode="overlay",
        bargap=0,
        title={"text": title, "font": {"size": 14}},
        shapes=shapes,
        annotations=annotations,
        xaxis={"title": {"text": "weight value"}},
        yaxis={"title": {"text": "count"}, "type": "log" if log else "linear"},
    )
    return go.Figure({"data": _bars(bins), "layout": layout})


def histogram_grid(
    panels: list[tuple[str, pd.DataFrame, float | None]], log: bool = False, columns: int = 3
) -> go.Figure:
    """Small multiples: one histogram per layer, same colours as the detail view."""
    rows = -(-len(panels) // columns)
    total = 230 * rows + 40  # pixels: every panel keeps its height however many layers
    gap_x, gap_y = 0.06, 50 / total  # a title's room between rows
    width = (1 - gap_x * (columns - 1)) / columns
    height = (1 - gap_y * (rows - 1)) / rows
    data, shapes, annotations = [], [], []
    layout: dict = {}
    for i, (name, bins, cut) in enumerate(panels):
        row, col = divmod(i, columns)
        suffix = "" if i == 0 else str(i + 1)
        x0 = col * (width + gap_x)
        y1 = 1 - row * (height + gap_y)
        layout[f"xaxis{suffix}"] = {"domain": [x0, min(1.0, x0 + width)], "anchor": f"y{suffix}",
                                    "showgrid": False, "zeroline": False}  # fmt: skip
        layout[f"yaxis{suffix}"] = {"domain": [max(0.0, y1 - height), y1],
                                    "anchor": f"x{suffix}", "gridcolor": GRID,
                                    "type": "log" if log else "linear"}  # fmt: skip
        data += _bars(bins, f"x{suffix}", f"y{suffix}", legend=i == 0)
        if cut is not None:
            shapes += _cut_shapes(cut, f"x{suffix}", f"y{suffix} domain")[:1]
        annotations.append(
            {"text": name, "x": x0 + width / 2, "y": y1, "xref": "paper", "yref": "paper",
             "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 12}}
        )  # fmt: skip
    base = _layout(total, barmode="overlay", bargap=0, shapes=shapes,
                   annotations=annotations)  # fmt: skip
    del base["xaxis"], base["yaxis"]
    return go.Figure({"data": data, "layout": {**base, **layout}})


def weight_heatmap(
    values: np.ndarray,
    kept: np.ndarray,
    row_label: str,
    col_label: str,
    show_mask: bool = True,
    height: int = 420,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
    scale: str = "weights",
) -> go.Figure:
    """Weights on a diverging scale (or, with `scale="importance"`, their |w·∂L/∂w| on a
    sequential one); removed weights greyed out when the mask is shown.

    `rows` / `cols`: each cell's position in the axis' units (`WeightMap.rows`), so the axes
    count neurons, filters and inputs rather than cells.
    """
    shown = np.where(kept > 0, values, np.nan) if show_mask else values
    where = {} if rows is None or cols is None else {"x": cols.tolist(), "y": rows.tolist()}
    data = []
    if show_mask:
        removed = np.where(kept > 0, np.nan, 1.0)
        data.append({"type": "heatmap", "z": removed, "showscale": False, "hoverinfo": "skip",
                     "colorscale": [[0, "#E5E7EB"], [1, "#E5E7EB"]], **where})  # fmt: skip
    colours, value = _HEATMAP_SCALES[scale](values)
    data.append(
        {"type": "heatmap", "z": shown, **colours, "customdata": kept, **where,
         "hovertemplate": f"{row_label} %{{y:.4~g}}, {col_label} %{{x:.4~g}}<br>{value}"
         "<br>kept %{customdata:.0%}<extra></extra>"}
    )  # fmt: skip
    layout = _layout(
        height,
        yaxis={"autorange": "reversed", "title": {"text": row_label}, "showgrid": False},
        xaxis={"title": {"text": col_label}},
    )
    return go.Figure({"data": data, "layout": layout})


def _weight_colours(values: np.ndarray) -> tuple[dict, str]:
    limit = float(np.abs(values).max()) or 1.0
    colours = {"colorscale": "RdBu", "zmid": 0, "zmin": -limit, "zmax": limit,
               "colorbar": {"title": {"text": "w"}, "thickness": 12}}  # fmt: skip
    return colours, "w=%{z:.4f}"


def _importance_colours(values: np.ndarray) -> tuple[dict, str]:
    finite = values[np.isfinite(values)]
    # The 99.5th percentile: a few very large scores would wash out all the others.
    high = float(np.quantile(finite, 0.995)) if finite.size and finite.max() > 0 else 1.0
    colours = {"colorscale": "Viridis", "zmin": 0, "zmax": high,
               "colorbar": {"title": {"text": "|w·∂L/∂w|"}, "thickness": 12}}  # fmt: skip
    return colours, "|w·∂L/∂w| %{z:.3g}"


#: What a weight heatmap can colour: its colour axis and hover line, from the cells' values.
_HEATMAP_SCALES = {"weights": _weight_colours, "importance": _importance_colours}


def layer_bars(layers: pd.DataFrame, height: int = 300) -> go.Figure:
    """Per layer: sparsity (bars, left axis) and remaining parameters (markers, right axis)."""
    names = layers["name"].tolist()
    data = [
        {"type": "bar", "x": names, "y": layers["sparsity"].tolist(), "name": "sparsity",
         "marker": {"color": KEPT}, "hovertemplate": "%{x}: %{y:.1%} removed<extra></extra>"},
        {"type": "scatter", "x": names, "y": layers["nonzero"].tolist(), "yaxis": "y2",
         "name": "remaining weights", "mode": "markers+lines",
         "marker": {"color": ACCENT, "size": 9}, "line": {"color": ACCENT, "width": 1},
         "hovertemplate": "%{x}: %{y:,} weights left<extra></extra>"},
    ]  # fmt: skip
    layout = _layout(
        height,
        yaxis={"title": {"text": "sparsity"}, "tickformat": ".0%", "range": [0, 1.02]},
        yaxis2={"title": {"text": "remaining weights"}, "overlaying": "y", "side": "right",
                "showgrid": False, "rangemode": "tozero"},
    )  # fmt: skip
    return go.Figure({"data": data, "layout": layout})


def per_class(table: pd.DataFrame, height: int = 300) -> go.Figure:
    classes = table["class"].tolist()
    data = [
        {"type": "bar", "x": classes, "y": table[column].tolist(), "name": name,
         "marker": {"color": color}}
        for column, name, color in (
            ("dense_accuracy", "dense", DENSE),
            ("accuracy", "pruned", KEPT),
        )
    ]  # fmt: skip
    layout = _layout(
        height,
        barmode="group",
        yaxis={"tickformat": ".0%", "range": [0, 1.02], "title": {"text": "accuracy"}},
        xaxis={"title": {"text": "class"}, "type": "category"},
    )
    return go.Figure({"data": data, "layout": layout})


def confusion_change(change: np.ndarray, class_names: list[str], height: int = 320) -> go.Figure:
    """Pruned minus dense confusion counts: red where predictions went, blue where they left."""
    limit = max(1, int(np.abs(change).max()))
    data = [
        {"type": "heatmap", "z": change, "x": class_names, "y": class_names,
         "colorscale": "RdBu", "reversescale": True, "zmid": 0, "zmin": -limit, "zmax": limit,
         "text": np.where(change != 0, change, "").tolist(), "texttemplate": "%{text}",
         "hovertemplate": "true %{y}, predicted %{x}: %{z:+d}<extra></extra>",
         "colorbar": {"thickness": 12}}
    ]  # fmt: skip
    layout = _layout(
        height,
        yaxis={"autorange": "reversed", "title": {"text": "true class"}, "type": "category"},
        xaxis={"title": {"text": "predicted class"}, "type": "category"},
    )
    return go.Figure({"data": data, "layout": layout})
