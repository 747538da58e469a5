"""History page: the plans kept as runs, two of them compared, and the Pareto frontier."""

import streamlit as st

from ui import loaders, state
from ui.history import compare, frontier, search, table, tracking

state.route_through_app("pages/history.py")

bench = loaders.current()  # prepares the model (or says why it cannot) before the page is drawn

st.title("History")
st.caption(
    "Every plan kept with **Keep** on the Prune page, every applied budget proposal, every "
    "finished recovery and every trial of a search is a run in a local MLflow store: it "
    "survives restarts. Runs of this model on this validation data are listed here."
)
runs = tracking.runs()
if runs.empty:
    st.info("No runs of this model yet: press **Keep** on the Prune page, or search below.")
else:
    st.subheader(f"Runs ({len(runs)})")
    table.render(runs, bench.task)
    st.subheader("Compare two runs")
    if len(runs) < 2:
        st.caption("Keep a second plan to compare two runs side by side.")
    else:
        compare.render(runs)
    st.subheader("Pareto frontier")
    frontier.render(runs, bench.task)

st.subheader("Search")
search.render(bench)
search.latest(runs)
st.caption(
    f"The store: `{tracking.uri()}`. Browse it with "
    f"`mlflow ui --backend-store-uri {tracking.uri()}`."
)
