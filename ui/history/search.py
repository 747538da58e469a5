"""Automated search on the History page: Optuna over per-layer sparsities within the Prune
page's locks, every trial an exact evaluation kept as a run, with a bar and a Stop."""

from __future__ import annotations

import streamlit as st

from ui import progress, state, widgets
from ui.guard import guard
from ui.history import tracking
from workbench import PRIMARY_METRIC, Workbench, track


def render(bench: Workbench) -> None:
    plan = state.plan()
    left, middle, right = st.columns([3, 1, 1], vertical_alignment="bottom")
    cost = widgets.choice(
        left, "Minimise", list(track.COSTS), "search-cost", format_func=lambda c: track.COSTS[c]
    )
    trials = middle.number_input(
        "Trials", 4, 500, 30, step=1, key=state.widget_key("search-trials"),
        help="Each trial is one exact evaluation of the whole validation set.",
    )  # fmt: skip
    locked = sorted(state.locks())
    metric = PRIMARY_METRIC[bench.task]
    st.caption(
        f"Maximises {widgets.METRIC_LABELS.get(metric, metric)} and minimises "
        f"{track.COSTS[cost].lower()} with Optuna, per-layer sparsities in steps of 5 % up to "
        f"95 %, {plan.method} {plan.granularity} as on the Prune page"
        + (f", {', '.join(locked)} locked dense" if locked else "")
        + ". It starts from the uniform allocations; every trial is kept as a run."
    )
    if not right.button(
        "Search", icon=":material/travel_explore:", key=state.widget_key("search-start"),
        width="stretch", type="primary",
    ):  # fmt: skip
        return
    with guard("Cannot search"):
        events = track.search_iter(
            bench, metric=metric, cost=cost, trials=int(trials), method=plan.method,
            granularity=plan.granularity, locked=locked,
        )  # fmt: skip
        result = progress.show(
            tracking.kept_trials(events), "Searching", stop=lambda: None,
            key=state.widget_key("search-stop"),
        )  # fmt: skip
        st.toast(f"Search done: {sum(result.front)} of {len(result.reports)} trials on the front.")
        st.rerun()  # the runs table and the frontier above now hold the trials
