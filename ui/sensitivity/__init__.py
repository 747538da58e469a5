"""Sections of the Sensitivity page: the scan, its views, the budget form and the proposals."""

from __future__ import annotations

from dataclasses import dataclass

from ui import state
from workbench import Workbench
from workbench.plots import is_percent


@dataclass(frozen=True)
class Context:
    """The model's key and its engine: what every section reads."""

    name: str
    bench: Workbench

    @property
    def n_samples(self) -> int:
        return int(self.bench.dense_outputs.shape[0])


def key(kind: str) -> str:
    return state.widget_key(f"sensitivity-{kind}")


def drop_text(metric: str, drop: float) -> str:
    """A drop in the metric's display units (points for percentages)."""
    if is_percent(metric):
        return f"{drop * 100:.2f} pp"
    return f"{drop:.4f}"
