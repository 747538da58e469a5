"""Cached, shared resources. Everything returned here is shared by all sessions: read only."""

from __future__ import annotations

import streamlit as st

from workbench import Demo, Workbench, load_demo


@st.cache_resource(show_spinner="Loading the model…")
def demo(name: str) -> Demo:
    return load_demo(name)


@st.cache_resource(show_spinner="Measuring the dense model on the validation set…")
def bench(name: str) -> Workbench:
    """One engine per model, shared by all sessions: it prunes a private copy and is thread-safe;
    each session keeps its own plan."""
    d = demo(name)
    return Workbench(d.model, d.val, class_names=d.meta.class_names)
