"""Layer importance: which channels carry each layer, what the plan removes, and the weights'
first-order Taylor importance beside the weights themselves."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

import workbench.explain as ex
from ui import state, widgets
from ui.guard import guard
from ui.importance import NO_BAR, Context, neuron
from ui.progress import show
from workbench import plots
from workbench.inspect import weight_map

#: Layer importance starts on a subset this large; the user can raise it to the whole set.
DEFAULT_LAYER_SAMPLES = 256
#: Which model the importance is measured on.
MODEL = (
    "Dense: which channels mattered before pruning (what the attribution criteria rank by). "
    "Pruned: how the importance redistributed after the plan."
)


def _controls(ctx: Context) -> tuple[str, str, int, int]:
    """The method, which model is measured, on how many samples, and the integral's steps."""
    n_samples = ctx.n_samples
    top = st.columns([1.1, 0.8, 0.8, 0.7], vertical_alignment="bottom")
    method = widgets.pick(top[0], "Method", ex.LAYER_METHODS, "imp-layer-method")
    measured = widgets.choice(top[1], "Model", ["Dense", "Pruned"], "imp-layer-model", help=MODEL)
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
    steps = ex.CRITERION_STEPS
    if ex.LAYER_METHODS[method].integrates:
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
    return method, measured, samples, steps


@st.fragment
def render(ctx: Context) -> None:
    bench, plan = ctx.bench, ctx.plan
    method, measured, samples, steps = _controls(ctx)
    spec = ex.LAYER_METHODS[method]
    st.markdown(
        f"**{spec.label}.** {spec.description} A channel's importance is the mean over samples "
        f"of its absolute attribution, summed over its positions. "
        f"[Captum documentation ↗]({spec.url})"
    )
    model_plan = plan if measured == "Pruned" else None
    with (
        guard("Cannot measure layer importance") as outcome,
        st.spinner(f"{spec.label} of every layer on {samples:,} samples…"),
    ):
        table = show(
            ex.iter_layer_importance(bench, method, model_plan, samples, n_steps=steps),
            f"{spec.label} of every layer",
        )
    if outcome.failed:
        return
    marked = ex.mark_plan(table, bench, plan)
    cost = ex.plan_cost(marked)
    layers = list(cost["layer"])
    layer = st.selectbox(
        "Layer",
        layers,
        index=layers.index(state.start_layer(layers, plan)),
        key=state.widget_key("imp-layer"),
    )
    _channels(cost, marked, layer, spec.label)
    if ctx.text:
        neuron.render(ctx, layer, marked, steps)
    _weights(ctx, layer, model_plan, samples)


def _channels(cost: pd.DataFrame, marked: pd.DataFrame, layer: str, label: str) -> None:
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
        plots.channel_bars(marked[marked["layer"] == layer], title=f"{layer} · {label}"),
        width="stretch",
        config=NO_BAR,
    )
    st.caption(
        "Indigo channels are kept whole, red ones removed, the shades between partly pruned. "
        "A cut that follows importance removes channels from the right end."
    )
    with st.expander("Every layer", expanded=False):
        number = st.column_config.NumberColumn
        widgets.table(
            st,
            cost,
            {
                "layer": "Layer",
                "channels": "Channels",
                "removed": number("Removed", help="Channels the plan removes whole."),
                "removed_importance": number(
                    "Their importance", format="percent", help="Share of the layer's total."
                ),
                "weights_kept": number("Weights kept", format="percent"),
            },
        )
        st.plotly_chart(plots.channel_grid(marked), width="stretch", config=NO_BAR)


def _weights(ctx: Context, layer: str, model_plan: Any, samples: int) -> None:
    bench, plan = ctx.bench, ctx.plan
    st.subheader("Weight-level importance")
    st.caption(
        "|w·∂L/∂w|, L the mean loss over the same samples: how much the loss would change if "
        "each weight were removed (first-order Taylor), beside the weights themselves. "
        "Grey: weights the plan removes."
    )
    with (
        guard("Cannot measure weight importance") as outcome,
        st.spinner("Gradients of every weight…"),
    ):
        importance = show(
            ex.iter_weight_importance(bench, model_plan, samples), "Weight gradients"
        )[layer]
    if outcome.failed:
        return
    keep = bench.masks(plan).get(layer) if layer in plan.sparsity else None
    weights = weight_map(bench.dense_weight(layer), keep)
    scores = weight_map(importance, keep)
    a, b = st.columns(2, gap="large")
    for column, title, cells, builder in (
        (a, "**Weights**", weights, plots.weight_heatmap),
        (b, "**Importance |w·∂L/∂w|**", scores, plots.importance_heatmap),
    ):
        column.markdown(title)
        figure = builder(
            cells.values,
            cells.kept,
            cells.row_label,
            cells.col_label,
            height=380,
            rows=cells.rows,
            cols=cells.cols,
        )
        column.plotly_chart(figure, width="stretch", config=NO_BAR)
    if weights.pooled != (1, 1):
        st.caption(f"Each cell averages {weights.pooled[0]}×{weights.pooled[1]} weights.")
