"""Ship: the physically smaller model a plan implies, its measured latency, and its exports."""

from __future__ import annotations

from workbench.ship.compact import ChannelScatter, ChannelSelect, Compacted, compact
from workbench.ship.latency import Latency, latency, latency_table, onnxruntime_available

__all__ = [
    "ChannelScatter",
    "ChannelSelect",
    "Compacted",
    "Latency",
    "compact",
    "latency",
    "latency_table",
    "onnxruntime_available",
]
