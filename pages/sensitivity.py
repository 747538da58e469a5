"""Sensitivity page: prune one layer at a time to find which layers can take pruning, then let
the budget solver spread a target over the layers and compare three ways of doing it."""

import pandas as pd
import streamlit as st

from ui import loaders, state, widgets
from ui import sensitivity_charts as charts
from workbench import CRITERIA, GRANULARITIES, HIGHER_IS_BETTER, Workbench
from workbench.analysis import (
    DEFAULT_LEVELS,
    Budget,
    BudgetError,
    Proposal,
    ScanError,
    ScanSettings,
    cached_scan,
    drop_table,
    parse_levels,
    recommended,
    scan_iter,
    solve_budget,
    tolerated_sparsity,
)
from workbench.pruning.plan import PlanError

state.route_through_app("pages/sensitivity.py")

name = state.demo()
bench = loaders.bench(name)
n_samples = int(bench.dense_outputs.shape[0])
BIG_SCAN_FLOPS = 1e12  # above this, suggest a subset first (minutes on a laptop CPU)
DEFAULT_TEXT = ", ".join(f"{level * 100:g}" for level in DEFAULT_LEVELS)
KIND_LABELS = {
    "sparsity": "Global sparsity",
    "params": "Non-zero parameters",
    "bytes": "Sparse size (bytes)",
    "flops": "FLOPs / sample",
    "drop": "Most sparsity within the max drop",
}
DESCRIPTIONS = {
    "equal-drop": "Each layer goes as far as it can within one common drop, read off its curve: "
    "robust layers take most of the pruning.",
    "uniform": "The same sparsity on every free layer, however sensitive it is.",
    "global": "All free layers' weights ranked together by the criterion (global magnitude "
    "with l1): one threshold for the whole network.",
}

#: Why a proposal is recommended, with and without a max drop.
RECOMMENDED = {
    True: "The best as measured: within the max drop, then meeting the target, then the most "
    "sparsity and the best metric.",
    False: "The best measured metric of the proposals that meet the target.",
}


def _key(kind: str) -> str:
    return state.widget_key(f"sensitivity-{kind}")


def _drop_text(metric: str, drop: float) -> str:
    """A drop in the metric's display units (points for percentages)."""
    if charts.is_percent(metric):
        return f"{drop * 100:.2f} pp"
    return f"{drop:.4f}"


# ---- scan settings -----------------------------------------------------------------------------


def scan_controls() -> ScanSettings | None:
    top = st.columns([1.2, 1.3, 2.2, 0.9, 0.9], vertical_alignment="bottom")
    method = top[0].selectbox(
        "Criterion",
        list(CRITERIA),
        key=_key("method"),
        format_func=lambda m: CRITERIA[m].label,
        help="How each layer chooses which weights to remove first.",
    )
    granularity = top[1].selectbox(
        "Granularity",
        list(GRANULARITIES),
        key=_key("granularity"),
        format_func=lambda g: GRANULARITIES[g].label,
    )
    text = top[2].text_input(
        "Levels (% of each layer removed)",
        value=DEFAULT_TEXT,
        key=_key("levels"),
        help="Comma-separated percentages. Each layer is pruned alone to each of them.",
    )
    subset = top[3].number_input(
        "Samples",
        min_value=0,
        max_value=n_samples,
        value=0,
        step=max(1, n_samples // 10),
        key=_key("subset"),
        help=f"0 = the whole validation set ({n_samples:,} samples). Fewer samples scan faster "
        "(a fixed, seeded random subset): use bootstrap to see how uncertain that makes it.",
    )
    bootstrap = top[4].number_input(
        "Bootstrap",
        min_value=0,
        max_value=2000,
        value=0,
        step=100,
        key=_key("bootstrap"),
        help="Resamples for 95 % confidence intervals (0 = none). Costs almost nothing extra.",
    )
    try:
        levels = parse_levels(text, percent=True)
        return ScanSettings.of(
            bench, levels, method, granularity, int(subset) or None, int(bootstrap)
        )
    except (ScanError, PlanError) as error:
        st.error(f"Cannot scan with these settings: {error}", icon=":material/error:")
        return None


def run_scan(settings: ScanSettings) -> pd.DataFrame | None:
    """The cached scan, or a "Run scan" button; a Stop button interrupts a running scan."""
    frame = cached_scan(bench, **_options(settings))
    points = len(bench.layer_names) * len(settings.levels)
    left, right, info = st.columns([0.7, 0.5, 3], vertical_alignment="center")
    run = left.button(
        "Run scan",
        type="primary",
        icon=":material/play_arrow:",
        disabled=frame is not None,
        key=_key("run"),
    )
    # Clicking Stop reruns the page: the scan in flight is abandoned and nothing is cached.
    right.button(
        "Stop", icon=":material/stop:", disabled=not run, key=_key("stop"), on_click=_on_stop
    )
    if frame is not None:
        info.caption(
            f"Scan ready: {points} single-layer evaluations ({len(bench.layer_names)} layers × "
            f"{len(settings.levels)} levels)."
        )
        return frame
    samples = settings.subset or n_samples
    big = bench.dense_size["flops_dense"] * samples * points > BIG_SCAN_FLOPS
    info.caption(
        f"{points} single-layer evaluations ({len(bench.layer_names)} layers × "
        f"{len(settings.levels)} levels). Each resumes from the layer's cached input, so it "
        "costs only the part of the network after that layer."
        + (
            " This is a big model: scanning a few hundred samples first (with bootstrap "
            "intervals) takes a fraction of the time."
            if big
            else ""
        )
    )
    if not run:
        return None
    bar = st.progress(0.0, text="Starting the scan…")
    for event in scan_iter(bench, **_options(settings)):
        if not isinstance(event, pd.DataFrame):
            bar.progress(
                event.fraction,
                text=f"{event.done} / {event.total} · {event.layer} at {event.level:.0%}",
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


# ---- views -------------------------------------------------------------------------------------


def views(frame: pd.DataFrame, settings: ScanSettings) -> str:
    """Curves, heatmap, ranking and table of a scan; returns the metric the user chose."""
    metrics = [m for m in bench.dense_metrics if m in frame.columns]
    primary = frame.attrs["primary_metric"]
    head = st.columns([1.4, 3, 1], vertical_alignment="bottom")
    metric = head[0].selectbox(
        "Metric",
        metrics,
        index=metrics.index(primary),
        key=_key("metric"),
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
        key=_key("download"),
    )
    layers = list(bench.layer_names)
    drops = drop_table(frame, metric)
    tabs = st.tabs(["Curves", "Heatmap", "Ranking", "Table"])
    with tabs[0]:
        picked = st.multiselect(
            "Layers",
            layers,
            default=layers if len(layers) <= 8 else layers[:4] + layers[-2:],
            key=_key("layers"),
        )
        if picked:
            st.plotly_chart(
                charts.curves(frame, metric, picked, frame.attrs["dense"][metric]),
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
            charts.drop_heatmap(drops, metric, layers),
            width="stretch",
            config={"displayModeBar": False},
        )
    with tabs[2]:
        ranking(frame, metric)
    with tabs[3]:
        st.dataframe(frame, hide_index=True, width="stretch")
    return metric


def ranking(frame: pd.DataFrame, metric: str) -> None:
    percent = charts.is_percent(metric)
    field, note = st.columns([1, 3], vertical_alignment="bottom")
    allowed = field.number_input(
        "Allowed drop" + (" (pp)" if percent else ""),
        min_value=0.0,
        value=1.0 if percent else 0.01,
        step=0.5 if percent else 0.01,
        format="%.2f" if percent else "%.4f",
        key=_key(f"allowed-{metric}"),
    )
    max_drop = allowed / 100 if percent else allowed
    label = _drop_text(metric, max_drop)
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
        charts.tolerance_bars(table, label), width="stretch", config={"displayModeBar": False}
    )
    right.dataframe(
        shown[["layer", "params", "tolerated", "drop", "worst_drop"]],
        hide_index=True,
        width="stretch",
        column_config={
            "layer": "Layer",
            "params": st.column_config.NumberColumn("Weights", format="localized"),
            "tolerated": st.column_config.NumberColumn("Tolerates", format="percent"),
            "drop": st.column_config.NumberColumn("Drop there", format=unit),
            "worst_drop": st.column_config.NumberColumn("Drop at the last level", format=unit),
        },
    )


# ---- budget ------------------------------------------------------------------------------------


def budget_form(metric: str) -> Budget | None:
    st.subheader("Budget")
    st.caption(
        "Give a target; the solver proposes per-layer sparsities three ways, measures each "
        "plan exactly, and compares that with what the scan predicted."
    )
    dense = bench.dense_size
    kind = st.segmented_control(
        "Target",
        list(KIND_LABELS),
        default="sparsity",
        format_func=KIND_LABELS.get,
        key=_key("kind"),
    )
    kind = kind or "sparsity"
    percent = charts.is_percent(metric)
    plan = state.plan()
    with st.form(_key("budget")):
        top = st.columns([1.2, 1.2, 2.6], vertical_alignment="bottom")
        if kind == "sparsity":
            value = top[0].number_input(
                "Global sparsity (%)",
                0,
                100,
                80,
                1,
                key=_key("t-sparsity"),
                help="Share of all prunable weights set to zero, at least.",
            )
        elif kind == "drop":
            value = None
            top[0].caption("The solver goes as far as the max drop allows.")
        else:
            full = {
                "params": dense["nonzero_params"],
                "bytes": dense["sparse_bytes"],
                "flops": dense["flops_effective"],
            }[kind]
            value = top[0].number_input(
                f"{KIND_LABELS[kind]}, at most",
                min_value=0,
                max_value=int(full),
                value=int(full * 0.25),
                step=max(1, int(full) // 100),
                key=_key(f"t-{kind}"),
                help=f"Dense: {int(full):,}.",
            )
        drop_value = top[1].number_input(
            f"Max drop of {widgets.METRIC_LABELS.get(metric, metric)}"
            + (" (pp)" if percent else ""),
            min_value=0.0,
            value=2.0 if kind == "drop" else None,
            step=0.5 if percent else 0.01,
            placeholder="no limit",
            key=_key(f"max-drop-{kind}-{metric}"),
        )
        top[2].caption(
            "Locked layers stay at their sparsity on the Prune page. Min / max bound each free "
            "layer (in %). Sparsities are whole percents, like the Prune page's sliders. With a "
            "max drop, each proposal is checked by measuring it and backed off until it holds."
        )
        whole = top[2].checkbox(
            "Allow removing a whole layer",
            value=False,
            key=_key("whole-layers"),
            help="Off: every free layer keeps at least one weight (channel). A layer removed "
            "whole cuts the network, or deletes classes at the output.",
        )
        table = pd.DataFrame(
            {
                "layer": bench.layer_names,
                "params": bench.layers["params"],
                "current": [plan.sparsity.get(n, 0.0) * 100 for n in bench.layer_names],
                "lock": [n in state.locks() for n in bench.layer_names],
                "min": [0] * len(bench.layer_names),
                "max": [100] * len(bench.layer_names),
            }
        )
        edited = st.data_editor(
            table,
            hide_index=True,
            width="stretch",
            key=_key("constraints"),
            disabled=["layer", "params", "current"],
            column_config={
                "layer": "Layer",
                "params": st.column_config.NumberColumn("Weights", format="localized"),
                "current": st.column_config.NumberColumn("Prune page", format="%.0f%%"),
                "lock": st.column_config.CheckboxColumn("Lock"),
                "min": st.column_config.NumberColumn(
                    "Min %", min_value=0, max_value=100, step=1, required=True
                ),
                "max": st.column_config.NumberColumn(
                    "Max %", min_value=0, max_value=100, step=1, required=True
                ),
            },
        )
        st.form_submit_button("Propose budgets", type="primary", icon=":material/calculate:")
    if kind == "drop" and drop_value is None:
        st.warning("Give a max drop: without a target, the solver needs one.")
        return None
    locked = {row.layer: row.current / 100 for row in edited.itertuples() if row.lock}
    free = edited[~edited["lock"]]
    try:
        return Budget(
            target=None if value is None else (value / 100 if kind == "sparsity" else value),
            kind="sparsity" if kind == "drop" else kind,
            locked=locked,
            min_sparsity={r.layer: r.min / 100 for r in free.itertuples() if r.min > 0},
            max_sparsity={r.layer: r.max / 100 for r in free.itertuples() if r.max < 100},
            max_drop=None
            if drop_value is None
            else (drop_value / 100 if percent else float(drop_value)),
            metric=metric,
            whole_layers=bool(whole),
        )
    except BudgetError as error:
        st.error(f"Cannot solve this budget: {error}", icon=":material/error:")
        return None


@st.cache_resource(max_entries=32, show_spinner="Measuring the three proposals…")
def _solve(key: str, _bench: Workbench, _frame: pd.DataFrame, _budget: Budget) -> list[Proposal]:
    """Keyed by strings (the model may be this session's upload): never hashes the workbench."""
    return solve_budget(_bench, _frame, _budget)


def proposals_view(proposals: list[Proposal]) -> None:
    st.markdown(
        "**Predicted** adds up what each layer cost when the scan pruned it alone; "
        "**measured** prunes all the layers at once. The gap between them shows how much the "
        "layers' errors compound (or cancel out) when they are pruned together."
    )
    best = recommended(proposals)
    if best is None and proposals and proposals[0].max_drop is not None:
        st.warning(
            "No proposal stays within the max drop when measured: the locked layers (or the "
            "minimum sparsities) already cost more. Unlock layers or raise the max drop.",
            icon=":material/warning:",
        )
    columns = st.columns(len(proposals), gap="medium")
    for column, proposal in zip(columns, proposals, strict=True):
        with column.container(border=True):
            proposal_card(proposal)
    st.markdown("**Where each proposal prunes**")
    sparsity = pd.DataFrame(
        {"layer": bench.layer_names}
        | {p.name: [p.sparsity[n] for n in bench.layer_names] for p in proposals}
    )
    st.plotly_chart(
        charts.proposal_bars(sparsity), width="stretch", config={"displayModeBar": False}
    )


def proposal_card(p: Proposal) -> None:
    metric = p.metric
    label = widgets.METRIC_LABELS.get(metric, metric)
    color = "normal" if HIGHER_IS_BETTER[metric] else "inverse"
    st.markdown(f"#### {p.title}" + (" :green-badge[Recommended]" if p.recommended else ""))
    st.caption(DESCRIPTIONS[p.name])
    if p.recommended:
        st.caption(RECOMMENDED[p.max_drop is not None])
    a, b = st.columns(2)
    a.metric(
        f"Measured {label.lower() if label != 'R²' else label}",
        widgets.fmt_metric(metric, p.measured),
        delta=widgets.fmt_delta(metric, p.measured - p.dense),
        delta_color=color,
    )
    b.metric(
        "Predicted",
        widgets.fmt_metric(metric, p.predicted),
        delta=widgets.fmt_delta(metric, p.predicted - p.dense),
        delta_color=color,
    )
    gap = p.interaction
    if abs(gap) < 1e-12:
        verdict = "exactly as predicted"
    elif gap > 0:
        verdict = f"{_drop_text(metric, gap)} worse than the sum: the layers' errors compound"
    else:
        verdict = f"{_drop_text(metric, -gap)} better than the sum: the errors partly cancel"
    st.markdown(
        f"Interaction check: sum of single-layer drops **{_drop_text(metric, p.predicted_drop)}**"
        f", measured together **{_drop_text(metric, p.measured_drop)}**, {verdict}."
    )
    reach = p.footprint
    st.caption(
        f"Sparsity {reach['sparsity']:.1%} · {widgets.fmt_count(reach['params'])} non-zero "
        f"params · {widgets.fmt_bytes(reach['bytes'])} sparse · "
        f"{widgets.fmt_count(reach['flops'])} FLOPs"
        + (
            f" · each layer alone loses at most {_drop_text(metric, p.common_drop)}"
            if p.common_drop
            else ""
        )
    )
    if not p.meets_target:
        st.warning("Misses the target. " + " ".join(p.notes), icon=":material/warning:")
    elif p.notes:
        st.caption(" ".join(p.notes))
    if p.within_max_drop is False:
        st.warning(
            f"Measured drop {_drop_text(metric, p.measured_drop)} is above the max drop.",
            icon=":material/warning:",
        )
    if st.button(
        "Apply on the Prune page",
        key=_key(f"apply-{p.name}"),
        icon=":material/content_cut:",
        width="stretch",
        type="primary" if p.recommended else "secondary",
    ):
        state.set_plan(p.plan)
        st.switch_page("pages/prune.py")


# ---- the page ----------------------------------------------------------------------------------

st.title("Sensitivity")
st.caption(
    "Which layers can take pruning? Each layer is pruned alone to each level and the model is "
    "measured exactly. Flat curves mean a robust layer; steep ones, a sensitive layer."
)
settings = scan_controls()
frame = run_scan(settings) if settings is not None else None
if frame is None and settings is not None:
    st.info(
        "Press **Run scan**: each layer is pruned alone to each level. Its curves, a heatmap, "
        "a ranking of the layers and the budget solver then appear here.",
        icon=":material/play_arrow:",
    )
if frame is not None:
    metric = views(frame, settings)
    st.divider()
    if not GRANULARITIES[settings.granularity].ranks_globally:
        st.info(
            f"The {settings.granularity} pattern has one fixed sparsity, so there is no budget "
            "to spread: scan with unstructured or channel granularity to use the solver."
        )
    else:
        budget = budget_form(metric)
        if budget is not None:
            key = f"{name}|{id(bench)}|{settings!r}|{budget!r}"
            try:
                proposals_view(_solve(key, bench, frame, budget))
            except BudgetError as error:
                st.error(f"Cannot solve this budget: {error}", icon=":material/error:")
