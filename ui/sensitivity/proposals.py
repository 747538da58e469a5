"""The solver's three proposals, measured, each with a button that applies it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import state, widgets
from ui.guard import guard
from ui.history import tracking
from ui.sensitivity import Context, drop_text, key
from workbench import HIGHER_IS_BETTER, Workbench, plots
from workbench.analysis import Budget, Proposal, recommended, solve_budget

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


@st.cache_resource(max_entries=32, show_spinner="Measuring the three proposals…")
def _solve(
    cache_key: str, _bench: Workbench, _frame: pd.DataFrame, _budget: Budget
) -> list[Proposal]:
    """Keyed by strings (the model may be this session's upload): never hashes the workbench."""
    return solve_budget(_bench, _frame, _budget)


def proposals_view(ctx: Context, proposals: list[Proposal]) -> None:
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
        {"layer": list(proposals[0].sparsity)}
        | {p.name: list(p.sparsity.values()) for p in proposals}
    )
    st.plotly_chart(
        plots.proposal_bars(sparsity), width="stretch", config={"displayModeBar": False}
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
        verdict = f"{drop_text(metric, gap)} worse than the sum: the layers' errors compound"
    else:
        verdict = f"{drop_text(metric, -gap)} better than the sum: the errors partly cancel"
    st.markdown(
        f"Interaction check: sum of single-layer drops **{drop_text(metric, p.predicted_drop)}**"
        f", measured together **{drop_text(metric, p.measured_drop)}**, {verdict}."
    )
    reach = p.footprint
    st.caption(
        f"Sparsity {reach['sparsity']:.1%} · {widgets.fmt_count(reach['params'])} non-zero "
        f"params · {widgets.fmt_bytes(reach['bytes'])} sparse · "
        f"{widgets.fmt_count(reach['flops'])} FLOPs"
        + (
            f" · each layer alone loses at most {drop_text(metric, p.common_drop)}"
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
            f"Measured drop {drop_text(metric, p.measured_drop)} is above the max drop.",
            icon=":material/warning:",
        )
    if st.button(
        "Apply on the Prune page",
        key=key(f"apply-{p.name}"),
        icon=":material/content_cut:",
        width="stretch",
        type="primary" if p.recommended else "secondary",
    ):
        state.set_plan(p.plan)
        tracking.keep_plan(p.plan, source="proposal", name=f"{p.title} proposal")
        st.switch_page("pages/prune.py")


def render(ctx: Context, frame: pd.DataFrame, settings: object, budget: Budget) -> None:
    """Solve the budget (cached by strings, never by hashing the workbench) and show it."""
    token = f"{ctx.name}|{id(ctx.bench)}|{settings!r}|{budget!r}"
    with guard("Cannot solve this budget") as outcome:
        proposals = _solve(token, ctx.bench, frame, budget)
    if not outcome.failed:
        proposals_view(ctx, proposals)
