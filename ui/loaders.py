"""Models and their engines, by key: a demo's name, or a model this session uploaded.

Demo engines are cached with st.cache_resource and shared by all sessions: read only (a
Workbench prunes a private copy and is thread-safe; each session keeps its own plan). Uploaded
models live in their session only.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui import state
from ui.text import plain
from workbench import Demo, ModelInfo, Workbench, WorkbenchError, list_demos, load_demo
from workbench.models import demo_info


@st.cache_resource(show_spinner="Loading the model…")
def demo(name: str) -> Demo:
    return load_demo(name)


@st.cache_resource(show_spinner="Measuring the dense model on the validation set…")
def _demo_bench(name: str) -> Workbench:
    d = demo(name)
    return Workbench(d.model, d.val, class_names=d.meta.class_names)


def available() -> list[str]:
    """Keys of every model this session can pick: the demos, then its own uploads."""
    return list_demos(include_synthetic=True) + list(state.uploads())


def info(key: str) -> ModelInfo:
    uploads = state.uploads()
    return uploads[key].info if key in uploads else demo_info(key)


def bench(key: str) -> Workbench:
    uploads = state.uploads()
    if key in uploads:
        return uploads[key].bench
    # MemoryError is no core error but a server too small for the model: say so, not a trace.
    # Anything else (a TypeError, a torch RuntimeError) in preparing a demo is a bug: loud.
    try:
        return _demo_bench(key)
    except (WorkbenchError, MemoryError) as error:
        st.error(
            plain(f"The model {key!r} could not be prepared: {error}"), icon=":material/error:"
        )
        st.stop()


def current() -> Workbench:
    """The engine of the model the sidebar picked."""
    return bench(state.demo())


def training_data(key: str) -> Any | None:
    """A model's training set: a demo's own split, or one brought with an upload (None: none)."""
    uploads = state.uploads()
    if key in uploads:
        return uploads[key].train
    train = demo(key).train
    return train if len(train) else None


def tokenizer(key: str) -> Any | None:
    """A text model's tokenizer (ids back to token strings), a demo's or an upload's; None for
    other models."""
    uploads = state.uploads()
    if key in uploads:
        return uploads[key].tokenizer
    return demo(key).tokenizer
