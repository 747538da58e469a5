"""The Prune page's panel: options, the evaluation, the layer controls and the results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ui import loaders, state, widgets
from ui.guard import guard
from ui.prune import exact, experiments
from ui.prune.callbacks import (
    _on_option,
    _reset,
    _sync_widgets,
)
from ui.prune.controls import _layer_controls
from ui.prune.results import _results
from ui.ship import section as ship
from workbench import CRITERIA, GRANULARITIES, SCOPES, PruningPlan, Report


@st.fragment
def render() -> None:
    bench = loaders.current()
    _sync_widgets()
    plan = state.plan()
    granularity = GRANULARITIES[plan.granularity]
    global_scope = plan.scope == "global" and granularity.ranks_globally

    options = st.columns([1.3, 1.3, 0.9, 0.8], vertical_alignment="bottom")
    _registry_choice(options[0], "Criterion", CRITERIA, "method", plan)
    _registry_choice(options[1], "Granularity", GRANULARITIES, "granularity", plan)
    options[2].segmented_control(
        "Scope",
        SCOPES,
        required=True,  # clicking the chosen scope again must not leave none (a None scope)
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
    shown = None  # the exact report, or an estimate while the exact numbers are coming
    compressed = None
    numbers = st.empty()  # emptied when the plan cannot be evaluated: no half a report
    with guard("This plan cannot be evaluated") as outcome:
        # e.g. a criterion that cannot score one of this model's layers (a PlanError)
        size = bench.size(plan)  # exact without running the model: on screen before metrics
        with numbers.container():
            cards = st.container()  # the metric cards, once the evaluation (or estimate) is in
            coming = st.container()  # for an estimate: says so, and waits (at the end) for exact
            # The compressed card is drawn last (see size_cards).
            compressed = widgets.size_cards(size, bench.dense_size, granularity.structured)
            ship.compact_cards(plan, bench.dense_size)  # a channel plan: the compacted model
        shown = exact.evaluation(bench, plan)
        with cards:
            widgets.metric_cards(shown)
    if outcome.failed:
        numbers.empty()
        compressed = None
        st.button("Back to dense, keep the settings", on_click=_reset)
    report = shown if isinstance(shown, Report) else None
    experiments.render(report)  # undo / redo, Keep, the recent runs
    left, right = st.columns([1, 1.9], gap="large")
    with left:
        _layer_controls(plan, report, global_scope)
    if shown is not None:
        with right:
            _results(plan, shown)
        ship.render(plan)
    if compressed is not None:
        compressed()
    if shown is not None and not isinstance(shown, Report):
        with coming:
            exact.coming(bench, shown)


def _registry_choice(
    column: DeltaGenerator, label: str, registry: Mapping[str, Any], field: str, plan: PruningPlan
) -> None:
    """A select box over a registry's entries (by label) that sets the plan's `field`."""
    column.selectbox(
        label,
        list(registry),
        key=state.widget_key(field),
        format_func=lambda name: registry[name].label,
        on_change=_on_option,
        args=(field,),
        help=registry[getattr(plan, field)].description,
    )
