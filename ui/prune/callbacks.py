"""The Prune page's widget callbacks: each turns a moved control into a new plan."""

from __future__ import annotations

import streamlit as st

from ui import loaders, state
from workbench import GRANULARITIES


def _percent(value: float) -> int:
    return round(value * 100)


def _on_layer(layer: str) -> None:
    value = st.session_state[state.widget_key("slider", layer)] / 100
    state.set_plan(state.plan().with_sparsity(layer, value), touched=layer)


def _on_locks() -> None:
    state.set_locks(st.session_state[state.widget_key("locks")])


def _pattern_share() -> float:
    """The sparsity an N:M pattern gives: the plan stores it for a layer the pattern is on."""
    granularity = GRANULARITIES[state.plan().granularity]
    return 1 - granularity.n / granularity.m


def _on_pattern(layer: str) -> None:
    on = st.session_state[state.widget_key("pattern", layer)]
    state.set_plan(
        state.plan().with_sparsity(layer, _pattern_share() if on else 0.0), touched=layer
    )


def _on_global_pattern() -> None:
    bench = loaders.current()
    on = st.session_state[state.widget_key("global-pattern")]
    plan = state.plan()
    free = [n for n in bench.layer_names if n not in state.locks()]
    sparsity = dict(plan.sparsity)
    sparsity.update({n: _pattern_share() if on else 0.0 for n in free})
    state.set_plan(plan.replace(sparsity=sparsity), touched=free[-1] if free else None)


def _on_global() -> None:
    bench = loaders.current()
    value = st.session_state[state.widget_key("global")] / 100
    plan = state.plan()
    free = [n for n in bench.layer_names if n not in state.locks()]
    sparsity = dict(plan.sparsity)
    sparsity.update({n: value for n in free})
    state.set_plan(plan.replace(sparsity=sparsity), touched=free[-1] if free else None)


def _on_option(field: str) -> None:
    value = st.session_state[state.widget_key(field)]
    if value is None:  # a choice cleared (a second click): keep the plan; the widget resyncs
        return
    state.set_plan(state.plan().replace(**{field: value}))


def _reset() -> None:
    state.set_plan(state.plan().replace(sparsity={}))


def _sync_widgets() -> None:
    """Widgets show the plan: it may have changed on another page, by URL or by a reset.

    Only differing values are written: writing a widget's state overrides the browser's value,
    which would undo key presses made while a rerun was in flight.
    """
    bench = loaders.current()
    plan = state.plan()
    wanted = {
        state.widget_key(field): getattr(plan, field)
        for field in ("method", "granularity", "scope")
    }
    for layer in bench.layer_names:
        wanted[state.widget_key("slider", layer)] = _percent(plan.sparsity.get(layer, 0.0))
        wanted[state.widget_key("pattern", layer)] = plan.sparsity.get(layer, 0.0) > 0
    wanted[state.widget_key("locks")] = [n for n in bench.layer_names if n in state.locks()]
    free_layers = [n for n in bench.layer_names if n not in state.locks()]
    wanted[state.widget_key("global-pattern")] = bool(free_layers) and all(
        plan.sparsity.get(n, 0.0) > 0 for n in free_layers
    )
    free = {plan.sparsity.get(n, 0.0) for n in bench.layer_names if n not in state.locks()}
    if len(free) == 1:
        wanted[state.widget_key("global")] = _percent(free.pop())
    else:
        wanted.setdefault(
            state.widget_key("global"), st.session_state.get(state.widget_key("global"), 0)
        )
    for key, value in wanted.items():
        if st.session_state.get(key) != value:
            st.session_state[key] = value
