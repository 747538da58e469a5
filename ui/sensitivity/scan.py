"""The scan's settings, and running it: each layer pruned alone to each level."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import scale
from ui.guard import guard
from ui.progress import show
from ui.sensitivity import Context, key
from workbench import CRITERIA, GRANULARITIES
from workbench.analysis import (
    DEFAULT_LEVELS,
    ScanSettings,
    cached_scan,
    iter_scan,
    parse_levels,
)

BIG_SCAN_FLOPS = 1e12  # above this, suggest a subset first (minutes on a laptop CPU)
DEFAULT_TEXT = ", ".join(f"{level * 100:g}" for level in DEFAULT_LEVELS)


def controls(ctx: Context) -> ScanSettings | None:
    bench, n_samples = ctx.bench, ctx.n_samples
    top = st.columns([1.2, 1.3, 2.2, 0.9, 0.9], vertical_alignment="bottom")
    method = top[0].selectbox(
        "Criterion",
        list(CRITERIA),
        key=key("method"),
        format_func=lambda m: CRITERIA[m].label,
        help="How each layer chooses which weights to remove first.",
    )
    granularity = top[1].selectbox(
        "Granularity",
        list(GRANULARITIES),
        key=key("granularity"),
        format_func=lambda g: GRANULARITIES[g].label,
    )
    text = top[2].text_input(
        "Levels (% of each layer removed)",
        value=DEFAULT_TEXT,
        key=key("levels"),
        help="Comma-separated percentages. Each layer is pruned alone to each of them.",
    )
    subset = top[3].number_input(
        "Samples",
        min_value=0,
        max_value=n_samples,
        value=0,
        step=max(1, n_samples // 10),
        key=key("subset"),
        help=f"0 = the whole validation set ({n_samples:,} samples). Fewer samples scan faster "
        "(a fixed, seeded random subset): use bootstrap to see how uncertain that makes it.",
    )
    bootstrap = top[4].number_input(
        "Bootstrap",
        min_value=0,
        max_value=2000,
        value=0,
        step=100,
        key=key("bootstrap"),
        help="Resamples for 95 % confidence intervals (0 = none). Costs almost nothing extra.",
    )
    with guard("Cannot scan with these settings"):
        levels = parse_levels(text, percent=True)
        return ScanSettings.of(
            bench, levels, method, granularity, int(subset) or None, int(bootstrap)
        )
    return None


def run_scan(ctx: Context, settings: ScanSettings) -> pd.DataFrame | None:
    """The cached scan, or a "Run scan" button; a running scan has a bar and a Stop button."""
    bench, n_samples = ctx.bench, ctx.n_samples
    frame = cached_scan(bench, **_options(settings))
    units = len(bench.plan_layers(settings.granularity))  # a coupled group is one
    noun = "layers and groups" if settings.granularity == "group" else "layers"
    points = units * len(settings.levels)
    left, info = st.columns([0.7, 3.5], vertical_alignment="center")
    run = left.button(
        "Run scan",
        type="primary",
        icon=":material/play_arrow:",
        disabled=frame is not None,
        key=key("run"),
    )
    if frame is not None:
        info.caption(
            f"Scan ready: {points} single-layer evaluations ({units} {noun} × "
            f"{len(settings.levels)} levels)."
        )
        return frame
    samples = settings.subset or n_samples
    big = bench.dense_size["flops_dense"] * samples * points > BIG_SCAN_FLOPS
    info.caption(
        f"{points} single-layer evaluations ({units} {noun} × "
        f"{len(settings.levels)} levels). Each resumes from the layer's cached input, so it "
        "costs only the part of the network after that layer."
        + (
            " This is a big model: scanning a few hundred samples first (with bootstrap "
            "intervals) takes a fraction of the time."
            if big
            else ""
        )
    )
    runner = scale.runner(st, "scan")  # off: in this process
    if not run:
        return None
    # Stop reruns the page, which abandons the scan: the engine caches only a completed scan.
    show(
        iter_scan(bench, runner=runner, **_options(settings)),
        f"Scanning {points} points",
        stop=_on_stop,
        key=key("stop"),
    )
    # Done and cached: draw the page again, now from the cache (buttons in their idle state).
    st.rerun()


def _on_stop() -> None:
    st.toast(
        "Scan stopped; nothing was kept. Run it again when you are ready.",
        icon=":material/stop_circle:",
    )


def _options(settings: ScanSettings) -> dict:
    return {
        "levels": settings.levels,
        "method": settings.method,
        "granularity": settings.granularity,
        "subset": settings.subset,
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
        "confidence": settings.confidence,
    }
