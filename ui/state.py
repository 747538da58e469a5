"""The one doorway to session state: the chosen demo, its pruning plan, locks, the URL."""

from __future__ import annotations

from dataclasses import dataclass

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

DEFAULT_DEMO = "digits-cnn"
_PLANS = "plans"  # {demo: PruningPlan}; not a widget key, so it survives page changes
_LOCKS = "locks"  # {demo: set of locked layer names}
_DEMO = "demo"
_TOUCHED = "touched"  # {demo: the layer whose slider moved last}
_UPLOADS = "uploads"  # {key: Upload}: models this session brought; never shared


@dataclass(frozen=True)
class Upload:
    info: ModelInfo
    bench: Workbench


def _init() -> None:
    if _PLANS in st.session_state:
        return
    st.session_state[_PLANS] = {}
    st.session_state[_LOCKS] = {}
    st.session_state[_TOUCHED] = {}
    st.session_state[_UPLOADS] = {}
    params = st.query_params
    demo = params.get("demo", DEFAULT_DEMO)
    st.session_state[_DEMO] = demo if demo in list_demos(include_synthetic=True) else DEFAULT_DEMO
    plan = plan_from_query(dict(params))
    if plan is not None:
        st.session_state[_PLANS][st.session_state[_DEMO]] = plan


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


def add_upload(key: str, info: ModelInfo, bench: Workbench) -> None:
    """Keep a model this session loaded, and switch to it."""
    uploads()[key] = Upload(info, bench)
    st.session_state[_PLANS].pop(key, None)
    set_demo(key)


def set_demo(name: str) -> None:
    _init()
    st.session_state[_DEMO] = name
    sync_url()


def plan() -> PruningPlan:
    _init()
    return st.session_state[_PLANS].get(demo(), PruningPlan())


def set_plan(new: PruningPlan, touched: str | None = None) -> None:
    _init()
    st.session_state[_PLANS][demo()] = new
    if touched is not None:
        st.session_state[_TOUCHED][demo()] = touched
    sync_url()


def touched_layer() -> str | None:
    _init()
    return st.session_state[_TOUCHED].get(demo())


def locks() -> set[str]:
    _init()
    return st.session_state[_LOCKS].setdefault(demo(), set())


def widget_key(kind: str, layer: str = "") -> str:
    """Widget keys namespaced by demo, so each model keeps its own sliders."""
    return f"{kind}:{demo()}:{layer}"


# ---- the plan in the URL, so a reload or a shared link restores it ---------------------------


def plan_to_query(p: PruningPlan) -> dict[str, str]:
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
    return query


def plan_from_query(query: dict[str, str]) -> PruningPlan | None:
    """The plan in a URL, or None if there is none or it is malformed (a bad link is ignored)."""
    if not any(key in query for key in ("sp", "method", "gran", "scope")):
        return None
    try:
        sparsity = {}
        for item in filter(None, query.get("sp", "").split(",")):
            name, _, value = item.rpartition(":")
            sparsity[name] = float(value)
        method = query.get("method", "l1")
        granularity = query.get("gran", "unstructured")
        scope = query.get("scope", "layer")
        if method not in CRITERIA or granularity not in GRANULARITIES or scope not in SCOPES:
            return None
        return PruningPlan(sparsity, method=method, granularity=granularity, scope=scope)
    except (ValueError, PlanError):
        return None


def sync_url() -> None:
    query = {"demo": demo(), **plan_to_query(plan())}
    if dict(st.query_params) != query:
        st.query_params.from_dict(query)
