"""Prune page: a slider per layer, and at once the exact accuracy, size and FLOPs it leads to."""

import streamlit as st

from ui import loaders, state, widgets
from ui.text import plain
from workbench import CRITERIA, GRANULARITIES, SCOPES, PruningPlan, Report, plots
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
    state.set_lock(layer, bool(st.session_state[state.widget_key("lock", layer)]))


def _pattern_share() -> float:
    """The sparsity an N:M pattern gives: the plan stores it for a layer the pattern is on."""
    granularity = GRANULARITIES[state.plan().granularity]
    return 1 - granularity.n / granularity.m


def _on_pattern(layer: str) -> None:
    on = st.session_state[state.widget_key("pattern", layer)]
    state.set_plan(
        state.plan().with_sparsity(layer, _pattern_share() if on else 0.0), touched=layer
    )


def _on_global_pattern() -> None:
    on = st.session_state[state.widget_key("global-pattern")]
    plan = state.plan()
    free = [n for n in bench.layer_names if n not in state.locks()]
    sparsity = dict(plan.sparsity)
    sparsity.update({n: _pattern_share() if on else 0.0 for n in free})
    state.set_plan(plan.replace(sparsity=sparsity), touched=free[-1] if free else None)


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
        wanted[state.widget_key("pattern", layer)] = plan.sparsity.get(layer, 0.0) > 0
        wanted[state.widget_key("lock", layer)] = layer in state.locks()
    free_layers = [n for n in bench.layer_names if n not in state.locks()]
    wanted[state.widget_key("global-pattern")] = bool(free_layers) and all(
        plan.sparsity.get(n, 0.0) > 0 for n in free_layers
    )
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

    # The sliders are drawn whatever happens to the evaluation: a control that vanishes on an
    # error comes back empty (Streamlit forgets the state of widgets it did not draw).
    try:
        report = bench.evaluate(plan)
    except ValueError as error:  # e.g. a criterion that cannot score one of this model's layers
        report = None
        st.error(plain(f"This plan cannot be evaluated: {error}"), icon=":material/error:")
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


def _layer_controls(plan: PruningPlan, report: Report | None, global_scope: bool) -> None:
    """The global control, then a lock and a control per layer."""
    granularity = GRANULARITIES[plan.granularity]
    pattern = not granularity.ranks_globally  # N:M: a layer has the pattern or not
    if pattern:
        st.toggle(
            f"**All unlocked layers** · {granularity.name} pattern",
            key=state.widget_key("global-pattern"),
            on_change=_on_global_pattern,
            help=f"Puts the {granularity.name} pattern on every unlocked layer: "
            f"{1 - granularity.n / granularity.m:.0%} of each group of {granularity.m} weights "
            "removed.",
        )
    else:
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
            "Global scope: the unlocked layers are ranked together, so each layer's real cut "
            "(under its slider) differs from the target the sliders set."
        )
    if pattern:
        st.caption(
            f"{granularity.name}: a layer has the pattern ({1 - granularity.n / granularity.m:.0%}"
            f" of each group of {granularity.m} weights removed) or is dense."
        )
    real = (
        {}
        if report is None
        else dict(zip(report.layers["name"], report.layers["sparsity"], strict=True))
    )
    blocked = []
    for row in layers.itertuples():
        channel_ok = bool(getattr(row, "channel_prunable", True))
        off_limits = granularity.structured and not channel_ok
        if off_limits:
            blocked.append(row.name)
        lock_col, control_col = st.columns([0.1, 0.9], vertical_alignment="center")
        lock_col.checkbox(
            f"Lock {row.name}",
            key=state.widget_key("lock", row.name),
            on_change=_on_lock,
            args=(row.name,),
            label_visibility="collapsed",
        )
        label = f"{row.name} · {row.kind} {row.shape}"
        if pattern:
            control_col.toggle(
                label,
                key=state.widget_key("pattern", row.name),
                on_change=_on_pattern,
                args=(row.name,),
            )
        else:
            control_col.slider(
                label,
                0,
                100,
                step=1,
                format="%d%%",
                key=state.widget_key("slider", row.name),
                on_change=_on_layer,
                args=(row.name,),
                disabled=off_limits or (global_scope and row.name in state.locks()),
            )
        if global_scope and row.name in real and not off_limits:
            control_col.caption(f"Real cut: {real[row.name]:.1%}")
    if blocked:
        st.caption(
            plain(
                f"{', '.join(blocked)}: the output layer's channels are the model's outputs "
                f"(classes or targets), so {granularity.label.lower()} pruning leaves it dense; "
                "prune it unstructured instead."
            )
        )
    st.caption("Tick a box to lock a layer: the global control leaves it alone.")


def _results(plan: PruningPlan, report: Report) -> None:
    granularity = GRANULARITIES[plan.granularity]
    pruned_any = report.size["nonzero_params"] < report.dense_size["nonzero_params"]
    if pruned_any and not granularity.ranks_globally:
        st.info(
            f"**A {granularity.name} pattern is not faster on its own.** Dense kernels run a "
            f"{granularity.name} model exactly as fast as before; hardware and kernels made for "
            f"{granularity.name} sparsity (sparse tensor cores) can skip the zeros. The size "
            "cards show what storing it sparse or compressed saves.",
            icon=":material/info:",
        )
    elif pruned_any and not granularity.structured:
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
            plots.histogram(weight_histogram(weight, mask), cut, title=touched),
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
                plots.per_class(per_class), width="stretch", config={"displayModeBar": False}
            )
            b.plotly_chart(
                plots.confusion_change(
                    report.confusion - report.dense_confusion, list(per_class["class"])
                ),
                width="stretch",
                config={"displayModeBar": False},
            )
    else:
        st.plotly_chart(
            plots.layer_bars(report.layers), width="stretch", config={"displayModeBar": False}
        )


st.title("Prune")
st.caption(
    "Drag a layer's slider: accuracy, size and FLOPs below are an exact evaluation of the "
    "pruned model on the whole validation set."
)
workbench_panel()
