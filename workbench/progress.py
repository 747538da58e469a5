"""The one progress protocol: long work is a generator of `Progress[T]` events.

A sensitivity scan, an attribution, a layer-importance table or an upload check yields events;
the last one carries the result. The app draws any of them with one helper (`ui/progress.py`),
the CLI with one loop, a test with `list()` or `drain`:

    for event in events:
        print(f"{event.fraction:.0%} {event.message}")
        if event.finished:
            result = event.result
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "drain"]


@dataclass(frozen=True)
class Progress(Generic[T]):
    """One step of a long computation: `done` of `total`; the last event carries the result."""

    done: int | float
    total: int | float
    message: str = ""
    result: T | None = None

    @property
    def fraction(self) -> float:
        """How far along, in [0, 1] (an empty computation counts as done)."""
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def finished(self) -> bool:
        """Whether this is the last event (results are never None)."""
        return self.result is not None


def drain(events: Iterable[Progress[T]]) -> T:
    """Run a progress generator to the end and return its result (for callers showing none)."""
    result = None
    # Run to the end rather than return at the first result: a generator may still store its
    # result in a cache after its last yield.
    for event in events:
        if event.finished:
            result = event.result
    if result is None:  # a generator that stops without a result is a core bug: stay loud
        raise RuntimeError("the computation ended without a result")
    return result
