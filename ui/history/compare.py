"""Two runs side by side: metric and size cards with deltas, per-layer sparsity, per class."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import state, widgets
from ui.history import tracking
from ui.history.table import label
from workbench import HIGHER_IS_BETTER, PRIMARY_METRIC, plots, track

#: The size cards: (label, key in a report's size, lower is better).
SIZES = (
    ("Sparsity", "sparsity", False),
    ("Sparse size", "sparse_bytes", True),
    ("Compressed", "compressed_bytes", True),
    ("int8 + bitmask", "int8_bytes", True),
    ("FLOPs / sample", "flops_effective", True),
)


def render(runs: pd.DataFrame) -> None:
    ids = list(runs["run_id"])
    a, b = st.columns(2)
    first = a.selectbox(
        "First run", ids, index=min(1, len(ids) - 1), key=state.widget_key("compare-a"),
        format_func=lambda run_id: label(runs, run_id),
    )  # fmt: skip
    second = b.selectbox(
        "Second run", ids, index=0, key=state.widget_key("compare-b"),
        format_func=lambda run_id: label(runs, run_id),
    )  # fmt: skip
    one, two = tracking.store().detail(first), tracking.store().detail(second)
    names = track.labels(one, two)
    st.caption(f"Cards: the second run, with its change from the first ({names[0]}).")
    metric = PRIMARY_METRIC[two.task]
    shown = [metric] + [m for m in ("loss", "agreement", "mae") if m in two.metrics and m != metric]
    for column, name in zip(st.columns(len(SIZES)), shown, strict=False):
        delta = two.metrics[name] - one.metrics[name]
        column.metric(
            widgets.METRIC_LABELS.get(name, name),
            widgets.fmt_metric(name, two.metrics[name]),
            delta=widgets.fmt_delta(name, delta),
            delta_color=_color(delta, HIGHER_IS_BETTER.get(name, True)),
            help=f"First run: {widgets.fmt_metric(name, one.metrics[name])}",
            border=True,
        )
    for column, (title, key, lower) in zip(st.columns(len(SIZES)), SIZES, strict=True):
        value, delta = two.size[key], two.size[key] - one.size[key]
        text = f"{value:.1%}" if key == "sparsity" else _size(key, value)
        change = f"{delta * 100:+.1f} pp" if key == "sparsity" else _signed(key, delta)
        column.metric(
            title, text, delta=change, delta_color=_color(delta, not lower), border=True,
            help=f"First run: {value - delta:.1%}" if key == "sparsity" else
            f"First run: {_size(key, one.size[key])}",
        )  # fmt: skip
    left, right = st.columns(2, gap="large")
    left.markdown("**Per-layer sparsity (as cut)**")
    left.plotly_chart(
        plots.run_layer_bars(track.layer_sparsity(one, two)), width="stretch",
        config={"displayModeBar": False},
    )  # fmt: skip
    change = track.class_change(one, two)
    if change is not None:
        right.markdown("**Per class: accuracy change, second − first**")
        right.plotly_chart(
            plots.per_class_difference(change, "second"), width="stretch",
            config={"displayModeBar": False},
        )  # fmt: skip


def _size(key: str, value: float) -> str:
    return widgets.fmt_count(value) if key.startswith("flops") else widgets.fmt_bytes(value)


def _signed(key: str, delta: float) -> str:
    return ("+" if delta >= 0 else "−") + _size(key, abs(delta))


def _color(delta: float, higher_is_better: bool) -> str:
    if delta == 0:
        return "off"
    return "normal" if higher_is_better else "inverse"
