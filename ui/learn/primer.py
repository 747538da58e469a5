"""The one-screen primer: the field's basics, each with a link to where it happens in the app."""

from __future__ import annotations

import streamlit as st

PRIMER = (
    ("What pruning removes",
     "Single **weights** (unstructured: zeros inside the same shapes), whole **neurons and "
     "channels** (structured: the layers get narrower), or whole attention **heads**. 2:4 "
     "sparsity keeps two of every four weights, a pattern some hardware runs faster.",
     "pages/prune.py", "Prune"),
    ("How to choose what goes",
     "**Magnitude** (the smallest |w| first), **gradient / Taylor** (|w·∂L/∂w|: what the loss "
     "would feel), **activation-aware** (Wanda: |w| times the size of the input it multiplies) "
     "or **attribution** (Captum's share of each channel in the predictions).",
     "pages/importance.py", "Importance"),
    ("When to prune",
     "**After training**, in one shot; **gradually during training** (AGP: a cubic schedule, "
     "retraining between steps); or **before training** (lottery tickets, SNIP), which this "
     "workbench does not cover.",
     "pages/recover.py", "Recover"),
    ("Why",
     "**Size** (fewer non-zeros to store), **speed** (only when whole channels go, or the "
     "hardware skips a sparsity pattern), **energy**, and sometimes **regularisation**: a "
     "lightly pruned model can generalise better.",
     "pages/model.py", "Model"),
    ("The trade-off",
     "Every layer tolerates a different share: a **sensitivity scan** prunes each alone to "
     "see how much, and a **budget** spreads the cut where it costs least. Layers interact, "
     "so the measured plan is what counts.",
     "pages/sensitivity.py", "Sensitivity"),
    ("Recovery",
     "Pruning without retraining is half the method: **fine-tuning** with the zeros held "
     "wins most of the accuracy back, **distillation** learns from the dense model's outputs.",
     "pages/recover.py", "Recover"),
)  # fmt: skip


def render() -> None:
    st.subheader("Pruning on one screen")
    for row in (PRIMER[:3], PRIMER[3:]):
        for column, (title, body, page, label) in zip(st.columns(3), row, strict=True):
            with column.container(border=True, height="stretch"):
                st.markdown(f"**{title}**")
                st.markdown(body)
                st.page_link(page, label=f"See it on {label}", icon=":material/arrow_forward:")
