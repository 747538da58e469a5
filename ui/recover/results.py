"""The Recover page's results: dense, one-shot and recovered side by side, per class, and the
recovered model opened on the other pages."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from ui import loaders, state, widgets
from ui.recover.job import Job
from ui.ship import section as ship
from ui.text import plain
from workbench import PRIMARY_METRIC, Report, Workbench
from workbench.plots.recover import comparison, per_class_recovery
from workbench.recover import per_class_change, runs_table


def render(bench: Workbench, one_shot: Report, jobs: list[Job]) -> None:
    """Cards for the latest finished run, then every run on this plan compared."""
    done = [job for job in jobs if job.result is not None]
    if not done:
        return
    latest = done[-1]
    recovered = latest.result.report
    metric = PRIMARY_METRIC[one_shot.task]
    st.subheader(f"Recovered · {latest.label}")
    cards = st.columns(3)
    cards[0].metric(
        f"Dense · {widgets.METRIC_LABELS[metric]}",
        widgets.fmt_metric(metric, one_shot.dense_metrics[metric]),
        border=True,
    )
    for column, label, report in (
        (cards[1], "One-shot", one_shot),
        (cards[2], "Recovered", recovered),
    ):
        column.metric(
            f"{label} · {widgets.METRIC_LABELS[metric]}",
            widgets.fmt_metric(metric, report.metrics[metric]),
            delta=widgets.fmt_delta(metric, report.delta(metric)) + " vs dense",
            border=True,
        )
    for note in latest.result.notes:
        st.caption(plain(note))
    st.caption(
        plain(
            f"{latest.result.stopped.capitalize()} after "
            f"{int(latest.result.history['step'].iloc[-1])} steps in "
            f"{latest.result.seconds:.1f} s; kept the weights of step {latest.result.best_step}, "
            "chosen on the validation set (a held-out test set gives the unbiased figure)."
        )
    )

    runs = runs_table(one_shot, [(job.label, job.result) for job in done])
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.markdown("**Every run on this plan**")
        st.plotly_chart(comparison(runs, metric, one_shot.dense_metrics[metric]), width="stretch")
        shown = runs.assign(
            value=[widgets.fmt_metric(metric, v) for v in runs[metric]],
            gain=[widgets.fmt_delta(metric, v) for v in runs["vs_one_shot"]],
        )
        widgets.table(st, shown, {
            "run": "Run",
            "value": widgets.METRIC_LABELS[metric],
            "gain": "vs one-shot",
            "best_step": "Step kept",
            "stopped": "Ended",
            "seconds": st.column_config.NumberColumn("Seconds", format="%.1f"),
        })  # fmt: skip
    with right:
        change = per_class_change(one_shot, recovered)
        if change is not None:
            st.markdown("**Per class: one-shot and recovered**")
            st.plotly_chart(per_class_recovery(change), width="stretch")
    st.button(
        "Open the recovered model on the other pages",
        icon=":material/open_in_new:",
        on_click=_open, args=(bench, latest),
        help="Adds it to the model picker, so Weights, Prune and Importance show it.",
    )  # fmt: skip
    with st.expander("Download the recovered model", icon=":material/download:"):
        ship.downloads(bench, latest.result.plan, model=latest.result, stem="recovered")


def _open(bench: Workbench, job: Job) -> None:
    """The recovered model joins this session as a model of its own (its zeros included)."""
    source = state.demo()
    info = loaders.info(source)
    key = f"{source} · recovered {len(state.uploads()) + 1}"
    model = job.result.plain_model()
    recovered = Workbench(
        model, (bench.val_inputs.cpu(), None if bench.targets is None else bench.targets.cpu()),
        task=bench.task, class_names=bench.class_names,
    )  # fmt: skip
    description = f"{info.title}, pruned and recovered ({job.label}) in this session."
    state.add_upload(
        key,
        replace(info, name=key, title=f"{info.title} (recovered)", description=description),
        recovered,
        loaders.training_data(source),
    )  # fmt: skip
