"""The Prune page's results: the speed note and the views of the evaluated plan."""

from __future__ import annotations

import streamlit as st

from ui import loaders, state
from ui.text import plain
from workbench import GRANULARITIES, Estimate, PruningPlan, Report, plots
from workbench.inspect import magnitude_cut, weight_histogram


def _results(plan: PruningPlan, report: Report | Estimate) -> None:
    if isinstance(report, Estimate):
        st.caption("The views of the plan come with its exact numbers.")
        return
    bench = loaders.current()
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
    for note in report.notes:  # what the plan leaves undone: output layers, coupled layers
        st.caption(plain(note))
    if pruned_any and bench.incremental_note:  # why a slider step costs a whole run here
        st.caption(plain(bench.incremental_note))
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
