"""A scan's views: curves, heatmap, ranking of the layers and the table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import widgets
from ui.sensitivity import Context, drop_text, key
from workbench import CRITERIA, GRANULARITIES, plots
from workbench.analysis import Budget, ScanSettings, drop_table, scan_layers, tolerated_sparsity


def render(ctx: Context, frame: pd.DataFrame, settings: ScanSettings) -> str:
    """Curves, heatmap, ranking and table of a scan; returns the metric the user chose."""
    bench, name = ctx.bench, ctx.name
    metrics = [m for m in bench.dense_metrics if m in frame.columns]
    primary = frame.attrs["primary_metric"]
    head = st.columns([1.4, 3, 1], vertical_alignment="bottom")
    metric = head[0].selectbox(
        "Metric",
        metrics,
        index=metrics.index(primary),
        key=key("metric"),
        format_func=lambda m: widgets.METRIC_LABELS.get(m, m),
    )
    subset = (
        f"a seeded subset of {frame.attrs['samples']:,} samples"
        if settings.subset
        else f"all {frame.attrs['samples']:,} validation samples"
    )
    bands = (
        f", {settings.bootstrap} bootstrap resamples ({settings.confidence:.0%} intervals)"
        if settings.bootstrap
        else ""
    )
    head[1].caption(
        f"{CRITERIA[settings.method].label} · {GRANULARITIES[settings.granularity].label} · "
        f"{subset}{bands}. Dense {widgets.METRIC_LABELS.get(metric, metric)}: "
        f"{widgets.fmt_metric(metric, frame.attrs['dense'][metric])}."
    )
    head[2].download_button(
        "Download CSV",
        frame.to_csv(index=False),
        file_name=f"sensitivity-{name}-{settings.method}-{settings.granularity}.csv",
        mime="text/csv",
        icon=":material/download:",
        width="stretch",
        key=key("download"),
    )
    layers = scan_layers(frame)
    groups = frame.attrs.get("groups") or {}
    if groups:
        coupled = "; ".join(f"{lead} with {', '.join(rest)}" for lead, rest in groups.items())
        st.caption(
            f"Channel groups: a coupled group is scanned as one, under its first layer's name "
            f"({coupled})."
        )
    drops = drop_table(frame, metric)
    tabs = st.tabs(["Curves", "Heatmap", "Ranking", "Table"])
    with tabs[0]:
        picked = st.multiselect(
            "Layers",
            layers,
            default=layers if len(layers) <= 8 else layers[:4] + layers[-2:],
            key=key("layers"),
        )
        if picked:
            st.plotly_chart(
                plots.curves(frame, metric, picked, frame.attrs["dense"][metric]),
                width="stretch",
                config={"displayModeBar": False},
            )
        else:
            st.caption("Pick at least one layer.")
    with tabs[1]:
        st.caption(
            "How much the metric drops when only that layer is pruned to that level "
            "(red: worse than dense; blue: better, usually noise)."
        )
        st.plotly_chart(
            plots.drop_heatmap(drops, metric, layers),
            width="stretch",
            config={"displayModeBar": False},
        )
    with tabs[2]:
        ranking(ctx, frame, metric)
    with tabs[3]:
        st.dataframe(frame, hide_index=True, width="stretch")
    return metric


def ranking(ctx: Context, frame: pd.DataFrame, metric: str) -> None:
    bench = ctx.bench
    percent = plots.is_percent(metric)
    field, note = st.columns([1, 3], vertical_alignment="bottom")
    allowed = field.number_input(
        "Allowed drop" + (" (pp)" if percent else ""),
        min_value=0.0,
        value=1.0 if percent else 0.01,
        step=0.5 if percent else 0.01,
        format="%.2f" if percent else "%.4f",
        key=key(f"allowed-{metric}"),
    )
    max_drop = Budget.drop_from_form(metric, allowed)
    label = drop_text(metric, max_drop)
    note.caption(
        f"For each layer, the largest scanned level with no level up to it costing more than "
        f"{label}. Big layers that tolerate a lot are where pruning pays."
    )
    table = tolerated_sparsity(frame, max_drop, metric)
    table = table.merge(bench.layers[["name", "params"]], left_on="layer", right_on="name")
    scale, unit = (100, "%.2f pp") if percent else (1, "%.4f")
    shown = table.assign(drop=table["drop"] * scale, worst_drop=table["worst_drop"] * scale)
    left, right = st.columns([1.2, 1])
    left.plotly_chart(
        plots.tolerance_bars(table, label), width="stretch", config={"displayModeBar": False}
    )
    widgets.table(
        right,
        shown,
        {
            "layer": "Layer",
            "params": st.column_config.NumberColumn("Weights", format="localized"),
            "tolerated": st.column_config.NumberColumn("Tolerates", format="percent"),
            "drop": st.column_config.NumberColumn("Drop there", format=unit),
            "worst_drop": st.column_config.NumberColumn("Drop at the last level", format=unit),
        },
    )
