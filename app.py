"""Prune Workbench: entry point. Page config, the shared sidebar, navigation over pages/."""

import streamlit as st

from ui import loaders, state, widgets
from ui.learn import banner

st.set_page_config(page_title="Prune Workbench", page_icon="✂️", layout="wide")
st.html(
    """<style>
    .block-container {padding-top: 2.2rem; padding-bottom: 2rem;}
    [data-testid="stMetricValue"] {font-size: 1.55rem;}
    [data-testid="stMetricLabel"] p {font-size: 0.85rem;}
    h1 {padding-top: 0.2rem;}
    </style>"""
)

PAGES = [
    st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
    st.Page("pages/model.py", title="Model", icon=":material/hub:", default=True),
    st.Page("pages/load.py", title="Load your model", icon=":material/upload_file:"),
    st.Page("pages/weights.py", title="Weights", icon=":material/bar_chart:"),
    st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:"),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/recover.py", title="Recover", icon=":material/healing:"),
    st.Page("pages/sensitivity.py", title="Sensitivity", icon=":material/tune:"),
    st.Page("pages/importance.py", title="Importance", icon=":material/insights:"),
]
# The sidebar links are drawn here, not by st.navigation: with client.showSidebarNavigation
# off (.streamlit/config.toml), the browser no longer lists the raw pages/ file names before
# this script's first run, and that option would hide st.navigation's own sidebar menu too.
pages = st.navigation(PAGES, position="hidden")
state.mark_app_shell()
if (link := state.take_deep_link()) is not None:  # see state.route_through_app
    st.switch_page(link[0], query_params=link[1])

with st.sidebar:
    st.markdown("### ✂️ Prune Workbench")
    st.caption("Look inside a neural network and prune it by hand, with exact numbers.")
    for page in PAGES:
        st.page_link(page)
    widgets.demo_picker()
    st.caption(loaders.info(state.demo()).description)

if pages.url_path != "load":
    # A plan from a link, or from before a model changed, may name layers this model lacks.
    state.fit_layers(loaders.bench(state.demo()).layer_names)
    with st.sidebar:  # after fit_layers: the lesson's check evaluates the plan
        banner.render()
widgets.notices()
state.sync_url()
pages.run()
