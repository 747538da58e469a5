"""How a metric reads on a chart or a card: its label, and its value as text."""

from __future__ import annotations

from workbench.evaluate.metrics import METRICS


def metric_label(name: str) -> str:
    metric = METRICS.get(name)
    return metric.label if metric else name


def is_percent(name: str) -> bool:
    """Whether a metric is shown as a percentage (its drops then read in points)."""
    metric = METRICS.get(name)
    return bool(metric and metric.is_percentage)


def format_metric(name: str, value: float) -> str:
    if is_percent(name):
        return f"{value:.2%}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"


def format_bytes(n: float) -> str:
    """A byte count as people read it: B, KB, MB or GB (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


def format_delta(name: str, value: float) -> str:
    if is_percent(name):
        return f"{value * 100:+.2f} pp"
    return f"{value:+.4f}" if abs(value) < 100 else f"{value:+,.1f}"
