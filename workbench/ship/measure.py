"""Latency of a plan's models side by side: dense, masked (zeros), compacted, compacted int8,
ONNX Runtime."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.evaluate import Workbench
from workbench.pruning.plan import PruningPlan
from workbench.ship.compact import compact, plain
from workbench.ship.export import export, onnx_runner
from workbench.ship.latency import latency_table, onnxruntime_available
from workbench.ship.quantize import int8_available, quantize


def plan_latency(
    bench: Workbench,
    plan: PruningPlan,
    batch_size: int = 1,
    threads: int | None = None,
    *,
    model: Any = None,
    **options: Any,
) -> pd.DataFrame:
    """One row each for the dense, masked and compacted models (and, when the `export` extra is
    installed, the compacted model with int8 weights and ONNX Runtime's session of the exported
    one) on `batch_size` validation samples; `speedup` is against dense. `model`: a trained
    copy of the pruned model instead."""
    if not 1 <= batch_size <= len(bench.val_inputs):
        raise WorkbenchError(
            f"batch size must be between 1 and {len(bench.val_inputs)} (the validation samples)"
        )
    masked = plain(model) if model is not None else bench.pruned_model(plan)
    models: dict[str, Any] = {"dense": bench.model, "masked": masked}
    # A graph program has no compacted row (the app says why where it offers compaction).
    with contextlib.suppress(WorkbenchError):
        models["compacted"] = compact(bench, plan, model).model
        if int8_available() and bench.device.type == "cpu":  # torchao's int8 here is CPU's
            models["compacted int8"] = quantize(bench, plan, model).model
    sample = bench.val_inputs[:batch_size]
    if not onnxruntime_available():
        return latency_table(models, sample, threads, **options)
    with tempfile.TemporaryDirectory() as folder:
        path = export(bench, plan, Path(folder) / "model.onnx", model=model)
        models["onnxruntime"] = onnx_runner(path, threads)
        return latency_table(models, sample.cpu(), threads, **options)
