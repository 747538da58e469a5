"""The Recover page's settings form: what kind of recovery, and how long and how fast it trains."""

from __future__ import annotations

from typing import Any

import streamlit as st

from workbench import Schedule

KINDS = {
    "Fine-tune": "Train the pruned model with its zeros held.",
    "Gradual (AGP)": "Start from the dense model and prune while training, along a cubic "
    "schedule (Zhu & Gupta 2017), ending at the plan's sparsities.",
}
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def render(labelled: bool, disabled: bool) -> tuple[str, dict[str, Any]] | None:
    """The form; on Start, the run's label and its `wb.finetune` settings."""
    with st.form("recover-settings", border=True):
        top = st.columns([1.2, 0.8, 1.0, 1.0])
        kind = top[0].segmented_control(
            "Recovery",
            list(KINDS),
            default="Fine-tune",
            required=True,
            help=" ".join(f"{k}: {v}" for k, v in KINDS.items()),
        )
        epochs = top[1].number_input("Epochs", 1, 200, 5)
        lr = top[2].select_slider(
            "Learning rate", LEARNING_RATES, value=3e-3, format_func=lambda v: f"{v:g}"
        )
        distill = top[3].slider(
            "Distillation weight α",
            0.0,
            1.0,
            0.0 if labelled else 1.0,
            0.05,
            disabled=not labelled,
            help="0: learn from the labels only; 1: from the dense model's outputs only. "
            + ("" if labelled else "This training set has no labels: distillation only."),
        )
        with st.expander("More settings"):
            more = st.columns(4)
            temperature = more[0].slider("Temperature T", 1.0, 10.0, 4.0, 0.5)
            batch_size = more[1].selectbox("Batch size", (16, 32, 64, 128, 256), index=1)
            optimizer = more[2].selectbox("Optimizer", ("adamw", "sgd"), format_func=str.upper)
            lr_schedule = more[3].selectbox("Learning-rate schedule", ("cosine", "constant"))
            rest = st.columns(4)
            weight_decay = rest[0].number_input("Weight decay", 0.0, 1.0, 0.0, 1e-4, format="%g")
            patience = rest[1].number_input(
                "Patience (epochs without gain; 0: never stop early)", 0, 100, 3
            )
            seed = rest[2].number_input("Seed", 0, 2**31 - 1, 0)
        start = st.form_submit_button(
            "Start", icon=":material/play_arrow:", type="primary", disabled=disabled
        )
    if not start:
        return None
    settings: dict[str, Any] = {
        "epochs": int(epochs),
        "lr": float(lr),
        "distill": float(distill),
        "temperature": float(temperature),
        "batch_size": int(batch_size),
        "optimizer": optimizer,
        "lr_schedule": lr_schedule,
        "weight_decay": float(weight_decay),
        "patience": int(patience) or None,
        "seed": int(seed),
        "schedule": Schedule.agp() if kind == "Gradual (AGP)" else None,
    }
    label = kind + (f" + distillation (α {distill:g})" if distill > 0 and labelled else "")
    return label, settings
