"""Input attributions: the dense and the pruned model's maps over the picked samples."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

import workbench.explain as ex
from ui import loaders, state, widgets
from ui.guard import guard
from ui.importance import NO_BAR, Context
from ui.importance.samples import DEFAULT_SAMPLES, method_settings, pick_samples
from ui.progress import show
from workbench import plots

#: The most samples the maps draw at once (the default shows four).
MAX_SAMPLES = 64
#: Which class the maps explain.
EXPLAIN = (
    "Predicted class: each model's own prediction, so a pruned model that changed its mind is "
    "explained for its new answer. True label: both for the label."
)


def titles(
    table: pd.DataFrame, kind: str, classification: bool, embedding: bool = False
) -> list[tuple[str, ...]]:
    """Subplot titles: the sample and its label, then each model's prediction and delta."""

    def said(row: Any, model: str) -> str:
        prediction = row[f"{model}_prediction"]
        text = (
            f"{model}: {prediction}"
            if classification
            else f"{model}: similarity {prediction:.3f}"
            if embedding
            else f"{model}: {prediction:,.1f}"
        )
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
            if label is None or embedding or (not classification and pd.isna(label))
            else f" · true {label}"
            if classification
            else f" · true {label:,.1f}"
        )
        if kind == "image":
            out.append((head, said(row, "dense"), said(row, "pruned")))
        else:
            out.append((f"{head} — {said(row, 'dense')}", said(row, "pruned")))
    return out


def summary_table(table: pd.DataFrame, classification: bool, embedding: bool = False) -> None:
    value = st.column_config.NumberColumn  # regression: values in the target's units
    if embedding:  # the explained output is the similarity to the dense embedding
        table = table.drop(columns=[c for c in table if c == "label"])
        names = {"dense_prediction": "dense_similarity", "pruned_prediction": "pruned_similarity"}
        table = table.rename(columns=names)
    config: dict[str, Any] = {
        "dense_similarity": value(
            "Dense similarity", format="%.3f", help="Cosine to the dense embedding (itself: 1)."
        ),
        "pruned_similarity": value(
            "Pruned similarity", format="%.3f", help="Cosine to the dense model's embedding."
        ),
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


def _controls(ctx: Context) -> tuple[str, str, int]:
    """The method, what to explain (predicted class or true label) and how many samples."""
    shape = tuple(ctx.info.input_shape) or tuple(ctx.bench.val_inputs.shape[1:])
    methods = ex.applicable_methods(ctx.info.input_kind, shape, ctx.bench.task, integer=ctx.text)
    if ctx.text and "input_x_gradient" in methods:
        # First on text: one backward pass through a transformer, where IG costs n_steps.
        methods.insert(0, methods.pop(methods.index("input_x_gradient")))
    top = st.columns([1.2, 0.9, 0.7], vertical_alignment="bottom")
    method = widgets.pick(top[0], "Method", ex.ATTRIBUTION_METHODS, "imp-method", methods)
    target = "predicted"
    if ctx.classification and ctx.labelled:
        explain = widgets.choice(
            top[1], "Explain", ["Predicted class", "True label"], "imp-target", help=EXPLAIN
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
    return method, target, cap


def _token_rows(
    ctx: Context, dense: ex.MapView, pruned: ex.MapView
) -> tuple[list[list[str]], list[Any], list[Any]]:
    """Each sample's real tokens as text (token ids without a tokenizer) and their scores."""
    tokenizer = loaders.tokenizer(ctx.key)
    words, first, second = [], [], []
    rows = zip(dense.inputs, dense.tokens, dense.values, pruned.values, strict=True)
    for ids, kept, a, b in rows:
        real = ids[kept]
        words.append(tokenizer.tokens(real) if tokenizer is not None else [f"#{i}" for i in real])
        first.append(a[kept])
        second.append(b[kept])
    return words, first, second


@st.fragment
def render(ctx: Context) -> None:
    bench, info, plan = ctx.bench, ctx.info, ctx.plan
    method, target, cap = _controls(ctx)
    spec = ex.ATTRIBUTION_METHODS[method]
    st.markdown(f"**{spec.label}.** {spec.description} [Captum documentation ↗]({spec.url})")
    if ctx.text:
        st.caption(ex.TEXT_NOTE)
    if bench.task == "embedding":
        st.caption(ex.EMBEDDING_NOTE)
    options = method_settings(spec, ctx.input_kind)
    indices = pick_samples(ctx, cap)
    if not indices:
        st.info("Pick at least one sample to explain.", icon=":material/touch_app:")
        return
    with (
        guard("Cannot compute these maps") as outcome,
        st.spinner(f"{spec.label} on {len(indices)} sample(s)…"),
    ):
        dense, pruned = (
            show(
                ex.iter_attribute(
                    bench, indices, method, p, target, input_kind=info.input_kind, **options
                ),
                text,
            )
            for p, text in ((None, "Dense model"), (plan, "Pruned model"))
        )
    if outcome.failed:
        return
    _draw(ctx, spec, dense, pruned, len(indices))


def _draw(ctx: Context, spec: ex.AttributionMethod, dense: Any, pruned: Any, count: int) -> None:
    table = ex.compare(dense, pruned, ctx.class_names)
    dense_view, pruned_view = ex.map_view(dense), ex.map_view(pruned)
    embedding = ctx.bench.task == "embedding"
    heads = titles(table, dense_view.kind, ctx.classification, embedding)  # a row per sample
    maps = (dense_view.inputs, dense_view.values, pruned_view.values)  # both over the inputs
    if dense_view.kind == "text":
        figure = plots.token_maps(*_token_rows(ctx, dense_view, pruned_view), heads)
        how = (
            "Each sample's tokens in reading order, coloured by their attribution: the dense "
            "model's above, the pruned model's below."
        )
    elif dense_view.kind == "image":
        figure = plots.image_maps(*maps, heads, cell=230 if count > 1 else 300)
        how = (
            "Left: the input. Middle and right: the dense and the pruned model's maps over it "
            "(outline: the input's shape)."
        )
    elif dense_view.kind == "signal":
        figure = plots.signal_maps(*maps, heads)
        how = (
            "The signal, each point coloured (and sized) by its attribution: dense left, "
            "pruned right."
        )
    else:
        figure = plots.feature_bars(
            dense_view.values, pruned_view.values, ctx.info.feature_names, heads
        )
        how = "Each feature's attribution, dense left and pruned right: the 12 largest of the row."
    st.caption(
        f"{how} Red pushes the explained output up, blue pushes it down; both maps of a row "
        "share one colour scale, so they compare directly."
    )
    st.plotly_chart(figure, width="stretch", config=NO_BAR)
    summary_table(table, ctx.classification, embedding)
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
