"""Attribution vs magnitude: which units an attribution criterion and L1 remove, and what each
cut costs, on one layer pruned alone."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

import workbench.explain as ex
from ui import state, widgets
from ui.guard import guard
from ui.importance import NO_BAR, Context
from ui.progress import show
from workbench import CRITERIA, GRANULARITIES, HIGHER_IS_BETTER, plots


# The bar is drawn inside the cached function, so a cache hit replays it: it ends cleared.
@st.cache_data(show_spinner=False, max_entries=32)
def overlap_curve(
    _bench: Any, token: str, layer: str, method: str, granularity: str
) -> pd.DataFrame:
    events = ex.iter_overlap_curve(_bench, layer, method, "l1", granularity)
    return show(events, "Pruning the layer at every sparsity")


def _controls(ctx: Context) -> tuple[str, str, str, float]:
    """The layer, the attribution criterion, the granularity and the layer's sparsity."""
    names = ctx.bench.layer_names
    attribution = [name for name in CRITERIA if name != "l1"]
    preferred = [n for n in ("conductance", "gradient_x_activation") if n in attribution]
    top = st.columns([1, 1.1, 0.9, 1.2], vertical_alignment="bottom")
    layer = top[0].selectbox(
        "Layer",
        names,
        index=names.index(state.start_layer(names, ctx.plan)),
        key=state.widget_key("imp-ov-layer"),
    )
    method = widgets.pick(
        top[1],
        "Criterion",
        CRITERIA,
        "imp-ov-method",
        attribution,
        index=attribution.index(preferred[0]) if preferred else 0,
    )
    granularity = widgets.choice(
        top[2],
        "Granularity",
        ["channel", "unstructured"],
        "imp-ov-granularity",
        format_func=lambda g: "Channels" if g == "channel" else "Weights",
    )
    sparsity = (
        top[3].slider(
            "Sparsity of this layer",
            0,
            100,
            value=50,
            step=5,
            format="%d%%",
            key=state.widget_key("imp-ov-sparsity"),
        )
        / 100
    )
    return layer, method, granularity, sparsity


@st.fragment
def render(ctx: Context) -> None:
    bench = ctx.bench
    layer, method, granularity, sparsity = _controls(ctx)
    st.caption(
        f"{CRITERIA[method].description} Magnitude (L1) removes the smallest weights. Each cut "
        "prunes this layer alone, every other layer dense, so the numbers isolate the choice."
    )
    needs_data = CRITERIA[method].needs_data
    with (
        guard("Cannot compare the criteria") as outcome,
        st.spinner(
            "Scoring the channels with Captum (once per model)…"
            if needs_data
            else "Pruning the layer…"
        ),
    ):
        overlap = ex.criterion_overlap(bench, layer, sparsity, method, "l1", granularity)
    if outcome.failed:
        return
    _cards(overlap, method, granularity)
    if granularity == "channel":
        channels = next(p.channels for p in bench.prunable_layers if p.name == layer)
        st.plotly_chart(
            plots.removal_strip(
                channels,
                overlap.removed,
                overlap.baseline_removed,
                (CRITERIA[method].label, "L1 magnitude"),
            ),
            width="stretch",
            config=NO_BAR,
        )
    with guard("Cannot draw the curve") as outcome:
        curve = overlap_curve(bench, ctx.token, layer, method, granularity)
    if outcome.failed:
        return
    st.plotly_chart(
        plots.overlap_curve(curve, CRITERIA[method].label, "L1 magnitude"),
        width="stretch",
        config=NO_BAR,
    )
    label = widgets.METRIC_LABELS.get(overlap.metric, overlap.metric)
    st.caption(
        f"Lines: {label.lower()} after pruning this layer by each criterion; bars: how much "
        f"their removed sets overlap. {GRANULARITIES[granularity].description}"
    )


def _cards(overlap: Any, method: str, granularity: str) -> None:
    metric = overlap.metric
    label = widgets.METRIC_LABELS.get(metric, metric)
    cards = st.columns(4)
    cards[0].metric(
        "Overlap (Jaccard)",
        f"{overlap.jaccard:.2f}",
        help="Removed by both ÷ removed by either: 1 when the two criteria cut the same units.",
        border=True,
    )
    unit = "channels" if granularity == "channel" else "weights"
    cards[1].metric(
        "Removed by both",
        f"{overlap.shared:,} of {len(overlap.removed):,}",
        help=f"{unit.capitalize()} both criteria remove.",
        border=True,
    )
    for card, name, value in (
        (cards[2], CRITERIA[method].label, overlap.value),
        (cards[3], "L1 magnitude", overlap.baseline_value),
    ):
        card.metric(
            f"{label} · {name}",
            widgets.fmt_metric(metric, value),
            delta=widgets.fmt_delta(metric, value - overlap.dense_value),
            delta_color="normal" if HIGHER_IS_BETTER.get(metric, True) else "inverse",
            border=True,
        )
