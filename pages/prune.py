"""Prune page: a slider per layer, and at once the exact accuracy, size and FLOPs it leads to."""

import streamlit as st

from ui import loaders, state
from ui.prune import panel

state.route_through_app("pages/prune.py")

loaders.current()  # prepares the model (or says why it cannot) before the page is drawn

st.title("Prune")
st.caption(
    "Drag a layer's slider: accuracy, size and FLOPs below are an exact evaluation of the "
    "pruned model on the whole validation set."
)
panel.render()
