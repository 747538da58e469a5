"""Prune page: a slider per layer, and at once the exact accuracy, size and FLOPs it leads to."""

import streamlit as st

from ui import charts, loaders, state, widgets
from workbench import CRITERIA, GRANULARITIES, SCOPES
from workbench.inspect import magnitude_cut, weight_histogram

state.route_through_app("pages/prune.py")

name = state.demo()
bench = loaders.bench(name)
layers = bench.layers


def _percent(value: float) -> int:
    return round(value * 100)


def _on_layer(layer: str) -> None:
    value = st.session_state[state.widget_key("slider", layer)] / 100
    state.set_plan(state.plan().with_sparsity(layer, value), touched=layer)


def _on_lock(layer: str) -> None:
    locked = state.locks()
    if st.session_state[state.widget_key("lock", layer)]:
        locked.add(layer)
    else:
        locked.discard(layer)


def _on_global() -> None:
    value = st.session_state[state.widget_key("global")] / 100
    plan = state.plan()
    free = [n for n in bench.layer_names if n not in state.locks()]
    sparsity = dict(plan.sparsity)
    sparsity.update({n: value for n in free})
    state.set_plan(plan.replace(sparsity=sparsity), touched=free[-1] if free else None)


def _on_option(field: str) -> None:
    value = st.session_state[state.widget_key(field)]
    state.set_plan(state.plan().replace(**{field: value}))


def _reset() -> None:
    state.set_plan(state.plan().replace(sparsity={}))


def _sync_widgets() -> None:
    """Widgets show the plan: it may have changed on another page, by URL or by a reset.

    Only differing values are written: writing a widget's state overrides the browser's value,
    which would undo key presses made while a rerun was in flight.
    """
    plan = state.plan()
    wanted = {
        state.widget_key(field): getattr(plan, field)
        for field in ("method", "granularity", "scope")
    }
    for layer in bench.layer_names:
        wanted[state.widget_key("slider", layer)] = _percent(plan.sparsity.get(layer, 0.0))
        wanted[state.widget_key("lock", layer)] = layer in state.locks()
    free = {plan.sparsity.get(n, 0.0) for n in bench.layer_names if n not in state.locks()}
    if len(free) == 1:
        wanted[state.widget_key("global")] = _percent(free.pop())
    else:
        wanted.setdefault(
            state.widget_key("global"), st.session_state.get(state.widget_key("global"), 0)
        )
    for key, value in wanted.items():
        if st.session_state.get(key) != value:
            st.session_state[key] = value


@st.fragment
def workbench_panel() -> None:
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

    try:
        report = bench.evaluate(plan)
    except ValueError as error:  # e.g. a criterion that cannot score one of this model's layers
        st.error(f"This plan cannot be evaluated: {error}", icon=":material/error:")
        st.button("Back to dense, keep the settings", on_click=_reset)
        return
    widgets.metric_cards(report)
    widgets.size_cards(report)
    left, right = st.columns([1, 1.9], gap="large")

    with left:
        st.slider(
            "**All unlocked layers**",
            0,
            100,
            step=1,
            format="%d%%",
            key=state.widget_key("global"),
            on_change=_on_global,
            help="Sets every unlocked layer to the same sparsity.",
        )
        if global_scope:
            st.caption(
                "Global scope: unlocked layers are ranked together; the bar chart shows where "
                "the cut really fell in each."
            )
        if not granularity.ranks_globally:
            st.caption(
                f"{granularity.name}: any non-zero value applies the pattern "
                f"({1 - granularity.n / granularity.m:.0%} of each group)."
            )
        for row in layers.itertuples():
            lock_col, slider_col = st.columns([0.1, 0.9], vertical_alignment="center")
            lock_col.checkbox(
                f"Lock {row.name}",
                key=state.widget_key("lock", row.name),
                on_change=_on_lock,
                args=(row.name,),
                label_visibility="collapsed",
            )
            slider_col.slider(
                f"{row.name} · {row.kind} {row.shape}",
                0,
                100,
                step=1,
                format="%d%%",
                key=state.widget_key("slider", row.name),
                on_change=_on_layer,
                args=(row.name,),
                disabled=global_scope and row.name in state.locks(),
            )
        st.caption("Tick a box to lock a layer: the global slider leaves it alone.")

    with right:
        pruned_any = report.size["nonzero_params"] < report.dense_size["nonzero_params"]
        if pruned_any and not granularity.structured:
            st.info(
                "**Zeros are not speed.** This plan zeroes single weights: the layers keep their "
                "shapes, so a dense model runs exactly as fast as before, and it only gets "
                "smaller when stored sparse or compressed (the size cards). For real speed-ups, "
                "prune whole channels or use a 2:4 pattern on hardware that supports it.",
                icon=":material/info:",
            )
        # One chart per change: only the view on screen is built (each costs a few ms).
        view = st.segmented_control(
            "View",
            ["Layers", "Last layer touched", "Per class"],
            default="Layers",
            key=state.widget_key("view"),
            label_visibility="collapsed",
        )
        if view == "Last layer touched":
            touched = state.touched_layer() or bench.layer_names[0]
            weight = bench.dense_weight(touched)
            mask = bench.masks(plan).get(touched)
            cut = magnitude_cut(weight, mask)
            st.plotly_chart(
                charts.histogram(weight_histogram(weight, mask), cut, title=touched),
                width="stretch",
                config={"displayModeBar": False},
            )
        elif view == "Per class":
            per_class = report.per_class
            if per_class is None:
                st.caption("Regression model: no classes. The cards above show R², MSE and MAE.")
            else:
                a, b = st.columns(2)
                a.plotly_chart(
                    charts.per_class(per_class), width="stretch", config={"displayModeBar": False}
                )
                b.plotly_chart(
                    charts.confusion_change(
                        report.confusion - report.dense_confusion, list(per_class["class"])
                    ),
                    width="stretch",
                    config={"displayModeBar": False},
                )
        else:
            st.plotly_chart(
                charts.layer_bars(report.layers), width="stretch", config={"displayModeBar": False}
            )


st.title("Prune")
st.caption(
    "Drag a layer's slider: accuracy, size and FLOPs below are an exact evaluation of the "
    "pruned model on the whole validation set."
)
workbench_panel()
