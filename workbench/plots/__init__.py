"""Plotly figures of the workbench's tables and arrays, the same in the app and a notebook.

`import workbench.plots as plots; plots.histogram(weight_histogram(w, mask), cut)`. No
Streamlit here; no tensor maths either: builders take what the core computed.
"""

from workbench.plots._format import format_delta, format_metric, is_percent, metric_label
from workbench.plots.common import (
    ACCENT,
    CUT,
    DENSE,
    KEPT,
    confusion_change,
    histogram,
    histogram_grid,
    layer_bars,
    per_class,
    style,
    weight_heatmap,
)
from workbench.plots.data import preview_figure
from workbench.plots.experiments import (
    frontier_chart,
    per_class_difference,
    run_layer_bars,
    search_plots,
)
from workbench.plots.importance import (
    channel_bars,
    channel_grid,
    feature_bars,
    image_maps,
    importance_heatmap,
    overlap_curve,
    removal_strip,
    signal_maps,
    token_maps,
)
from workbench.plots.sensitivity import (
    PROPOSAL_COLORS,
    curves,
    drop_heatmap,
    proposal_bars,
    tolerance_bars,
)
from workbench.plots.ship import latency_bars

__all__ = [
    "ACCENT",
    "CUT",
    "DENSE",
    "KEPT",
    "PROPOSAL_COLORS",
    "channel_bars",
    "channel_grid",
    "confusion_change",
    "curves",
    "drop_heatmap",
    "feature_bars",
    "format_delta",
    "format_metric",
    "frontier_chart",
    "histogram",
    "histogram_grid",
    "image_maps",
    "importance_heatmap",
    "is_percent",
    "latency_bars",
    "layer_bars",
    "metric_label",
    "overlap_curve",
    "per_class",
    "per_class_difference",
    "preview_figure",
    "proposal_bars",
    "removal_strip",
    "run_layer_bars",
    "search_plots",
    "signal_maps",
    "style",
    "token_maps",
    "tolerance_bars",
    "weight_heatmap",
]
