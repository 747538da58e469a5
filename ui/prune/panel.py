"""The Prune page's panel: options, the evaluation, the layer controls and the results."""

from __future__ import annotations

import streamlit as st

from ui import loaders, state, widgets
from ui.guard import guard
from ui.prune.callbacks import (
    _on_option,
    _reset,
    _sync_widgets,
)
from ui.prune.controls import _layer_controls
from ui.prune.results import _results
from workbench import CRITERIA, GRANULARITIES, SCOPES


@st.fragment
def render() -> None:
    bench = loaders.current()
    _sync_widgets()
    plan = state.plan()
    granularity = GRANULARITIES[plan.granularity]
    global_scope = plan.scope == "global" and granularity.ranks_globally

    options = st.columns([1.3, 1.3, 0.9, 0.8], vertical_alignment="bottom")
    options[0].selectbox(
        "Criterion",
        list(CRITERIA),
        key=state.widget_key("method"),
        format_func=lambda m: CRITERIA[m].label,
        on_change=_on_option,
        args=("method",),
        help=CRITERIA[plan.method].description,
    )
    options[1].selectbox(
        "Granularity",
        list(GRANULARITIES),
        key=state.widget_key("granularity"),
        format_func=lambda g: GRANULARITIES[g].label,
        on_change=_on_option,
        args=("granularity",),
        help=granularity.description,
    )
    options[2].segmented_control(
        "Scope",
        SCOPES,
        key=state.widget_key("scope"),
        on_change=_on_option,
        args=("scope",),
        help="Layer: each layer to its own sparsity. Global: one target over all unlocked "
        "layers, ranked together.",
    )
    options[3].button(
        "Reset to dense", on_click=_reset, icon=":material/restart_alt:", width="stretch"
    )

    # The sliders are drawn whatever happens to the evaluation: a control that vanishes on an
    # error comes back empty (Streamlit forgets the state of widgets it did not draw).
    report = None
    with guard("This plan cannot be evaluated") as outcome:
        # e.g. a criterion that cannot score one of this model's layers (a PlanError)
        report = bench.evaluate(plan)
    if outcome.failed:
        st.button("Back to dense, keep the settings", on_click=_reset)
    if report is not None:
        widgets.metric_cards(report)
        widgets.size_cards(report, speeds_up=granularity.structured)
    left, right = st.columns([1, 1.9], gap="large")
    with left:
        _layer_controls(plan, report, global_scope)
    if report is not None:
        with right:
            _results(plan, report)
