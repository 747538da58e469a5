"""A lesson in progress: its step, what to do and where, the check, and the explanation."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.learn import facts as session
from ui.text import plain
from workbench.learn import LESSONS, Lesson, Setup


def choose() -> None:
    """The lessons as cards, each with Start."""
    st.subheader("Four guided lessons")
    for column, lesson in zip(st.columns(len(LESSONS)), LESSONS.values(), strict=True):
        with column.container(border=True, height="stretch"):
            st.markdown(f"**{lesson.title}**")
            st.caption(f"{len(lesson.steps)} steps · about {lesson.minutes} minutes")
            st.markdown(lesson.summary)
            st.button(
                "Start", key=f"start:{lesson.key}", on_click=state.set_lesson,
                args=(lesson.key, 0), icon=":material/school:", type="primary",
            )  # fmt: skip


def render(key: str, index: int) -> None:
    lesson = LESSONS[key]
    step, passed, facts = session.step_status(lesson, index)
    last = index == len(lesson.steps) - 1
    st.subheader(lesson.title)
    st.progress(
        (index + passed) / len(lesson.steps), text=f"Step {index + 1} of {len(lesson.steps)}"
    )
    with st.container(border=True):
        st.markdown(f"#### {plain(step.title)}")
        st.markdown(session.text(step.task, lesson, facts))
        actions = [a for a in (step.setup is not None, step.page is not None) if a]
        columns = iter(st.columns([1] * len(actions) + [4 - len(actions)]))
        if step.setup is not None:
            next(columns).button(
                "Set it up", on_click=_set_up, args=(step.setup,), key=f"setup:{key}:{index}",
                icon=":material/auto_fix_high:",
            )  # fmt: skip
        if step.page is not None:
            next(columns).page_link(step.page, label="Go there", icon=":material/arrow_forward:")
        if passed:
            st.success(session.text(step.explain, lesson, facts), icon=":material/check_circle:")
        else:
            st.info(plain(f"Not yet: {step.check.hint(facts)}."), icon=":material/pending:")
    _navigation(lesson, index, passed, last)
    if passed and last:
        st.markdown(f"**What to try next.** {lesson.next}")


def _navigation(lesson: Lesson, index: int, passed: bool, last: bool) -> None:
    back, forward, restart, leave = st.columns(4)
    back.button(
        "Back",
        disabled=index == 0,
        on_click=state.set_lesson,
        args=(lesson.key, index - 1),
        icon=":material/arrow_back:",
        width="stretch",
    )
    if last:
        forward.button(
            "Finish",
            disabled=not passed,
            on_click=state.set_lesson,
            args=(None,),
            icon=":material/flag:",
            type="primary",
            width="stretch",
        )
    else:
        forward.button(
            "Next",
            disabled=not passed,
            on_click=state.set_lesson,
            args=(lesson.key, index + 1),
            icon=":material/arrow_forward:",
            type="primary",
            width="stretch",
        )
    restart.button(
        "Restart",
        on_click=state.set_lesson,
        args=(lesson.key, 0),
        icon=":material/restart_alt:",
        width="stretch",
    )
    leave.button("All lessons", on_click=state.set_lesson, args=(None,),
                 icon=":material/list:", width="stretch")  # fmt: skip


def _set_up(setup: Setup) -> None:
    state.set_demo(setup.demo)
    state.set_plan(setup.plan)
