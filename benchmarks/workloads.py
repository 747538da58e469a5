"""Workloads shared by the benchmarks. The scale workload lives in the core
(`workbench.models.synthetic`, also the app's `scale-resnet` demo); run this file to see it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from workbench.models.synthetic import (  # noqa: E402
    DEMO_SEED,
    SCALE_SAMPLES,
    ScaleResNet,
    scale_workload,
)

__all__ = ["DEMO_SEED", "SCALE_SAMPLES", "ScaleResNet", "scale_workload"]


if __name__ == "__main__":
    start = time.perf_counter()
    model, (x, y) = scale_workload()
    built = time.perf_counter() - start
    with torch.no_grad():
        start = time.perf_counter()
        logits = torch.cat([model(batch) for batch in x.split(512)])
        forward = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    accuracy = (logits.argmax(dim=1) == y).double().mean().item()
    classes = torch.bincount(logits.argmax(dim=1), minlength=10).tolist()
    print(f"scale workload: {params:,} parameters, {len(y)} samples of {tuple(x.shape[1:])}")
    print(f"built in {built:.2f} s; forward of all samples (batch 512) in {forward:.2f} s")
    print(f"dense accuracy {accuracy:.3f}; predicted classes {classes}")
