"""Importance page: what drives each prediction before and after pruning (Captum), which
channels carry each layer, and how an attribution criterion's cut compares with magnitude's."""

from __future__ import annotations

import streamlit as st

from ui import loaders, state, widgets
from ui.importance import Context, compare, layers, maps
from workbench import PRIMARY_METRIC

state.route_through_app("pages/importance.py")

key = state.demo()
ctx = Context(key=key, bench=loaders.bench(key), info=loaders.info(key), plan=state.plan())
plan = ctx.plan

st.title("Importance")
report = ctx.bench.evaluate(plan)
metric = PRIMARY_METRIC[report.task]
pruned_layers = sum(1 for v in plan.sparsity.values() if v > 0)
metric_name = widgets.METRIC_LABELS.get(metric, metric)
if metric_name[:1].isupper() and metric_name[1:2].islower():  # "Accuracy", not "R²" or "MSE"
    metric_name = metric_name.lower()
st.caption(
    "What drives each prediction before and after pruning, measured with Captum. The pruned "
    f"model is the Prune page's current plan: {pruned_layers} layer(s) pruned, "
    f"{report.size['sparsity']:.1%} of all parameters zero, "
    f"{metric_name} "
    f"{widgets.fmt_metric(metric, report.metrics[metric])} "
    f"(dense {widgets.fmt_metric(metric, report.dense_metrics[metric])})."
)
if plan.is_dense:
    st.info(
        "The current plan prunes nothing yet, so the pruned maps equal the dense ones. Move "
        "some sliders on the Prune page: the plan follows you here.",
        icon=":material/info:",
    )

tabs = st.tabs(
    ["Input attributions", "Layer importance", "Attribution vs magnitude"],
    key=state.widget_key("imp-tab"),
    on_change="rerun",
)
with tabs[0]:
    if tabs[0].open is not False:
        maps.render(ctx)
with tabs[1]:
    if tabs[1].open:
        layers.render(ctx)
with tabs[2]:
    if tabs[2].open:
        compare.render(ctx)
