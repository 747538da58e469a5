"""The budget form: a target, a max drop and per-layer constraints, as a `Budget`."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import state, widgets
from ui.guard import guard
from ui.sensitivity import Context, key
from workbench import plots
from workbench.analysis import Budget, scan_layers

KIND_LABELS = {
    "sparsity": "Global sparsity",
    "params": "Non-zero parameters",
    "bytes": "Sparse size (bytes)",
    "flops": "FLOPs / sample",
    "drop": "Most sparsity within the max drop",
}


def form(ctx: Context, frame: pd.DataFrame, metric: str) -> Budget | None:
    """The form for a budget over the scan's layers (under `group`: its groups' leaders)."""
    bench = ctx.bench
    layers = scan_layers(frame)
    params = dict(zip(bench.layers["name"], bench.layers["params"], strict=True))
    st.subheader("Budget")
    st.caption(
        "Give a target; the solver proposes per-layer sparsities three ways, measures each "
        "plan exactly, and compares that with what the scan predicted."
    )
    dense = bench.dense_size
    kind = st.segmented_control(
        "Target",
        list(KIND_LABELS),
        default="sparsity",
        format_func=KIND_LABELS.get,
        key=key("kind"),
    )
    kind = kind or "sparsity"
    percent = plots.is_percent(metric)
    plan = state.plan()
    with st.form(key("budget")):
        top = st.columns([1.2, 1.2, 2.6], vertical_alignment="bottom")
        if kind == "sparsity":
            value = top[0].number_input(
                "Global sparsity (%)",
                0,
                100,
                80,
                1,
                key=key("t-sparsity"),
                help="Share of all prunable weights set to zero, at least.",
            )
        elif kind == "drop":
            value = None
            top[0].caption("The solver goes as far as the max drop allows.")
        else:
            full = {
                "params": dense["nonzero_params"],
                "bytes": dense["sparse_bytes"],
                "flops": dense["flops_effective"],
            }[kind]
            value = top[0].number_input(
                f"{KIND_LABELS[kind]}, at most",
                min_value=0,
                max_value=int(full),
                value=int(full * 0.25),
                step=max(1, int(full) // 100),
                key=key(f"t-{kind}"),
                help=f"Dense: {int(full):,}.",
            )
        drop_value = top[1].number_input(
            f"Max drop of {widgets.METRIC_LABELS.get(metric, metric)}"
            + (" (pp)" if percent else ""),
            min_value=0.0,
            value=2.0 if kind == "drop" else None,
            step=0.5 if percent else 0.01,
            placeholder="no limit",
            key=key(f"max-drop-{kind}-{metric}"),
        )
        top[2].caption(
            "Locked layers stay at their sparsity on the Prune page. Min / max bound each free "
            "layer (in %). Sparsities are whole percents, like the Prune page's sliders. With a "
            "max drop, each proposal is checked by measuring it and backed off until it holds."
        )
        whole = top[2].checkbox(
            "Allow removing a whole layer",
            value=False,
            key=key("whole-layers"),
            help="Off: every free layer keeps at least one weight (channel). A layer removed "
            "whole cuts the network, or deletes classes at the output.",
        )
        table = pd.DataFrame(
            {
                "layer": layers,
                "params": [params[n] for n in layers],
                "current": [plan.sparsity.get(n, 0.0) * 100 for n in layers],
                "lock": [n in state.locks() for n in layers],
                "min": [0] * len(layers),
                "max": [100] * len(layers),
            }
        )
        edited = st.data_editor(
            table,
            hide_index=True,
            width="stretch",
            key=key("constraints"),
            disabled=["layer", "params", "current"],
            column_config={
                "layer": "Layer",
                "params": st.column_config.NumberColumn("Weights", format="localized"),
                "current": st.column_config.NumberColumn("Prune page", format="%.0f%%"),
                "lock": st.column_config.CheckboxColumn("Lock"),
                "min": st.column_config.NumberColumn(
                    "Min %", min_value=0, max_value=100, step=1, required=True
                ),
                "max": st.column_config.NumberColumn(
                    "Max %", min_value=0, max_value=100, step=1, required=True
                ),
            },
        )
        st.form_submit_button("Propose budgets", type="primary", icon=":material/calculate:")
    if kind == "drop" and drop_value is None:
        st.warning("Give a max drop: without a target, the solver needs one.")
        return None
    locks, free = edited[edited["lock"]], edited[~edited["lock"]]
    with guard("Cannot solve this budget"):
        return Budget.from_form(
            metric,
            value,
            kind,
            max_drop=drop_value,
            locked=dict(zip(locks["layer"], locks["current"], strict=True)),
            min_sparsity=dict(zip(free["layer"], free["min"], strict=True)),
            max_sparsity=dict(zip(free["layer"], free["max"], strict=True)),
            whole_layers=bool(whole),
        )
    return None
