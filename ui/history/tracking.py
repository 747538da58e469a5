"""The run store as the app uses it: one `workbench.track.Store` per data folder, the current
model's runs, and keeping a report (Keep, an applied proposal, a finished recovery)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from ui import loaders, state
from ui.guard import guard
from workbench import PruningPlan, Report, TrainingStep, export_bytes
from workbench.track import Store, TrackError, TrialProgress, default_uri, fingerprint, ship_metrics


@st.cache_resource(show_spinner="Opening the run store…")
def _store(uri: str) -> Store:
    return Store(uri)


def store() -> Store:
    """The store under the operator's data folder (read each time: a test points it elsewhere)."""
    return _store(default_uri())


def uri() -> str:
    """Where the runs are kept (without opening the store)."""
    return default_uri()


def _owner() -> str | None:
    """An upload's runs belong to this session: they carry its id and are listed to it only."""
    return state.session_id() if state.demo() in state.uploads() else None


def keep(
    report: Report,
    source: str = "keep",
    name: str | None = None,
    texts: dict | None = None,
    tags: dict[str, str] | None = None,
    *,
    latency: pd.DataFrame | None = None,
    measure: bool = True,
) -> str:
    """Record a report of the current model as a run; returns its id. With `measure`, the run
    has the compacted model's figures too, and `latency` (the Ship section's measurement)."""
    bench = loaders.current()
    return store().keep(
        report,
        model=state.demo(),
        data=fingerprint(bench),
        source=source,
        name=name,
        session=_owner(),
        tags=tags,
        texts=texts,
        metrics=ship_metrics(bench, report.plan, latency=latency) if measure else None,
    )


def keep_plan(plan: PruningPlan, source: str, name: str | None = None) -> str:
    """Evaluate a plan on the current model and keep it (an applied proposal, say)."""
    return keep(loaders.current().evaluate(plan), source=source, name=name)


@st.cache_data(ttl=20, max_entries=64, show_spinner=False)
def _runs(uri: str, model: str, data: str, session: str, generation: int) -> pd.DataFrame:
    # `generation` changes whenever this server keeps a run; another process's after the ttl.
    return _store(uri).runs(model, data=data, session=session)


def runs() -> pd.DataFrame:
    """The current model's runs on its current data, newest first (`Store.runs`)."""
    uri = default_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return pd.DataFrame(columns=["run_id"])  # nothing kept yet: no store made for a look
    with guard("The run store cannot be read"):  # e.g. a file there that is no MLflow store
        found = _store(uri)
        data = fingerprint(loaders.current())
        return _runs(found.uri, state.demo(), data, state.session_id(), found.generation)
    return pd.DataFrame(columns=["run_id"])


def load(run_id: str) -> PruningPlan:
    """Put a run's plan on the sliders (one undo brings the previous plan back)."""
    plan = store().plan(run_id)
    state.set_plan(plan)
    return plan


def recovery_tracker(label: str) -> Callable[[Iterator[TrainingStep]], Iterator[TrainingStep]]:
    """Wraps a recovery's events so its result is kept as a run when it finishes. Built in the
    page's thread (it reads the session); the wrapper runs in the job's."""
    found, model, owner, bench = store(), state.demo(), _owner(), loaders.current()
    data = fingerprint(bench)

    def tracked(events: Iterator[TrainingStep]) -> Iterator[TrainingStep]:
        for event in events:
            if event.finished:
                recovery = event.result
                found.keep(
                    recovery.report,
                    model=model,
                    data=data,
                    source="recovery",
                    name=f"{label} · {recovery.stopped}",
                    session=owner,
                    texts={"history.csv": recovery.history.to_csv(index=False)},
                    metrics=ship_metrics(bench, recovery.report.plan, model=recovery),
                )
            yield event

    return tracked


def export_keeper(stem: str) -> Callable[..., bytes]:
    """What a download button's deferred data calls: the export's bytes, kept as a run with the
    file as its artifact. Built in the page's thread (it reads the session); the store is opened
    only when a file is made."""
    where, model_name, owner, bench = uri(), state.demo(), _owner(), loaders.current()

    def made(plan: PruningPlan, format: str, file_name: str, **options: Any) -> bytes:
        content = export_bytes(bench, plan, format, **options)
        trained, latency = options.get("model"), options.get("latency")
        report = bench.evaluate(plan) if trained is None else trained.report
        # The file matters more than its run, and this callback can show nothing: a store
        # that cannot keep it (History says why) still lets the download through.
        with contextlib.suppress(TrackError):
            _store(where).keep(
                report, model=model_name, data=fingerprint(bench), source="export",
                name=f"{stem} · {format}", session=owner, files={file_name: content},
                metrics=ship_metrics(bench, plan, model=trained, latency=latency),
            )  # fmt: skip
        return content

    return made


def kept_trials(
    events: Iterator[TrialProgress], tags: dict[str, str] | None = None
) -> Iterator[TrialProgress]:
    """A search's events, each finished trial kept as a run as it comes (a Stop keeps those);
    `tags`: the search's (`track.search_tags`)."""
    for event in events:
        if event.report is not None:
            # no compaction per trial: a search's cost is its evaluations
            keep(event.report, source="search", name=f"search trial {event.done}", tags=tags,
                 measure=False)  # fmt: skip
        yield event
