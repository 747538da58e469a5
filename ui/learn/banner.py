"""The lesson in progress, in the sidebar of every page: its step and whether it is done."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.learn import facts as session
from workbench.learn import LESSONS


def render() -> None:
    current = state.lesson()
    if current is None:
        return
    lesson = LESSONS[current[0]]
    step, passed, _ = session.step_status(lesson, current[1])
    last = current[1] == len(lesson.steps) - 1
    mark = (
        ":material/pending: in progress"
        if not passed
        else ":material/check_circle: done: the lesson is complete"
        if last
        else ":material/check_circle: done: on to the next step"
    )
    with st.container(border=True):
        st.caption(f"Lesson · step {current[1] + 1} of {len(lesson.steps)}")
        st.markdown(f"**{step.title}**  \n{mark}")
        st.page_link("pages/learn.py", label="Back to the lesson", icon=":material/school:")
