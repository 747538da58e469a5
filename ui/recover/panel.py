"""The Recover page's panel: the plan it recovers, the settings, the live run and the results."""

from __future__ import annotations

import streamlit as st

from ui import loaders, state, widgets
from ui.guard import guard
from ui.history import tracking
from ui.recover import live, results, settings
from ui.recover.job import Job
from ui.text import plain
from workbench import PRIMARY_METRIC, PruningPlan, Workbench, finetune_iter
from workbench.evaluate.modelling import as_tensors


def render() -> None:
    bench = loaders.current()
    plan = state.plan()
    if plan.is_dense:
        st.info(
            "The plan is dense: prune on the Prune page first, then come back to win back "
            "what pruning cost.",
            icon=":material/info:",
        )
        st.page_link("pages/prune.py", label="Go to Prune", icon=":material/content_cut:")
        return
    one_shot = None
    with guard("This plan cannot be evaluated"):
        one_shot = bench.evaluate(plan)
    if one_shot is None:
        return
    metric = PRIMARY_METRIC[one_shot.task]
    st.markdown(
        "**Plan:** "
        + plain(
            f"{_describe(plan)} · one-shot "
            f"{widgets.METRIC_LABELS[metric].lower()} "
            f"{widgets.fmt_metric(metric, one_shot.metrics[metric])} "
            f"(dense {widgets.fmt_metric(metric, one_shot.dense_metrics[metric])})"
        )
    )
    train = loaders.training_data(state.demo())
    if train is None:
        st.info(
            "This model has no training set. Bring one on the Load page (or split your data "
            "there into training and validation parts): fine-tuning on the validation set "
            "itself would report a leak as accuracy.",
            icon=":material/info:",
        )
        return

    jobs = state.recoveries()
    for job in jobs:
        if job.crash is not None:  # a bug in the run: loud, as anywhere else
            jobs.remove(job)
            raise job.crash
    running = next((job for job in jobs if job.running), None)
    labelled = as_tensors(train)[1] is not None
    chosen = settings.render(labelled, disabled=running is not None)
    if chosen is not None and running is None:
        _start(bench, plan, train, *chosen)
        st.rerun()
    on_plan = [job for job in jobs if job.plan_key == plan.to_json()]
    if on_plan and on_plan[-1].error:
        st.error(plain(f"The run stopped: {on_plan[-1].error}"), icon=":material/error:")
    shown = running or next((job for job in reversed(on_plan) if job.rows), None)
    if shown is not None:
        live.render(shown, metric, one_shot.dense_metrics[metric], one_shot.metrics[metric])
    results.render(bench, one_shot, on_plan)


def _start(bench: Workbench, plan: PruningPlan, train: object, label: str, options: dict) -> None:
    job = Job(label=label, plan_key=plan.to_json(), settings=options)
    state.recoveries().append(job)
    kept = tracking.recovery_tracker(label)  # the result becomes a run when it finishes
    job.start(lambda stop: kept(finetune_iter(bench, plan, train, stop=stop, **options)))


def _describe(plan: PruningPlan) -> str:
    pruned = {name: s for name, s in plan.sparsity.items() if s > 0}
    values = set(pruned.values())
    amount = f"{values.pop():.0%} on" if len(values) == 1 else "per-layer sparsities on"
    return (
        f"{amount} {len(pruned)} layer{'s' if len(pruned) != 1 else ''}, {plan.scope} "
        f"{plan.method} {plan.granularity}"
    )
