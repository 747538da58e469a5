"""Importance page: what drives each prediction before and after pruning (Captum), which
channels carry each layer, and how an attribution criterion's cut compares with magnitude's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import streamlit as st

import workbench.explain as ex
from ui import charts, loaders, state, widgets
from ui import importance_charts as ic
from ui.text import plain
from workbench import CRITERIA, GRANULARITIES, HIGHER_IS_BETTER, PRIMARY_METRIC, PruningPlan
from workbench.inspect import weight_map

state.route_through_app("pages/importance.py")

#: The most samples the maps draw at once (the default shows four).
MAX_SAMPLES = 64
DEFAULT_SAMPLES = 4
#: Layer importance starts on a subset this large; the user can raise it to the whole set.
DEFAULT_LAYER_SAMPLES = 256
_NO_BAR = {"displayModeBar": False}

key = state.demo()
bench = loaders.bench(key)
info = loaders.info(key)
plan = state.plan()
# Caches key on strings: an uploaded model of another session may share the name, not the id.
token = f"{key}@{id(bench)}:{id(bench.model)}"
plan_json = plan.to_json(indent=None)
classification = bench.task == "classification"
labelled = bench.targets is not None
class_names = list(info.class_names) or list(bench.class_names)
n_samples = int(bench.dense_outputs.shape[0])


def class_name(value: Any) -> str:
    i = int(value)
    return class_names[i] if 0 <= i < len(class_names) else str(i)


def run(events: Iterator[ex.Progress], text: str) -> Any:
    """Drain a progress generator, drawing a bar once it has more than one step."""
    bar = None
    for event in events:
        if event.finished:
            if bar is not None:
                bar.empty()
            return event.result
        if bar is None:
            bar = st.progress(0.0, text=text)
        bar.progress(event.fraction, text=f"{text} · {event.message}")
    raise RuntimeError("the computation ended without a result")


@st.cache_data(show_spinner=False, max_entries=64)
def broken_samples(_bench: Any, token: str, plan_json: str) -> list[int]:
    return ex.broken_by_plan(_bench, PruningPlan.from_json(plan_json))


@st.cache_data(show_spinner=False, max_entries=64)
def class_samples(_bench: Any, token: str, label: int) -> list[int]:
    return ex.samples_of_class(_bench, label)


@st.cache_data(show_spinner="Pruning the layer at every sparsity…", max_entries=32)
def overlap_curve(
    _bench: Any, token: str, layer: str, method: str, granularity: str
) -> pd.DataFrame:
    return ex.run_to_end(ex.iter_overlap_curve(_bench, layer, method, "l1", granularity))


def method_settings(spec: ex.AttributionMethod) -> dict[str, Any]:
    """The method's parameters, as widgets built from their declared specs."""
    options: dict[str, Any] = {}
    if not spec.params:
        return options
    with st.expander(f"Settings of {spec.label}"):
        columns = st.columns(len(spec.params))
        for column, param in zip(columns, spec.params, strict=True):
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


def pick_samples(cap: int) -> list[int]:
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
    mode = left.segmented_control(
        "Samples", modes, default="By index", required=True, key=state.widget_key("imp-mode")
    )
    if mode == "By class":
        label = right.selectbox(
            "Class",
            range(len(class_names) or int(bench.dense_outputs.shape[1])),
            format_func=class_name,
            key=state.widget_key("imp-class"),
        )
        return class_samples(bench, token, int(label))[:cap]
    if mode == broken_label:
        broken = broken_samples(bench, token, plan_json)
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


def titles(table: pd.DataFrame, kind: str) -> list[tuple[str, ...]]:
    """Subplot titles: the sample and its label, then each model's prediction and delta."""

    def said(row: Any, model: str) -> str:
        prediction = row[f"{model}_prediction"]
        text = f"{model}: {prediction}" if classification else f"{model}: {prediction:,.1f}"
        if classification:
            text += f" ({row[f'{model}_confidence']:.0%})"
        delta = row.get(f"{model}_delta")
        if delta is not None and pd.notna(delta):
            text += f" · δ {delta:+.2g}"
        return text

    out = []
    for row in table.to_dict("records"):
        label = row.get("label")
        head = f"#{row['index']}" + (
            ""
            if label is None or (not classification and pd.isna(label))
            else f" · true {label}"
            if classification
            else f" · true {label:,.1f}"
        )
        if kind == "image":
            out.append((head, said(row, "dense"), said(row, "pruned")))
        else:
            out.append((f"{head} — {said(row, 'dense')}", said(row, "pruned")))
    return out


def summary_table(table: pd.DataFrame) -> None:
    value = st.column_config.NumberColumn  # regression: values in the target's units
    config: dict[str, Any] = {
        "index": st.column_config.NumberColumn("Sample"),
        "label": "True" if classification else value("True", format="%.1f"),
        "dense_prediction": "Dense predicts"
        if classification
        else value("Dense predicts", format="%.1f"),
        "pruned_prediction": "Pruned predicts"
        if classification
        else value("Pruned predicts", format="%.1f"),
        "dense_confidence": st.column_config.NumberColumn("Dense conf.", format="percent"),
        "pruned_confidence": st.column_config.NumberColumn("Pruned conf.", format="percent"),
        "dense_delta": st.column_config.NumberColumn(
            "Dense δ", format="%.2e", help="Attributions' sum minus f(input) − f(baseline)."
        ),
        "pruned_delta": st.column_config.NumberColumn("Pruned δ", format="%.2e"),
        "similarity": st.column_config.ProgressColumn(
            "Map similarity",
            min_value=-1,
            max_value=1,
            format="%.2f",
            help="Cosine similarity of the dense and pruned maps: 1, the pruned model looks "
            "at the input as the dense one did; 0, at something unrelated.",
        ),
    }
    # The explained class is the prediction or the label, both already shown.
    shown = table.drop(
        columns=[
            c
            for c in table
            if c.endswith("_explained") or (c.endswith("_confidence") and not classification)
        ]
    )
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config)


@st.fragment
def input_maps() -> None:
    shape = tuple(info.input_shape) or tuple(bench.val_inputs.shape[1:])
    methods = ex.applicable_methods(info.input_kind, shape)
    top = st.columns([1.2, 0.9, 0.7], vertical_alignment="bottom")
    method = top[0].selectbox(
        "Method",
        methods,
        format_func=lambda m: ex.ATTRIBUTION_METHODS[m].label,
        key=state.widget_key("imp-method"),
    )
    target = "predicted"
    if classification and labelled:
        explain = top[1].segmented_control(
            "Explain",
            ["Predicted class", "True label"],
            default="Predicted class",
            required=True,
            key=state.widget_key("imp-target"),
            help="Predicted class: each model's own prediction, so a pruned model that "
            "changed its mind is explained for its new answer. True label: both for the label.",
        )
        target = "true" if explain == "True label" else "predicted"
    cap = int(
        top[2].number_input(
            "Show at most",
            min_value=1,
            max_value=MAX_SAMPLES,
            value=DEFAULT_SAMPLES,
            step=1,
            key=state.widget_key("imp-cap"),
            help=f"Samples drawn at once (up to {MAX_SAMPLES}); more take longer.",
        )
    )
    spec = ex.ATTRIBUTION_METHODS[method]
    st.markdown(f"**{spec.label}.** {spec.description} [Captum documentation ↗]({spec.url})")
    options = method_settings(spec)
    indices = pick_samples(cap)
    if not indices:
        st.info("Pick at least one sample to explain.", icon=":material/touch_app:")
        return
    try:
        with st.spinner(f"{spec.label} on {len(indices)} sample(s)…"):
            dense = run(
                ex.iter_attribute(
                    bench, indices, method, None, target, input_kind=info.input_kind, **options
                ),
                "Dense model",
            )
            pruned = run(
                ex.iter_attribute(
                    bench, indices, method, plan, target, input_kind=info.input_kind, **options
                ),
                "Pruned model",
            )
    except (ex.ExplainError, ValueError, RuntimeError) as error:
        st.error(plain(f"Cannot compute these maps: {error}"), icon=":material/error:")
        return

    table = ex.compare(dense, pruned, class_names)
    dense_view, pruned_view = ex.map_view(dense), ex.map_view(pruned)
    if dense_view.kind == "image":
        figure = ic.image_maps(
            dense_view.inputs,
            dense_view.values,
            pruned_view.values,
            titles(table, "image"),
            cell=230 if len(indices) > 1 else 300,
        )
        how = (
            "Left: the input. Middle and right: the dense and the pruned model's maps over it "
            "(outline: the input's shape)."
        )
    elif dense_view.kind == "signal":
        figure = ic.signal_maps(
            dense_view.inputs, dense_view.values, pruned_view.values, titles(table, "signal")
        )
        how = (
            "The signal, each point coloured (and sized) by its attribution: dense left, "
            "pruned right."
        )
    else:
        figure = ic.feature_bars(
            dense_view.values,
            pruned_view.values,
            info.feature_names,
            titles(table, "tabular"),
        )
        how = "Each feature's attribution, dense left and pruned right: the 12 largest of the row."
    st.caption(
        f"{how} Red pushes the explained output up, blue pushes it down; both maps of a row "
        "share one colour scale, so they compare directly."
    )
    st.plotly_chart(figure, width="stretch", config=_NO_BAR)
    summary_table(table)
    if spec.has_delta:
        st.caption(
            "δ (convergence delta): the attributions' sum minus f(input) − f(baseline). "
            "Near zero relative to the output, the attributions account for the whole change; "
            + (
                "raise the steps if it is not."
                if spec.name == "integrated_gradients"
                else "it shrinks as the number of random draws grows."
            )
        )


@st.fragment
def layer_section() -> None:
    top = st.columns([1.1, 0.8, 0.8, 0.7], vertical_alignment="bottom")
    method = top[0].selectbox(
        "Method",
        list(ex.LAYER_METHODS),
        format_func=lambda m: ex.LAYER_METHODS[m].label,
        key=state.widget_key("imp-layer-method"),
    )
    measured = top[1].segmented_control(
        "Model",
        ["Dense", "Pruned"],
        default="Dense",
        required=True,
        key=state.widget_key("imp-layer-model"),
        help="Dense: which channels mattered before pruning (what the attribution criteria "
        "rank by). Pruned: how the importance redistributed after the plan.",
    )
    samples = int(
        top[2].number_input(
            "Samples",
            min_value=1,
            max_value=n_samples,
            value=min(DEFAULT_LAYER_SAMPLES, n_samples),
            step=32,
            key=state.widget_key("imp-layer-samples"),
            help=f"A seeded random subset of the {n_samples:,} validation samples; raise it to "
            "all of them for the exact mean.",
        )
    )
    spec = ex.LAYER_METHODS[method]
    steps = ex.CRITERION_STEPS
    if spec.integrates:
        steps = int(
            top[3].number_input(
                "Steps",
                min_value=2,
                max_value=300,
                value=ex.CRITERION_STEPS,
                key=state.widget_key("imp-layer-steps"),
                help="Path points of the integral (Captum's default is 50; the conductance "
                f"criterion uses {ex.CRITERION_STEPS}).",
            )
        )
    st.markdown(
        f"**{spec.label}.** {spec.description} A channel's importance is the mean over samples "
        f"of its absolute attribution, summed over its positions. "
        f"[Captum documentation ↗]({spec.url})"
    )
    model_plan = plan if measured == "Pruned" else None
    try:
        with st.spinner(f"{spec.label} of every layer on {samples:,} samples…"):
            table = run(
                ex.iter_layer_importance(bench, method, model_plan, samples, n_steps=steps),
                f"{spec.label} of every layer",
            )
    except (ex.ExplainError, ValueError, RuntimeError) as error:
        st.error(plain(f"Cannot measure layer importance: {error}"), icon=":material/error:")
        return
    marked = ex.mark_plan(table, bench, plan)
    cost = ex.plan_cost(marked)
    layers = list(cost["layer"])
    pruned_layers = [n for n in layers if plan.sparsity.get(n, 0) > 0]
    start = state.touched_layer() if state.touched_layer() in layers else None
    start = start or (pruned_layers[0] if pruned_layers else layers[0])
    layer = st.selectbox(
        "Layer", layers, index=layers.index(start), key=state.widget_key("imp-layer")
    )
    row = cost.set_index("layer").loc[layer]
    partly = int(row["partly_pruned"])
    st.markdown(
        f"**{layer}**: the plan removes **{int(row['removed'])}** of {int(row['channels'])} "
        f"channels whole, which held **{row['removed_importance']:.1%}** of the layer's "
        "importance"
        + (f"; {partly} more are partly pruned" if partly else "")
        + f" ({row['weights_kept']:.0%} of the layer's weights kept)."
    )
    st.plotly_chart(
        ic.channel_bars(marked[marked["layer"] == layer], title=f"{layer} · {spec.label}"),
        width="stretch",
        config=_NO_BAR,
    )
    st.caption(
        "Indigo channels are kept whole, red ones removed, the shades between partly pruned. "
        "A cut that follows importance removes channels from the right end."
    )
    with st.expander("Every layer", expanded=False):
        st.dataframe(
            cost[["layer", "channels", "removed", "removed_importance", "weights_kept"]],
            hide_index=True,
            width="stretch",
            column_config={
                "layer": "Layer",
                "channels": "Channels",
                "removed": st.column_config.NumberColumn(
                    "Removed", help="Channels the plan removes whole."
                ),
                "removed_importance": st.column_config.NumberColumn(
                    "Their importance", format="percent", help="Share of the layer's total."
                ),
                "weights_kept": st.column_config.NumberColumn("Weights kept", format="percent"),
            },
        )
        st.plotly_chart(ic.channel_grid(marked), width="stretch", config=_NO_BAR)

    st.subheader("Weight-level importance")
    st.caption(
        "|w·∂L/∂w|, L the mean loss over the same samples: how much the loss would change if "
        "each weight were removed (first-order Taylor), beside the weights themselves. "
        "Grey: weights the plan removes."
    )
    try:
        with st.spinner("Gradients of every weight…"):
            importance = run(
                ex.iter_weight_importance(bench, model_plan, samples), "Weight gradients"
            )[layer]
    except (ex.ExplainError, ValueError, RuntimeError) as error:
        st.error(plain(f"Cannot measure weight importance: {error}"), icon=":material/error:")
        return
    keep = bench.masks(plan).get(layer) if layer in plan.sparsity else None
    weights = weight_map(bench.dense_weight(layer), keep)
    scores = weight_map(importance, keep)
    a, b = st.columns(2, gap="large")
    a.markdown("**Weights**")
    a.plotly_chart(
        charts.weight_heatmap(
            weights.values,
            weights.kept,
            weights.row_label,
            weights.col_label,
            height=380,
            rows=weights.rows,
            cols=weights.cols,
        ),
        width="stretch",
        config=_NO_BAR,
    )
    b.markdown("**Importance |w·∂L/∂w|**")
    b.plotly_chart(
        ic.importance_heatmap(
            scores.values,
            scores.kept,
            scores.row_label,
            scores.col_label,
            height=380,
            rows=scores.rows,
            cols=scores.cols,
        ),
        width="stretch",
        config=_NO_BAR,
    )
    if weights.pooled != (1, 1):
        st.caption(f"Each cell averages {weights.pooled[0]}×{weights.pooled[1]} weights.")


@st.fragment
def overlap_section() -> None:
    attribution = [name for name in CRITERIA if name != "l1"]
    preferred = [n for n in ("conductance", "gradient_x_activation") if n in attribution]
    top = st.columns([1, 1.1, 0.9, 1.2], vertical_alignment="bottom")
    pruned_layers = [n for n in bench.layer_names if plan.sparsity.get(n, 0) > 0]
    start = state.touched_layer() or (pruned_layers[0] if pruned_layers else bench.layer_names[0])
    layer = top[0].selectbox(
        "Layer",
        bench.layer_names,
        index=bench.layer_names.index(start) if start in bench.layer_names else 0,
        key=state.widget_key("imp-ov-layer"),
    )
    method = top[1].selectbox(
        "Criterion",
        attribution,
        index=attribution.index(preferred[0]) if preferred else 0,
        format_func=lambda m: CRITERIA[m].label,
        key=state.widget_key("imp-ov-method"),
    )
    granularity = top[2].segmented_control(
        "Granularity",
        ["channel", "unstructured"],
        default="channel",
        required=True,
        format_func=lambda g: "Channels" if g == "channel" else "Weights",
        key=state.widget_key("imp-ov-granularity"),
    )
    sparsity = (
        top[3].slider(
            "Sparsity of this layer",
            0,
            100,
            value=50,
            step=5,
            format="%d%%",
            key=state.widget_key("imp-ov-sparsity"),
        )
        / 100
    )
    st.caption(
        f"{CRITERIA[method].description} Magnitude (L1) removes the smallest weights. Each cut "
        "prunes this layer alone, every other layer dense, so the numbers isolate the choice."
    )
    needs_data = CRITERIA[method].needs_data
    try:
        with st.spinner(
            "Scoring the channels with Captum (once per model)…"
            if needs_data
            else "Pruning the layer…"
        ):
            overlap = ex.criterion_overlap(bench, layer, sparsity, method, "l1", granularity)
    except (ex.ExplainError, ValueError, RuntimeError) as error:
        st.error(plain(f"Cannot compare the criteria: {error}"), icon=":material/error:")
        return
    metric = overlap.metric
    label = widgets.METRIC_LABELS.get(metric, metric)
    cards = st.columns(4)
    cards[0].metric(
        "Overlap (Jaccard)",
        f"{overlap.jaccard:.2f}",
        help="Removed by both ÷ removed by either: 1 when the two criteria cut the same units.",
        border=True,
    )
    unit = "channels" if granularity == "channel" else "weights"
    cards[1].metric(
        "Removed by both",
        f"{overlap.shared:,} of {len(overlap.removed):,}",
        help=f"{unit.capitalize()} both criteria remove.",
        border=True,
    )
    for card, name, value in (
        (cards[2], CRITERIA[method].label, overlap.value),
        (cards[3], "L1 magnitude", overlap.baseline_value),
    ):
        card.metric(
            f"{label} · {name}",
            widgets.fmt_metric(metric, value),
            delta=widgets.fmt_delta(metric, value - overlap.dense_value),
            delta_color="normal" if HIGHER_IS_BETTER.get(metric, True) else "inverse",
            border=True,
        )
    if granularity == "channel":
        channels = next(p.channels for p in bench.prunable_layers if p.name == layer)
        st.plotly_chart(
            ic.removal_strip(
                channels,
                overlap.removed,
                overlap.baseline_removed,
                (CRITERIA[method].label, "L1 magnitude"),
            ),
            width="stretch",
            config=_NO_BAR,
        )
    try:
        curve = overlap_curve(bench, token, layer, method, granularity)
    except (ex.ExplainError, ValueError, RuntimeError) as error:
        st.error(plain(f"Cannot draw the curve: {error}"), icon=":material/error:")
        return
    st.plotly_chart(
        ic.overlap_curve(curve, CRITERIA[method].label, "L1 magnitude"),
        width="stretch",
        config=_NO_BAR,
    )
    st.caption(
        f"Lines: {label.lower()} after pruning this layer by each criterion; bars: how much "
        f"their removed sets overlap. {GRANULARITIES[granularity].description}"
    )


st.title("Importance")
report = bench.evaluate(plan)
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
        input_maps()
with tabs[1]:
    if tabs[1].open:
        layer_section()
with tabs[2]:
    if tabs[2].open:
        overlap_section()
