"""Prune Workbench: entry point. Page config, the shared sidebar, navigation over pages/."""

import streamlit as st

from ui import loaders, state, widgets

st.set_page_config(page_title="Prune Workbench", page_icon="✂️", layout="wide")

pages = st.navigation(
    [
        st.Page("pages/model.py", title="Model", icon=":material/hub:", default=True),
        st.Page("pages/weights.py", title="Weights", icon=":material/bar_chart:"),
        st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:"),
    ]
)

with st.sidebar:
    st.markdown("### ✂️ Prune Workbench")
    st.caption("Look inside a neural network and prune it by hand, with exact numbers.")
    widgets.demo_picker()
    meta = loaders.demo(state.demo()).meta
    st.caption(meta.description)
    plan = state.plan()
    pruned = sum(1 for v in plan.sparsity.values() if v > 0)
    st.caption(
        f"Plan: **{pruned}** layer{'s' if pruned != 1 else ''} pruned · {plan.method} · "
        f"{plan.granularity} · {plan.scope} scope"
    )

state.sync_url()
pages.run()
