"""One helper that draws any progress generator (the core's `Progress[T]`): a bar and a Stop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from workbench.progress import Progress, drain

T = TypeVar("T")


def show(
    events: Iterable[Progress[T]],
    text: str,
    *,
    stop: Callable[[], None] | None = None,
    key: str | None = None,
) -> T:
    """Run `events` to the end, drawing a bar once there is a step to show; returns the result.

    With `stop`, a Stop button (widget key `key`) is drawn beside the bar. Clicking it reruns
    the page: Streamlit calls `stop`, then interrupts this run at its next drawing call, so the
    generator is abandoned (it keeps nothing it has not stored itself) and the page is drawn
    again. A generator that ends without a result is a core bug and raises, as `drain` does.
    """
    box = st.empty()  # the bar and its button, cleared once the result is in
    bar = None

    def drawn() -> Iterator[Progress[T]]:
        nonlocal bar
        for event in events:
            if not event.finished:
                if bar is None:
                    bar = _bar(box, text, stop, key or f"stop:{text}")
                bar.progress(
                    event.fraction, text=f"{text} · {event.message}" if event.message else text
                )
            yield event

    try:
        result = drain(drawn())
    except Exception:  # not Streamlit's rerun: that one is a BaseException
        box.empty()  # the caller shows (or raises) the error; no bar stays half way
        raise
    box.empty()
    return result


def _bar(
    box: DeltaGenerator, text: str, stop: Callable[[], None] | None, key: str
) -> DeltaGenerator:
    """The bar, and beside it a Stop button when the work can be stopped."""
    if stop is None:
        return box.progress(0.0, text=text)
    left, right = box.container().columns([6, 1], vertical_alignment="bottom")
    right.button("Stop", icon=":material/stop:", on_click=stop, key=key)
    return left.progress(0.0, text=text)
