"""Plotly figure of measured latency: dense, masked, compacted (and ONNX Runtime) side by side."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.plots.common import ACCENT, DENSE, KEPT, _layout

#: Bar colour per row label; others take the accent.
_COLOURS = {"dense": DENSE, "masked": DENSE, "compacted": KEPT}


def latency_bars(table: pd.DataFrame, height: int = 260) -> go.Figure:
    """Median milliseconds per call (IQR as error bars), one bar per row of a latency table."""
    labels = list(table["label"])
    return go.Figure(
        {
            "data": [
                {
                    "type": "bar",
                    "x": labels,
                    "y": list(table["median_s"] * 1e3),
                    "error_y": {"type": "data", "array": list(table["iqr_s"] * 1e3)},
                    "marker": {"color": [_COLOURS.get(label, ACCENT) for label in labels]},
                    "text": [f"{s:.2f}×" for s in table["speedup"]],
                    "textposition": "outside",
                    "hovertemplate": "%{x}: %{y:.3f} ms<extra></extra>",
                }
            ],
            "layout": _layout(
                height,
                title={"text": f"Latency, batch {int(table['batch'].iloc[0])}", "x": 0},
                yaxis={"title": {"text": "ms per call (median)"}, "rangemode": "tozero"},
                showlegend=False,
            ),
        }
    )
