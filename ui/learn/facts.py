"""What the lessons' checks see, read from the session: the model, its plan, the plan's exact
report (the one the Prune page shows) and the recoveries the Recover page ran on it."""

from __future__ import annotations

from ui import loaders, state
from ui.ship import section
from workbench.learn import Facts, Lesson, Run, Step, fill


def current() -> Facts:
    plan = state.plan()
    key = plan.to_json()
    runs = tuple(
        Run(
            job.label,
            job.settings.get("distill", 0.0),
            job.settings.get("schedule") is not None,
            job.result.report,
        )
        for job in state.recoveries()
        if job.plan_key == key and job.result is not None
    )
    table = section.measured(plan)
    latency = (
        None
        if table is None
        else {row.label: (row.median_s, row.speedup) for row in table.itertuples()}
    )
    return Facts(state.demo(), plan, loaders.current().evaluate(plan), runs, latency)


def step_status(lesson: Lesson, index: int) -> tuple[Step, bool, Facts]:
    """The step, whether its check passes now, and the facts it saw; a first pass records the
    numbers the step names (its closing numbers are the pages' own)."""
    step, facts = lesson.steps[index], current()
    passed = step.check.passes(facts)
    if passed:
        kept = state.recorded(lesson.key)
        numbers = facts.numbers()
        for name, source in step.record.items():
            kept.setdefault(name, numbers.get(source, "…"))
    return step, passed, facts


def text(template: str, lesson: Lesson, facts: Facts) -> str:
    return fill(template, facts, state.recorded(lesson.key))
