"""A recovery running in a background thread, so the page stays responsive while it trains.

One job per session and model (the page refuses a second while one runs). The thread writes
only to the job; the page reads it on each rerun (a fragment polls while it runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench import Recovery, TrainingStep, WorkbenchError


@dataclass
class Job:
    """A run's settings, its rows so far, and how it ended (result, or the one-line error)."""

    label: str  # how the comparison table names it: "Fine-tune", "Gradual (AGP)", ...
    plan_key: str  # the plan it recovers, as JSON: results are shown for this plan only
    settings: dict[str, Any]
    stop: threading.Event = field(default_factory=threading.Event)
    rows: list[dict[str, float]] = field(default_factory=list)
    fraction: float = 0.0
    message: str = "starting…"
    result: Recovery | None = None
    error: str | None = None
    crash: BaseException | None = None  # a bug: the page raises it, so it is not lost
    _thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))

    def start(self, events: Callable[[threading.Event], Iterator[TrainingStep]]) -> None:
        """Run `events(stop)` to its end in a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, args=(events,), name=f"recover:{self.label}", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, events: Callable[[threading.Event], Iterator[TrainingStep]]) -> None:
        try:
            for event in events(self.stop):
                if event.finished:
                    self.result = event.result
                    break
                self.rows.append(event.row)
                self.fraction, self.message = event.fraction, event.message
            self.fraction = 1.0
        except WorkbenchError as error:  # a run that cannot go on as asked: one line
            self.error = str(error)
        except MemoryError:
            self.error = "the server ran out of memory while training: try a smaller batch size"
        except Exception as error:  # noqa: BLE001 - handed to the page, which raises it
            self.crash = error
