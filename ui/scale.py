"""The app's Ray setting (the scale extra), where scans and searches are started: off by
default (in this process); on, the work runs as Ray tasks whose workers build their own
workbench of the current demo."""

from __future__ import annotations

from typing import Any

from ui import state
from workbench.scale import RayRunner, Recipe, ray_available


def runner(where: Any, kind: str) -> RayRunner | None:
    """A "Run on Ray" toggle and the cluster's address (`where`: `st` or a column); the
    runner when it is on, else None. Not offered without ray, nor for an upload: its files
    live in this session only, and a worker could not build it."""
    if not ray_available():
        return None
    upload = state.demo() in state.uploads()
    on = where.toggle(
        "Run on Ray", key=state.widget_key(f"ray-{kind}"), disabled=upload,
        help="Spread the work over a Ray cluster's CPUs, each worker building its own copy of "
        "this demo. Off: here, in this process."
        + (" Uploads stay in this session, so they run here." if upload else ""),
    )  # fmt: skip
    if not on or upload:
        return None
    address = where.text_input(
        "Ray address", key=state.widget_key(f"ray-address-{kind}"), placeholder="local",
        help="A running cluster (auto, ray://host:10001); empty: a local Ray instance on this "
        "server, started once.",
    )  # fmt: skip
    return RayRunner(Recipe(demo=state.demo()), address.strip() or None)
