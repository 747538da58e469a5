"""Which samples the input maps explain, and the attribution method's settings."""

from __future__ import annotations

from typing import Any

import streamlit as st

import workbench.explain as ex
from ui import state, widgets
from ui.importance import Context
from workbench import PruningPlan

DEFAULT_SAMPLES = 4


@st.cache_data(show_spinner=False, max_entries=64)
def broken_samples(_bench: Any, token: str, plan_json: str) -> list[int]:
    return ex.broken_by_plan(_bench, PruningPlan.from_json(plan_json))


@st.cache_data(show_spinner=False, max_entries=64)
def class_samples(_bench: Any, token: str, label: int) -> list[int]:
    return ex.samples_of_class(_bench, label)


def method_settings(spec: ex.AttributionMethod, kind: str) -> dict[str, Any]:
    """The method's parameters for this kind of input, as widgets built from their specs."""
    options: dict[str, Any] = {}
    params = spec.params_for(kind)
    if not params:
        return options
    with st.expander(f"Settings of {spec.label}"):
        columns = st.columns(len(params))
        for column, param in zip(columns, params, strict=True):
            widget_key = state.widget_key(f"imp-param-{spec.name}", param.name)
            if param.choices:
                options[param.name] = column.selectbox(
                    param.label, param.choices, key=widget_key, help=param.help
                )
            elif isinstance(param.default, int):
                options[param.name] = column.number_input(
                    param.label,
                    min_value=int(param.minimum) if param.minimum is not None else None,
                    max_value=int(param.maximum) if param.maximum is not None else None,
                    value=param.default,
                    step=1,
                    key=widget_key,
                    help=param.help,
                )
            else:
                options[param.name] = column.number_input(
                    param.label,
                    min_value=param.minimum,
                    max_value=param.maximum,
                    value=float(param.default),
                    step=0.01,
                    key=widget_key,
                    help=param.help,
                )
    return options


def pick_samples(ctx: Context, cap: int) -> list[int]:
    bench, classification, labelled = ctx.bench, ctx.classification, ctx.labelled
    n_samples = ctx.n_samples
    modes = ["By index"]
    if classification:
        modes.append("By class")
    broken_label = (
        "Broken by the plan"
        if classification and labelled
        else "Changed by the plan"
        if not labelled
        else "Worse after pruning"
    )
    modes.append(broken_label)
    left, right = st.columns([1, 1.6], vertical_alignment="bottom")
    mode = widgets.choice(left, "Samples", modes, "imp-mode")
    if mode == "By class":
        label = right.selectbox(
            "Class",
            range(len(ctx.class_names) or int(bench.dense_outputs.shape[1])),
            format_func=ctx.class_name,
            key=state.widget_key("imp-class"),
        )
        return class_samples(bench, ctx.token, int(label))[:cap]
    if mode == broken_label:
        broken = broken_samples(bench, ctx.token, ctx.plan_json)
        right.caption(
            f"**{len(broken):,}** of {n_samples:,} validation samples"
            + (
                " are misclassified by the pruned model (those the dense model got right first)."
                if classification and labelled
                else " have a different prediction after pruning."
                if not labelled
                else " have a larger error after pruning (largest increase first)."
            )
        )
        return broken[:cap]
    chosen = right.multiselect(
        f"Sample indices (0 to {n_samples - 1})",
        range(n_samples),
        default=list(range(min(DEFAULT_SAMPLES, n_samples))),
        max_selections=cap,
        key=state.widget_key("imp-indices"),
    )
    return list(chosen)[:cap]
