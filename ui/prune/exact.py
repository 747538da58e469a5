"""The Prune page's evaluation: exact at once when that is fast, else an estimate first.

When `evaluate_iter` predicts that the exact evaluation of a step takes longer than a frame,
its first event is an estimate on the workbench's fixed subset: the page draws that at once
and hands the rest of the evaluation to this session's worker thread. A newer plan supersedes
the running one (it stops at its next batch, EvaluationCancelled), so a burst of key presses
costs about one evaluation; a small fragment polls the worker and redraws the page when the
exact report of the plan on screen is ready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ui import state
from workbench import (
    Estimate,
    EvaluationCancelled,
    EvaluationProgress,
    PruningPlan,
    Report,
    WorkbenchError,
    drain,
    estimator,
    evaluate_iter,
)
from workbench.evaluate.estimate import FRAME_BUDGET

BUDGET = FRAME_BUDGET  # seconds an exact evaluation may take before an estimate comes first
POLL_SECONDS = 0.1  # how often the waiting page updates its bar (and can be interrupted)
WAIT_SECONDS = 600.0  # the longest one run waits for exact numbers; then a poll each second
IDLE_SECONDS = 60.0  # a worker thread with nothing to do this long ends (a new one starts)


class ExactWorker:
    """One session's exact evaluations on one model, run one at a time in a daemon thread;
    only the newest plan's is ever finished."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._generation = 0
        self._pending: tuple[Callable[[], bool], PruningPlan, Iterator] | None = None
        self._finished: dict[PruningPlan, Report | str] = {}  # the newest plan's: report or error
        self.crash: BaseException | None = None  # a bug: the page raises it, so it is not lost
        self.since = 0.0  # when the newest plan was handed over (time.monotonic)
        self.running: tuple[PruningPlan, Estimate] | None = None  # the newest, with its estimate
        self._thread: threading.Thread | None = None

    def supersede(self) -> Callable[[], bool]:
        """A new plan is on its way: whatever runs stops at its next batch. Returns the new
        evaluation's cancel(), True once a newer plan has superseded it too."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self.running = None
        return lambda: self._generation != generation

    def submit(
        self, cancel: Callable[[], bool], estimate: Estimate, events: Iterator[EvaluationProgress]
    ) -> None:
        """Finish `events` (an evaluation that has yielded its estimate) in the thread."""
        with self._lock:
            if cancel():
                return
            self._pending = (cancel, estimate.plan, events)
            self.running = (estimate.plan, estimate)
            self.since = time.monotonic()
            self._lock.notify()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prune-exact", daemon=True)
                self._thread.start()

    def outcome(self, plan: PruningPlan) -> Report | str | None:
        """The exact report of `plan` (or its one-line error) once finished, else None."""
        if self.crash is not None:
            crash, self.crash = self.crash, None
            raise crash
        with self._lock:
            return self._finished.get(plan)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._pending is None:
                    self._lock.wait(IDLE_SECONDS)
                if self._pending is None:
                    self._thread = None
                    return
                (cancel, plan, events), self._pending = self._pending, None
            try:
                outcome: Report | str = drain(events)
            except EvaluationCancelled:
                continue  # superseded: the newer plan is pending, or on its way
            except WorkbenchError as error:
                outcome = str(error)
            except Exception as error:  # noqa: BLE001 - handed to the page, which raises it
                self.crash = error
                continue
            with self._lock:
                if not cancel():
                    self._finished = {plan: outcome}
                    self._lock.notify_all()

    def wait(self, plan: PruningPlan, seconds: float) -> None:
        """Return when `plan`'s outcome is in, or after `seconds`."""
        with self._lock:
            self._lock.wait_for(lambda: plan in self._finished, seconds)


def _worker() -> ExactWorker:
    return state.exact_worker(ExactWorker)


def evaluation(bench, plan: PruningPlan) -> Report | Estimate:
    """The plan's exact report when it is ready or fast, else its estimate (the exact
    evaluation then runs in this session's worker). Raises a plan's WorkbenchError."""
    worker = _worker()
    outcome = worker.outcome(plan)
    if isinstance(outcome, Report):
        return outcome
    if isinstance(outcome, str):
        raise WorkbenchError(outcome)
    running = worker.running
    if running is not None and running[0] == plan:  # a rerun while its numbers are coming
        return running[1]
    cancel = worker.supersede()  # stops a running evaluation now: this plan needs the CPU
    events = evaluate_iter(bench, plan, budget=BUDGET, cancel=cancel)
    first = next(events)
    if first.finished:
        return first.result
    worker.submit(cancel, first.estimate, events)
    return first.estimate


def coming(bench, estimate: Estimate) -> None:
    """While the exact numbers are coming: how far along, and the page redrawn when ready."""
    worker, plan = _worker(), estimate.plan
    found = estimator(bench)
    expected = found.predicted_seconds(plan) or estimate.seconds * found.scale
    samples = bench.dense_outputs.shape[0]

    def draw(bar: DeltaGenerator) -> None:
        elapsed = time.monotonic() - worker.since
        bar.progress(
            min(0.95, elapsed / max(expected, 1e-3)),
            text=f"≈ Estimate on {estimate.samples:,} of {samples:,} samples (a fixed sample, "
            f"stratified by class; ± half its {estimate.confidence:.0%} bootstrap interval). "
            f"Exact numbers coming… about {expected:.1f} s",
        )

    # A rerun loop, not a timer: each bar update is where a newer key press stops this run
    # (a fragment rerun ten times a second would cost more than the evaluation it waits for).
    @st.fragment(run_every=1.0)
    def poll() -> None:
        bar = st.empty()
        deadline = time.monotonic() + WAIT_SECONDS
        while worker.outcome(plan) is None and time.monotonic() < deadline:
            draw(bar)
            worker.wait(plan, POLL_SECONDS)
        if worker.outcome(plan) is not None:
            st.rerun()  # the whole page: cards, controls and views from the exact report
        draw(bar)

    poll()
