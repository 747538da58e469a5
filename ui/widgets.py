"""Reusable pieces of the pages: formatting, the demo picker, metric cards."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ui import loaders, state
from ui.text import plain
from workbench import HIGHER_IS_BETTER, PRIMARY_METRIC, Estimate, Report
from workbench.evaluate.metrics import METRICS
from workbench.plots._format import format_bytes, format_delta, format_metric, is_percent

#: Each metric's label, from the core's metric registry.
METRIC_LABELS = {name: metric.label for name, metric in METRICS.items()}
fmt_metric = format_metric
fmt_delta = format_delta


fmt_bytes = format_bytes


def fmt_estimate(name: str, estimate: Estimate) -> str:
    """A metric as "≈ 91.2% ± 1.4" (points for a share): half its bootstrap interval."""
    value, half = estimate.metrics[name], estimate.half_width(name)
    if is_percent(name):
        return f"≈ {value:.1%} ± {half * 100:.1f}"
    return f"≈ {value:.3g} ± {half:.2g}"


def fmt_count(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} G"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n:,.0f}"


def choice(where: Any, label: str, options: Sequence[str], kind: str, **extra: Any) -> str:
    """A segmented control that always has a value, its first option to start with, and a
    widget key of this demo's (`state.widget_key(kind)`); `where` is `st` or a column."""
    return where.segmented_control(
        label, options, default=options[0], required=True, key=state.widget_key(kind), **extra
    )


def pick(
    where: Any,
    label: str,
    registry: Mapping[str, Any],
    kind: str,
    names: Sequence[str] | None = None,
    **extra: Any,
) -> str:
    """A selectbox over a registry's `names` (all of them by default), each shown by its entry's
    `label`, with a widget key of this demo's."""
    return where.selectbox(
        label,
        list(registry if names is None else names),
        format_func=lambda name: registry[name].label,
        key=state.widget_key(kind),
        **extra,
    )


def table(where: Any, frame: Any, columns: Mapping[str, Any]) -> None:
    """`frame`'s `columns` in their order, each with its label or column config; no index."""
    where.dataframe(
        frame[list(columns)], hide_index=True, width="stretch", column_config=dict(columns)
    )


def demo_picker() -> None:
    """The sidebar's model choice, shared by every page."""
    names = loaders.available()
    current = state.demo()

    def changed() -> None:
        state.set_demo(st.session_state["demo_picker"])

    st.session_state["demo_picker"] = current
    st.selectbox(
        "Model",
        names,
        key="demo_picker",
        on_change=changed,
        format_func=lambda n: f"{n} · {loaders.info(n).title}",
        help="A built-in demo: a small trained model with its validation data.",
    )


def notices() -> None:
    """What a link or a stale plan lost, and why: one plain line each, shown once."""
    for text in state.take_notices():
        st.warning(plain(text), icon=":material/link_off:")


def open_expander(where: Any, label: str, icon: str, kind: str) -> DeltaGenerator | None:
    """An expander whose content is drawn only while it is open (a page draws every element
    again on each slider step): the expander to draw into, or None while it is closed."""
    expander = where.expander(label, icon=icon, key=state.widget_key(kind), on_change="rerun")
    return expander if expander.open else None


def _color(delta: float, color: str) -> str:
    # An unchanged value is news of nothing: no green or red for +0.
    return "off" if delta == 0 else color


def metric_cards(report: Report | Estimate, dense_only: bool = False) -> None:
    """Headline metrics with deltas against the dense model; an estimate's marked "≈" with
    the half width of its interval."""
    metrics = report.dense_metrics if dense_only else report.metrics
    names = [PRIMARY_METRIC[report.task]] + [
        m
        for m in ("top5_accuracy", "loss", "mae", "agreement", "agreement_rmse")
        if m in metrics and m != PRIMARY_METRIC[report.task]
    ]
    if dense_only:
        names = [n for n in names if not n.startswith("agreement")]
    estimated = isinstance(report, Estimate)
    for column, name in zip(st.columns(len(names)), names, strict=True):
        delta = None if dense_only else report.delta(name)
        column.metric(
            METRIC_LABELS.get(name, name),
            fmt_estimate(name, report) if estimated else fmt_metric(name, metrics[name]),
            delta=None if delta is None else fmt_delta(name, delta),
            delta_color=_color(
                delta or 0.0, "normal" if HIGHER_IS_BETTER.get(name, True) else "inverse"
            ),
            border=True,
        )


#: What each byte-size card measures, by its key in `Report.size`.
BYTES_HELP = {
    "sparse_bytes": "fp32 non-zeros in the smaller of CSR and bitmask encodings, per weight "
    "tensor.",
    "compressed_bytes": "Measured deflate (zip/gzip) length of the pruned fp32 state dict.",
    "int8_bytes": "Non-zeros quantized to int8 with their bitmask and one scale per tensor.",
}


def size_cards(
    size: Mapping[str, float], dense: Mapping[str, float], speeds_up: bool = True
) -> Callable[[], None]:
    """Sparsity, size and FLOPs (`Report.size`) against the dense model's. Returns what draws
    the compressed card: call it once the rest of the page is drawn (its zlib length is
    measured in the background meanwhile, so a slider step's other numbers never wait for it).

    `speeds_up`: the plan removes work a dense kernel really skips (whole channels); otherwise
    the FLOPs card says it counts what skipping the zeros would save, and is not coloured.
    """
    points = (size["sparsity"] - dense["sparsity"]) * 100
    nonzero = size["nonzero_params"] - dense["nonzero_params"]
    flops = size["flops_effective"] / size["flops_dense"] - 1

    def in_bytes(label: str, key: str, base: str, versus: str = "") -> tuple:
        change, ratio = size[key] - dense[base], f"{size[key] / dense[base] - 1:+.1%}{versus}"
        return label, fmt_bytes(size[key]), change, ratio, "inverse", BYTES_HELP[key]

    cards = [
        (
            "Sparsity",
            f"{size['sparsity']:.1%}",
            points,
            f"{points:+.1f} pp",
            "normal",
            "Zero parameters among all of the model's parameters (biases included).",
        ),
        (
            "Non-zero params",
            f"{size['nonzero_params']:,}",
            nonzero,
            f"{nonzero:+,}",
            "inverse",
            f"{size['nonzero_params']:,} of {size['total_params']:,} parameters are non-zero.",
        ),
        in_bytes("Sparse size", "sparse_bytes", "dense_bytes", " vs dense"),
        None,  # the compressed card: drawn last
        in_bytes("int8 + bitmask", "int8_bytes", "dense_bytes", " vs fp32"),
        (
            "FLOPs / sample" if speeds_up else "FLOPs if zeros were skipped",
            fmt_count(size["flops_effective"]),
            size["flops_effective"] - size["flops_dense"],
            f"{flops:+.1%}",
            "inverse" if speeds_up else "off",
            "Multiply-add FLOPs left when the work of removed channels is skipped "
            f"(dense: {size['flops_dense']:,})."
            if speeds_up
            else "Multiply-add FLOPs left if the work of zeroed weights were skipped "
            f"(dense: {size['flops_dense']:,}). Dense kernels skip nothing: this plan runs "
            "as fast as the dense model.",
        ),
    ]
    slot = None
    for column, card in zip(st.columns(len(cards)), cards, strict=True):
        if card is None:
            slot = column.empty()
        else:
            _size_card(column, *card)

    def compressed() -> None:
        _size_card(slot, *in_bytes("Compressed", "compressed_bytes", "compressed_bytes"))

    if size.ready("compressed_bytes"):
        compressed()
        return lambda: None
    slot.metric("Compressed", "…", help=BYTES_HELP["compressed_bytes"], border=True)
    return compressed


def _size_card(
    where: DeltaGenerator, label: str, value: str, change: float, delta: str, color: str, text: str
) -> None:
    where.metric(
        label, value, delta=delta, delta_color=_color(change, color), help=text, border=True
    )
