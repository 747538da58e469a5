"""Layer-importance tables: the time to compute one, against Captum called layer by layer.

A table has one row per (layer, channel) of every prunable layer. For each demo and the scale
workload (`benchmarks/workloads.py`), and each method, this prints the time of

- engine: `workbench.explain.layer_importance`: forward hooks on every layer at once, one
  backward pass per batch (per chunk of path points for conductance) for all of them;
- captum: Captum's LayerConductance / LayerGradientXActivation / LayerActivation, called once
  per layer on the same batches and targets, as its documentation shows;

(medians of three runs) the ratio captum / engine, and the largest relative difference between the two tables (they
must agree to float32 rounding). Conductance uses the attribution criterion's settings
(16 steps; at most 512 samples), the other methods every validation sample; the scale workload
uses a subset (`--scale-samples`) because Captum's conductance over 21 layers takes minutes.

    .venv/bin/python benchmarks/importance.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script

import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum.attr import (  # noqa: E402
    LayerActivation,
    LayerConductance,
    LayerGradientXActivation,
)

import workbench as wb  # noqa: E402
import workbench.explain as ex  # noqa: E402
from benchmarks.workloads import scale_workload  # noqa: E402
from workbench.explain._common import subset_indices  # noqa: E402

METHODS = ("conductance", "gradient_x_activation", "activation")
CACHE_BYTES = 4 << 30  # room for the scale workload's live sets, as benchmarks/engine.py
REPEATS = 3  # medians: a shared machine's load comes and goes


def captum_table(
    bench: wb.Workbench, method: str, indices: tuple[int, ...], n_steps: int
) -> dict[str, np.ndarray]:
    """The baseline: Captum's layer method, one layer at a time, on the engine's batches."""
    model = bench.model
    x_all = bench.val_inputs[list(indices)]
    classification = bench.task == "classification"
    totals: dict[str, np.ndarray] = {}
    for layer in bench.prunable_layers:
        module = model.get_submodule(layer.name)
        total = torch.zeros(layer.channels, dtype=torch.float64)
        for x in x_all.split(bench.batch_size):
            with torch.no_grad():
                target = model(x).argmax(dim=1) if classification else None
            if method == "conductance":
                attr = LayerConductance(model, module).attribute(
                    x.clone().requires_grad_(True),
                    target=target,
                    n_steps=n_steps,
                    # Captum needs room for two path points of every sample.
                    internal_batch_size=max(bench.batch_size, 2 * len(x)),
                )
            elif method == "gradient_x_activation":
                attr = LayerGradientXActivation(model, module).attribute(
                    x.clone().requires_grad_(True), target=target
                )
            else:
                attr = LayerActivation(model, module).attribute(x)
            values = attr.detach().abs().double()
            if layer.kind == "Linear":
                values = values.movedim(-1, 1)
            total += values.reshape(values.shape[0], values.shape[1], -1).sum(dim=2).sum(dim=0)
        totals[layer.name] = (total / len(indices)).numpy()
    return totals


def measure(name: str, bench: wb.Workbench, method: str, samples: int | None, n_steps: int) -> None:
    indices = subset_indices(samples, int(bench.dense_outputs.shape[0]))
    ex.layer_importance(bench, method, samples=[0], n_steps=2)  # the private model copy, warm
    engine_times, baseline_times = [], []
    for _ in range(REPEATS):
        ex.clear_cache(bench)  # results are cached: time the computation, not the lookup
        start = time.perf_counter()
        table = ex.layer_importance(bench, method, samples=list(indices), n_steps=n_steps)
        engine_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = captum_table(bench, method, indices, n_steps)
        baseline_times.append(time.perf_counter() - start)
    engine, baseline = statistics.median(engine_times), statistics.median(baseline_times)
    worst = 0.0
    for layer, expected in reference.items():
        got = table.loc[table["layer"] == layer, "importance"].to_numpy()
        worst = max(worst, float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-30)))
    steps = f"{n_steps} steps" if method == "conductance" else "-"
    print(
        f"{name:<20} {method:<22} {len(bench.layer_names):>6} {len(table):>8} {len(indices):>7} "
        f"{steps:>9} {engine:>9.3f} {baseline:>9.3f} {baseline / engine:>6.1f}x {worst:>9.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, fewer models")
    parser.add_argument(
        "--scale-samples",
        type=int,
        default=32,
        help="validation samples of the scale workload (default 32)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()} {platform.system()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    header = (
        f"{'model':<20} {'method':<22} {'layers':>6} {'rows':>8} {'samples':>7} {'steps':>9} "
        f"{'engine s':>9} {'captum s':>9} {'ratio':>7} {'max rel':>9}"
    )
    print(header)
    print("-" * len(header))

    model, data = scale_workload()
    bench = wb.Workbench(model, data, cache_bytes=CACHE_BYTES)
    scale_samples = 8 if args.quick else args.scale_samples
    for method in METHODS:
        measure("scale-resnet", bench, method, scale_samples, ex.CRITERION_STEPS)
    del bench

    demos = wb.list_demos()[:2] if args.quick else wb.list_demos()
    for name in demos:
        demo = wb.load_demo(name)
        bench = wb.Workbench(demo.model, demo.val)
        for method in METHODS:
            samples = ex.CRITERION_SAMPLES if method == "conductance" else None
            measure(name, bench, method, 64 if args.quick else samples, ex.CRITERION_STEPS)


if __name__ == "__main__":
    main()
