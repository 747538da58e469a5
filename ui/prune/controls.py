"""The Prune page's layer controls: the global control, then a lock and a control per layer."""

from __future__ import annotations

import streamlit as st

from ui import loaders, state
from ui.prune.callbacks import (
    _on_global,
    _on_global_pattern,
    _on_layer,
    _on_lock,
    _on_pattern,
)
from ui.text import plain
from workbench import GRANULARITIES, PruningPlan, Report


def _layer_controls(plan: PruningPlan, report: Report | None, global_scope: bool) -> None:
    """The global control, then a lock and a control per layer."""
    granularity = GRANULARITIES[plan.granularity]
    pattern = not granularity.ranks_globally  # N:M: a layer has the pattern or not
    if pattern:
        st.toggle(
            f"**All unlocked layers** · {granularity.name} pattern",
            key=state.widget_key("global-pattern"),
            on_change=_on_global_pattern,
            help=f"Puts the {granularity.name} pattern on every unlocked layer: "
            f"{1 - granularity.n / granularity.m:.0%} of each group of {granularity.m} weights "
            "removed.",
        )
    else:
        st.slider(
            "**All unlocked layers**",
            0,
            100,
            step=1,
            format="%d%%",
            key=state.widget_key("global"),
            on_change=_on_global,
            help="Sets every unlocked layer to the same sparsity.",
        )
    if global_scope:
        st.caption(
            "Global scope: the unlocked layers are ranked together, so each layer's real cut "
            "(under its slider) differs from the target the sliders set."
        )
    if pattern:
        st.caption(
            f"{granularity.name}: a layer has the pattern ({1 - granularity.n / granularity.m:.0%}"
            f" of each group of {granularity.m} weights removed) or is dense."
        )
    real = (
        {}
        if report is None
        else dict(zip(report.layers["name"], report.layers["sparsity"], strict=True))
    )
    bench = loaders.current()
    # Under `group` a coupled group's other members follow its leader's slider.
    groups = bench.channel_groups if plan.granularity == "group" else None
    followers = groups.followers if groups is not None else {}
    blocked = []
    for row in bench.layers.itertuples():
        channel_ok = bool(getattr(row, "channel_prunable", True))
        off_limits = granularity.structured and not channel_ok
        leader = followers.get(row.name)
        if off_limits:
            blocked.append(row.name)
        lock_col, control_col = st.columns([0.1, 0.9], vertical_alignment="center")
        lock_col.checkbox(
            f"Lock {row.name}",
            key=state.widget_key("lock", row.name),
            on_change=_on_lock,
            args=(row.name,),
            label_visibility="collapsed",
        )
        label = f"{row.name} · {row.kind} {row.shape}"
        if pattern:
            control_col.toggle(
                label,
                key=state.widget_key("pattern", row.name),
                on_change=_on_pattern,
                args=(row.name,),
            )
        else:
            control_col.slider(
                label,
                0,
                100,
                step=1,
                format="%d%%",
                key=state.widget_key("slider", row.name),
                on_change=_on_layer,
                args=(row.name,),
                disabled=off_limits
                or leader is not None
                or (global_scope and row.name in state.locks()),
            )
        group = groups.of(row.name) if groups is not None else None
        if leader is not None:
            control_col.caption(
                f"Its {groups.of(row.name).unit}s go with {_short(leader, row.name)}'s: "
                "that slider cuts its group"
            )
        elif group is not None and len(group.names) > 1:
            control_col.caption(
                f"Leads a group of {group.channels} {group.unit}s: "
                f"{', '.join(_short(n, row.name) for n in group.names[1:])} lose the same "
                f"{group.unit}s"
            )
        if global_scope and row.name in real and not off_limits and leader is None:
            control_col.caption(f"Real cut: {real[row.name]:.1%}")
    if blocked:
        st.caption(
            plain(
                f"{', '.join(blocked)}: the output layer's channels are the model's outputs "
                f"(classes or targets), so {granularity.label.lower()} pruning leaves it dense; "
                "prune it unstructured instead."
            )
        )
    st.caption("Tick a box to lock a layer: the global control leaves it alone.")


def _short(name: str, beside: str) -> str:
    """`name` without the dotted prefix it shares with `beside` (a block's key beside its
    query: "key")."""
    parts, other = name.split("."), beside.split(".")
    shared = 0
    while shared < min(len(parts), len(other)) - 1 and parts[shared] == other[shared]:
        shared += 1
    return ".".join(parts[shared:])
