"""Automated search on the History page: Optuna (or FLAML) over per-layer sparsities within the
Prune page's locks, every trial an exact evaluation kept as a run, with a bar and a Stop; and
the latest search in Optuna's own plots."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import progress, scale, state, widgets
from ui.guard import guard
from ui.history import tracking
from workbench import PRIMARY_METRIC, Workbench, plots, track


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
    backend_column, ray_column = st.columns([3, 2], vertical_alignment="bottom")
    backend = widgets.choice(
        backend_column, "Sampler", list(track.BACKENDS), "search-backend",
        format_func=lambda b: track.BACKENDS[b],
        help="Optuna's TPE trades both objectives off; FLAML's CFO is lexicographic: the "
        "metric first, then the cost among trials within 0.01 of the best metric.",
    )  # fmt: skip
    runner = scale.runner(ray_column, "search")
    locked = sorted(state.locks())
    metric = PRIMARY_METRIC[bench.task]
    st.caption(
        f"Maximises {widgets.METRIC_LABELS.get(metric, metric)} and minimises "
        f"{track.COSTS[cost].lower()} with {track.BACKENDS[backend].split(' (')[0]}, per-layer "
        f"sparsities in steps of 5 % up to 95 %, {plan.method} {plan.granularity} as on the "
        "Prune page" + (f", {', '.join(locked)} locked dense" if locked else "")
        + ". It starts from the uniform allocations; every trial is kept as a run"
        + (", evaluated on Ray." if runner is not None else ".")
    )  # fmt: skip
    if not right.button(
        "Search", icon=":material/travel_explore:", key=state.widget_key("search-start"),
        width="stretch", type="primary",
    ):  # fmt: skip
        return
    with guard("Cannot search"):
        events = track.search_iter(
            bench, metric=metric, cost=cost, trials=int(trials), method=plan.method,
            granularity=plan.granularity, locked=locked, backend=backend, runner=runner,
        )  # fmt: skip
        result = progress.show(
            tracking.kept_trials(events, track.search_tags(metric, cost, backend)), "Searching",
            stop=lambda: None, key=state.widget_key("search-stop"),
        )  # fmt: skip
        st.toast(f"Search done: {sum(result.front)} of {len(result.reports)} trials on the front.")
        st.rerun()  # the runs table and the frontier above now hold the trials


def latest(runs: pd.DataFrame) -> None:
    """The latest search's trials in Optuna's plots: Pareto front, history, layer importance."""
    with guard("The search's plots cannot be drawn"):
        found = track.search_study(runs)
        if found is None:
            return
        cost = track.COSTS.get(found.cost, found.cost)
        figures = plots.search_plots(found.study, found.metric, cost)
        with st.expander(
            f"The latest search in Optuna's plots ({len(found.study.trials)} trials, "
            f"{found.backend})", icon=":material/insights:",
        ):  # fmt: skip
            for tab, figure in zip(st.tabs(list(figures)), figures.values(), strict=True):
                tab.plotly_chart(figure, width="stretch", config={"displayModeBar": False})
