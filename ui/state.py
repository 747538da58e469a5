"""The one doorway to session state: the chosen demo, its pruning plan, locks, the URL."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from workbench import (
    CRITERIA,
    GRANULARITIES,
    SCOPES,
    ModelInfo,
    PlanError,
    PruningPlan,
    Workbench,
    list_demos,
)
from workbench.learn import LESSONS

DEFAULT_DEMO = "digits-cnn"
_PLANS = "plans"  # {demo: PruningPlan}; not a widget key, so it survives page changes
_LOCKS = "locks"  # {demo: set of locked layer names}
_DEMO = "demo"
_TOUCHED = "touched"  # {demo: the layer whose slider moved last}
_UPLOADS = "uploads"  # {key: Upload}: models this session brought; never shared
_NOTICES = "notices"  # what a link or a stale plan lost, and why: shown once, then cleared
_RECOVERIES = "recoveries"  # {model key: [ui.recover.job.Job]}: this session's recovery runs
_EXACT = "exact"  # {model key: ui.prune.exact.ExactWorker}: the Prune page's exact evaluations
_UNDO = "undo"  # {demo: ([earlier plans], [undone plans])}: undo / redo of plan changes
_UNDO_DEPTH = 100  # plans an undo can go back through
_SESSION = "session_id"  # a random id: the runs kept for this session's uploads carry it
_LESSON = "lesson"  # (lesson key, step index) of the lesson in progress, or None
_RECORDED = "recorded"  # {lesson key: {name: number as shown}}: what passed steps recorded


@dataclass(frozen=True)
class Upload:
    info: ModelInfo
    bench: Workbench
    train: Any = None  # a training set brought with the model, for the Recover page
    tokenizer: Any = None  # a text model's, to show its token ids as words


def _init() -> None:
    if _PLANS in st.session_state:
        return
    st.session_state[_PLANS] = {}
    st.session_state[_LOCKS] = {}
    st.session_state[_TOUCHED] = {}
    st.session_state[_UPLOADS] = {}
    st.session_state[_NOTICES] = []
    st.session_state[_RECOVERIES] = {}
    st.session_state[_RECORDED] = {}
    params = dict(st.query_params)
    st.session_state[_LESSON] = _lesson_from_query(params)
    demo = params.get("demo", DEFAULT_DEMO)
    if demo not in list_demos(include_synthetic=True):
        st.session_state[_DEMO] = DEFAULT_DEMO
        # The link's layer names belong to the missing model: its plan is not applied.
        link_plan = "" if read_query(params).empty else ", without the link's plan"
        note(
            f"The link's model {demo!r} is not available (a model uploaded in another session "
            f"is gone after a reload); showing {DEFAULT_DEMO}{link_plan}."
        )
        return
    st.session_state[_DEMO] = demo
    link = read_query(params)
    for line in link.dropped:
        note(f"Ignored from the link: {line}.")
    if link.plan is not None:
        st.session_state[_PLANS][demo] = link.plan
    if link.locks:
        st.session_state[_LOCKS][demo] = set(link.locks)


def note(text: str) -> None:
    """Queue a one-line notice for the user (shown by `widgets.notices`)."""
    _init()
    if text not in st.session_state[_NOTICES]:
        st.session_state[_NOTICES].append(text)


def take_notices() -> list[str]:
    _init()
    notices, st.session_state[_NOTICES] = st.session_state[_NOTICES], []
    return notices


def fit_layers(layer_names: Iterable[str]) -> None:
    """Drop the plan's and the locks' layers that the current model does not have, saying so.

    A plan from a link, or from before a model changed, may name layers this model lacks;
    the pages then work on what is valid instead of failing on the unknown names.
    """
    _init()
    known = set(layer_names)
    current = plan()
    unknown = sorted({*current.sparsity, *current.methods} - known)
    if unknown:
        kept = current.replace(
            sparsity={n: v for n, v in current.sparsity.items() if n in known},
            methods={n: m for n, m in current.methods.items() if n in known},
        )
        set_plan(kept)
        note(f"Dropped from the plan: layer(s) {', '.join(unknown)}, which {demo()} does not have.")
    locked = locks()
    stale = sorted(locked - known)
    if stale:
        locked.difference_update(stale)
        sync_url()
        note(f"Dropped the lock(s) on {', '.join(stale)}, which {demo()} does not have.")


def mark_app_shell() -> None:
    """app.py ran in this session: pages run inside its layout and navigation."""
    st.session_state["app_shell"] = True


def route_through_app(page: str) -> None:
    """Run a page through app.py when Streamlit ran it alone.

    On a fresh server, a deep link (`/prune?...`) runs the page script without app.py, with
    the legacy pages/ navigation (Streamlit issue 9624). Read the URL's plan now, then go to
    app.py, which comes back to this page.
    """
    if not st.session_state.get("app_shell"):
        _init()
        st.session_state["deep_link"] = (page, dict(st.query_params))
        st.switch_page("app.py")


def take_deep_link() -> tuple[str, dict[str, str]] | None:
    return st.session_state.pop("deep_link", None)


def demo() -> str:
    _init()
    return st.session_state[_DEMO]


def uploads() -> dict[str, Upload]:
    _init()
    return st.session_state[_UPLOADS]


def add_upload(
    key: str, info: ModelInfo, bench: Workbench, train: Any = None, tokenizer: Any = None
) -> None:
    """Keep a model this session loaded (with its training set and a text model's tokenizer,
    if any), and switch to it."""
    uploads()[key] = Upload(info, bench, train, tokenizer)
    st.session_state[_PLANS].pop(key, None)
    set_demo(key)


def set_demo(name: str) -> None:
    _init()
    st.session_state[_DEMO] = name
    sync_url()


def plan() -> PruningPlan:
    _init()
    return st.session_state[_PLANS].get(demo(), PruningPlan())


def set_plan(new: PruningPlan, touched: str | None = None, *, undoable: bool = True) -> None:
    _init()
    if undoable and new != plan():
        earlier, undone = _undo_stacks()
        earlier.append(plan())
        del earlier[:-_UNDO_DEPTH]
        undone.clear()
    st.session_state[_PLANS][demo()] = new
    if touched is not None:
        st.session_state[_TOUCHED][demo()] = touched
    sync_url()


def _undo_stacks() -> tuple[list[PruningPlan], list[PruningPlan]]:
    return st.session_state.setdefault(_UNDO, {}).setdefault(demo(), ([], []))


def can_undo() -> bool:
    _init()
    return bool(_undo_stacks()[0])


def can_redo() -> bool:
    _init()
    return bool(_undo_stacks()[1])


def undo() -> None:
    """Back to the plan before the last change of this model's plan (this session's)."""
    _init()
    _step(*_undo_stacks())


def redo() -> None:
    _init()
    _step(*reversed(_undo_stacks()))


def _step(source: list[PruningPlan], target: list[PruningPlan]) -> None:
    if source:
        target.append(plan())
        set_plan(source.pop(), undoable=False)


def session_id() -> str:
    """This browser session's random id (the runs of its uploads are listed to it only)."""
    if _SESSION not in st.session_state:
        st.session_state[_SESSION] = uuid.uuid4().hex
    return st.session_state[_SESSION]


def touched_layer() -> str | None:
    _init()
    return st.session_state[_TOUCHED].get(demo())


def start_layer(layers: Sequence[str], plan: PruningPlan) -> str:
    """The layer a layer picker starts on: the one last moved, else the first the plan prunes."""
    touched = touched_layer()
    if touched in layers:
        return touched
    return next((n for n in layers if plan.sparsity.get(n, 0) > 0), layers[0])


def locks() -> set[str]:
    """The locked layers of the current model (read it; change it with `set_locks`)."""
    _init()
    return st.session_state[_LOCKS].setdefault(demo(), set())


def set_locks(layers: Iterable[str]) -> None:
    """Lock exactly `layers` of the current model."""
    held = locks()
    held.clear()
    held.update(layers)
    sync_url()


def recoveries() -> list[Any]:
    """This session's recovery runs on the current model, oldest first (append to start one)."""
    _init()
    return st.session_state[_RECOVERIES].setdefault(demo(), [])


def exact_worker(make: Callable[[], Any]) -> Any:
    """This session's exact-evaluation worker for the current model (`make()` the first)."""
    _init()
    workers = st.session_state.setdefault(_EXACT, {})
    if demo() not in workers:
        workers[demo()] = make()
    return workers[demo()]


def lesson() -> tuple[str, int] | None:
    """The lesson in progress and its step (also in the URL: ?lesson=magnitude&step=2)."""
    _init()
    return st.session_state[_LESSON]


def set_lesson(key: str | None, step: int = 0) -> None:
    """Go to a lesson's step (None: leave the lessons); a restart forgets what it recorded."""
    _init()
    if key is not None and step == 0:
        st.session_state[_RECORDED].pop(key, None)
    st.session_state[_LESSON] = None if key is None else (key, step)
    sync_url()


def recorded(key: str) -> dict[str, str]:
    """The numbers a lesson's passed steps kept (add to it when a step first passes)."""
    _init()
    return st.session_state[_RECORDED].setdefault(key, {})


def _lesson_from_query(params: dict[str, str]) -> tuple[str, int] | None:
    key = params.get("lesson")
    if key not in LESSONS:
        return None
    step = params.get("step", "1")
    index = int(step) - 1 if step.isdigit() else 0
    return key, min(max(index, 0), len(LESSONS[key].steps) - 1)


def widget_key(kind: str, layer: str = "") -> str:
    """Widget keys namespaced by demo, so each model keeps its own sliders."""
    return f"{kind}:{demo()}:{layer}"


# ---- the plan in the URL, so a reload or a shared link restores it ---------------------------


def plan_to_query(p: PruningPlan, locked: Iterable[str] = ()) -> dict[str, str]:
    query = {}
    pruned = {name: value for name, value in p.sparsity.items() if value > 0}
    if pruned:
        query["sp"] = ",".join(f"{name}:{value:g}" for name, value in pruned.items())
    if p.method != "l1":
        query["method"] = p.method
    if p.granularity != "unstructured":
        query["gran"] = p.granularity
    if p.scope != "layer":
        query["scope"] = p.scope
    if locked:
        query["lock"] = ",".join(sorted(locked))
    return query


@dataclass(frozen=True)
class LinkPlan:
    """What a URL says: its plan (None without one), its locks, and what it had to ignore."""

    plan: PruningPlan | None
    locks: frozenset[str] = frozenset()
    dropped: tuple[str, ...] = field(default=())  # one line each: what, and why

    @property
    def empty(self) -> bool:
        return self.plan is None and not self.locks


_OPTIONS = {  # URL key: (plan field, what it is called, its choices, its default)
    "method": ("method", "criterion", CRITERIA, "l1"),
    "gran": ("granularity", "granularity", GRANULARITIES, "unstructured"),
    "scope": ("scope", "scope", SCOPES, "layer"),
}


def read_query(query: dict[str, str]) -> LinkPlan:
    """The plan and locks in a URL; every malformed part is dropped and named, the rest kept."""
    dropped: list[str] = []
    sparsity: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in query.get("sp", "").split(","))):
        name, colon, text = item.rpartition(":")
        if not colon or not name:
            dropped.append(f"{item!r} (a layer's sparsity is written layer:fraction)")
            continue
        try:
            value = float(text)
        except ValueError:
            dropped.append(f"{item!r} ({text!r} is not a number)")
            continue
        if not math.isfinite(value) or not 0 <= value <= 1:
            dropped.append(f"{item!r} (sparsity is a fraction from 0 to 1: 0.5 is 50 %)")
            continue
        sparsity[name] = value
    options = {}
    for key, (name, what, choices, default) in _OPTIONS.items():
        value = query.get(key)
        if value is None:
            continue
        if value in choices:
            options[name] = value
        else:
            dropped.append(f"{what} {value!r} (unknown; using {default})")
    locked = frozenset(filter(None, (n.strip() for n in query.get("lock", "").split(","))))
    if not sparsity and not options and not any(k in query for k in ("sp", *_OPTIONS)):
        return LinkPlan(None, locked, tuple(dropped))
    try:
        found = PruningPlan(sparsity, **options)
    except PlanError as error:  # the parts are valid alone but not together
        return LinkPlan(None, locked, (*dropped, f"the plan ({error})"))
    return LinkPlan(found, locked, tuple(dropped))


def plan_from_query(query: dict[str, str]) -> PruningPlan | None:
    """The plan in a URL, keeping its valid parts (see `read_query` for what was dropped)."""
    return read_query(query).plan


def sync_url() -> None:
    query = {"demo": demo(), **plan_to_query(plan(), locks())}
    if (current := lesson()) is not None:
        query |= {"lesson": current[0], "step": str(current[1] + 1)}
    if dict(st.query_params) != query:
        st.query_params.from_dict(query)
