"""Sensitivity page: prune one layer at a time to find which layers can take pruning, then let
the budget solver spread a target over the layers and compare three ways of doing it."""

import streamlit as st

from ui import loaders, state
from ui.sensitivity import Context, budget, proposals, scan, views
from workbench import GRANULARITIES

state.route_through_app("pages/sensitivity.py")

name = state.demo()
ctx = Context(name=name, bench=loaders.bench(name))

st.title("Sensitivity")
st.caption(
    "Which layers can take pruning? Each layer is pruned alone to each level and the model is "
    "measured exactly. Flat curves mean a robust layer; steep ones, a sensitive layer."
)
settings = scan.controls(ctx)
frame = scan.run_scan(ctx, settings) if settings is not None else None
if frame is None and settings is not None:
    st.info(
        "Press **Run scan**: each layer is pruned alone to each level. Its curves, a heatmap, "
        "a ranking of the layers and the budget solver then appear here.",
        icon=":material/play_arrow:",
    )
if frame is not None:
    metric = views.render(ctx, frame, settings)
    st.divider()
    if not GRANULARITIES[settings.granularity].ranks_globally:
        st.info(
            f"The {settings.granularity} pattern has one fixed sparsity, so there is no budget "
            "to spread: scan with unstructured or channel granularity to use the solver."
        )
    else:
        chosen = budget.form(ctx, frame, metric)
        if chosen is not None:
            proposals.render(ctx, frame, settings, chosen)
