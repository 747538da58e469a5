"""Recover page: fine-tune the pruned model with its zeros held, distil from the dense model,
or prune gradually while training; compare with one-shot pruning."""

import streamlit as st

from ui import loaders, state
from ui.recover import panel

state.route_through_app("pages/recover.py")

loaders.current()  # prepares the model (or says why it cannot) before the page is drawn

st.title("Recover")
st.caption(
    "Pruning without retraining is half the method. Train the pruned model with its zeros held "
    "(they stay exactly zero), learn from the dense model's outputs (distillation), or prune "
    "gradually while training. The numbers are exact evaluations on the validation set."
)
panel.render()
