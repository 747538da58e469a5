"""Ship: the physically smaller model a plan implies, its measured latency, and its exports."""

from __future__ import annotations

from workbench.ship.compact import ChannelScatter, ChannelSelect, Compacted, compact
from workbench.ship.export import (
    EXPORT_FORMATS,
    MASK_PREFIX,
    export,
    export_bytes,
    export_formats,
    read_plan,
    restore_torch_prune,
)
from workbench.ship.latency import Latency, latency, latency_table, onnxruntime_available
from workbench.ship.measure import plan_latency
from workbench.ship.quantize import INT8_SCHEME, Quantized, int8_available, quantize, read_int8

__all__ = [
    "ChannelScatter",
    "ChannelSelect",
    "Compacted",
    "EXPORT_FORMATS",
    "INT8_SCHEME",
    "MASK_PREFIX",
    "Latency",
    "Quantized",
    "compact",
    "export",
    "export_bytes",
    "export_formats",
    "int8_available",
    "latency",
    "latency_table",
    "onnxruntime_available",
    "plan_latency",
    "quantize",
    "read_int8",
    "read_plan",
    "restore_torch_prune",
]
