"""Learn page: a one-screen primer of pruning, and four guided lessons on the real pages."""

import streamlit as st

from ui import state
from ui.learn import lesson, primer

state.route_through_app("pages/learn.py")

st.title("Learn")
st.caption(
    "New to pruning? Read the basics on one screen, then take a lesson: each sets the app up, "
    "asks you to act on the real pages, checks what you did and explains your own numbers."
)
current = state.lesson()
if current is None:
    primer.render()
    lesson.choose()
else:
    lesson.render(*current)
