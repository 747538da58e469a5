"""The Prune page's layer controls: the global control and the layers it leaves alone, then a
control per layer."""

from __future__ import annotations

import streamlit as st

from ui import loaders, state
from ui.prune.callbacks import (
    _on_global,
    _on_global_pattern,
    _on_layer,
    _on_locks,
    _on_pattern,
)
from ui.text import plain
from workbench import GRANULARITIES, PruningPlan, Report


def _layer_controls(plan: PruningPlan, report: Report | None, global_scope: bool) -> None:
    """The global control and the locked layers, then a control per layer. A page draws every
    element again on each slider step, so a layer's row is its control alone (and a caption
    where it has something to say)."""
    granularity = GRANULARITIES[plan.granularity]
    pattern = not granularity.ranks_globally  # N:M: a layer has the pattern or not
    if pattern:
        st.toggle(
            f"All unlocked layers · {granularity.name} pattern",
            key=state.widget_key("global-pattern"),
            on_change=_on_global_pattern,
            help=f"Puts the {granularity.name} pattern on every unlocked layer: "
            f"{1 - granularity.n / granularity.m:.0%} of each group of {granularity.m} weights "
            "removed.",
        )
    else:
        st.slider(
            "All unlocked layers",
            0,
            100,
            step=1,
            format="%d%%",
            key=state.widget_key("global"),
            on_change=_on_global,
            help="Sets every unlocked layer to the same sparsity.",
        )
    bench = loaders.current()
    st.multiselect(
        "Locked layers",
        bench.layer_names,
        key=state.widget_key("locks"),
        on_change=_on_locks,
        placeholder="None: the global control sets every layer",
        help="The global control leaves locked layers alone (and global scope does not rank "
        "them); their own sliders still move them.",
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
    real = (  # each layer's real cut under global scope (the layer table is built lazily)
        dict(zip(report.layers["name"], report.layers["sparsity"], strict=True))
        if global_scope and report is not None
        else {}
    )
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
        label = f"{row.name} · {row.kind} {row.shape}"
        if pattern:
            st.toggle(
                label,
                key=state.widget_key("pattern", row.name),
                on_change=_on_pattern,
                args=(row.name,),
            )
        else:
            st.slider(
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
            st.caption(
                f"Its {groups.of(row.name).unit}s go with {_short(leader, row.name)}'s: "
                "that slider cuts its group"
            )
        elif group is not None and len(group.names) > 1:
            st.caption(
                f"Leads a group of {group.channels} {group.unit}s: "
                f"{', '.join(_short(n, row.name) for n in group.names[1:])} lose the same "
                f"{group.unit}s"
            )
        if global_scope and row.name in real and not off_limits and leader is None:
            st.caption(f"Real cut: {real[row.name]:.1%}")
    if blocked:
        st.caption(
            plain(
                f"{', '.join(blocked)}: the output layer's channels are the model's outputs "
                f"(classes or targets), so {granularity.label.lower()} pruning leaves it dense; "
                "prune it unstructured instead."
            )
        )


def _short(name: str, beside: str) -> str:
    """`name` without the dotted prefix it shares with `beside` (a block's key beside its
    query: "key")."""
    parts, other = name.split("."), beside.split(".")
    shared = 0
    while shared < min(len(parts), len(other)) - 1 and parts[shared] == other[shared]:
        shared += 1
    return ".".join(parts[shared:])
