"""The progress protocol: fractions, the last event's result, and `drain`."""

import pytest

from workbench.progress import Progress, drain


def _events():
    yield Progress(1, 2, "half")
    yield Progress(2, 2, "done", result="value")


def test_fraction_and_finished() -> None:
    first, last = list(_events())
    assert first.fraction == 0.5 and not first.finished
    assert last.fraction == 1.0 and last.finished and last.result == "value"
    assert Progress(0, 0).fraction == 1.0
    assert Progress(5, 2).fraction == 1.0


def test_drain_returns_the_result_and_fails_loudly_without_one() -> None:
    assert drain(_events()) == "value"
    with pytest.raises(RuntimeError):
        drain(iter([Progress(1, 2)]))


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Progress(1, 2).done = 2  # type: ignore[misc]
