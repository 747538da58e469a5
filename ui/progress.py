"""One helper that draws any progress generator: a bar, its message, and the result.

An event has `fraction`, `message`, `finished` and `result` (the core's `Progress[T]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")


def show(events: Iterable[Any], text: str, *, stop: Callable[[], None] | None = None) -> Any:
    """Drain `events`, drawing a bar once there is a step to show; returns the last result.

    With `stop`, a Stop button is drawn beside the bar: clicking it reruns the page, which
    abandons the generator (nothing it would have returned is kept) and calls `stop`.
    """
    bar = None
    for event in events:
        if event.finished:
            if bar is not None:
                bar.empty()
            return event.result
        if bar is None:
            if stop is not None:
                st.button("Stop", icon=":material/stop:", on_click=stop, key=f"stop:{text}")
            bar = st.progress(0.0, text=text)
        bar.progress(event.fraction, text=f"{text} · {event.message}" if event.message else text)
    raise RuntimeError("the computation ended without a result")  # a core bug: stays loud
