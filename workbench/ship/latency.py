"""Measured latency: `torch.utils.benchmark` with fixed threads, a warm-up, median and IQR.

Zeros are not speed: a masked model runs the dense kernels, so only a physically smaller model
(`wb.compact`) or a runtime that exploits the zeros is faster. This module measures; it never
asserts a speed (the benchmarks do).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from torch.utils import benchmark

from workbench.errors import WorkbenchError

#: Calls before timing starts: lazy initialisation, allocator and cache warm-up.
WARMUP_CALLS = 3
#: Seconds of timed calls per measurement (blocked_autorange stops after this much).
MIN_RUN_TIME = 0.5


@dataclass(frozen=True)
class Latency:
    """One measurement: seconds per call of `model(sample)`."""

    label: str
    median_s: float
    iqr_s: float  # interquartile range of the runs, seconds
    runs: int  # timed blocks (each the mean of several calls)
    batch: int
    threads: int

    @property
    def per_sample_s(self) -> float:
        return self.median_s / max(self.batch, 1)


def latency(
    model: Any,
    sample: torch.Tensor,
    threads: int | None = None,
    *,
    label: str = "model",
    warmup: int = WARMUP_CALLS,
    min_run_time: float = MIN_RUN_TIME,
) -> Latency:
    """Median and IQR of `model(sample)` under `torch.no_grad`, on `threads` threads
    (default: torch's current count). `model` is a module, a callable (an ONNX Runtime
    session's runner) or anything with a `.model` (what `wb.compact` returns)."""
    model = getattr(model, "model", model)
    if not callable(model):
        raise WorkbenchError(f"latency needs a model to call, got {type(model).__name__}")
    if threads is not None and threads < 1:
        raise WorkbenchError(f"threads must be at least 1, got {threads}")
    threads = threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # The timer runs its statement in this thread, under this grad mode. (A `with` inside
        # the statement leaves grad mode off after the timer: its template cuts the block.)
        with torch.no_grad():
            for _ in range(warmup):
                model(sample)
            timer = benchmark.Timer(
                stmt="model(sample)",
                globals={"model": model, "sample": sample},
                num_threads=threads,
                label=label,
            )
            measured = timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        torch.set_num_threads(previous)
    return Latency(
        label=label,
        median_s=float(measured.median),
        iqr_s=float(measured.iqr),
        runs=len(measured.times),
        batch=int(sample.shape[0]) if sample.dim() else 1,
        threads=threads,
    )


def onnxruntime_available() -> bool:
    """Whether the optional `export` extra (onnx, onnxscript, onnxruntime) is installed."""
    modules = ("onnx", "onnxscript", "onnxruntime")
    return all(importlib.util.find_spec(m) is not None for m in modules)


def latency_table(
    models: dict[str, Any], sample: torch.Tensor, threads: int | None = None, **options: Any
) -> pd.DataFrame:
    """One row per model ({label: model}), measured in turn on the same sample and threads;
    `speedup` is relative to the first row."""
    rows = [asdict(latency(m, sample, threads, label=k, **options)) for k, m in models.items()]
    table = pd.DataFrame(rows)
    table["speedup"] = table["median_s"].iloc[0] / table["median_s"]
    return table
