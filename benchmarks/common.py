"""What the engine and sensitivity benchmarks share: how a run starts (its one switch and the
machine it runs on), the workloads they time, and the lower bound of an exact evaluation
(`SuffixForward`)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import workbench as wb  # noqa: E402
from benchmarks.workloads import scale_workload  # noqa: E402
from workbench.evaluate.graph import GraphRunner  # noqa: E402

BATCH_SIZE = 512  # the engine's default, used by every measurement


def start_run(doc: str, quick: str) -> bool:
    """Read the one switch, --quick (`quick` says what it cuts), and print the machine and its
    load; True for a quick run."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {platform.system()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    return bool(args.quick)


def workloads() -> Iterator[tuple[str, nn.Module, Tensor, Tensor]]:
    """Every demo, then the scale workload: name, model, validation inputs and targets."""
    for name in wb.list_demos():
        demo = wb.load_demo(name)
        inputs, targets = demo.val.tensors
        yield name, demo.model, inputs, targets
    model, (inputs, targets) = scale_workload()
    yield "scale-resnet", model, inputs, targets


class SuffixForward:
    """The lower bound: a forward of the part of the graph from a layer's cut to the output.

    An exact evaluation of a plan that changes one layer must run at least everything that reads
    that layer's output, on every validation sample. This times exactly that with the engine's
    `GraphRunner` on the workbench's own model (the same node-by-node execution, from the live
    set at the cut, with the masked weight) and nothing else: no plan resolution, mask building,
    metrics or size accounting. The runner's per-node Python cost is in the bound too.
    """

    def __init__(self, bench: wb.Workbench, layer: str, inputs: Tensor) -> None:
        self.bench, self.layer = bench, layer
        self.runner = graph_runner(bench)
        self.cut = self.runner.cuts[layer]
        self.weight_name = next(p.weight_name for p in bench.prunable_layers if p.name == layer)
        with torch.no_grad():  # the live sets at the cut; the plan changes nothing before it
            self.live = [
                self.runner.run({"input": batch}, 0, self.cut, {}) if self.cut else {"input": batch}
                for batch in inputs.to(bench.device).split(BATCH_SIZE)
            ]

    def __call__(self, plan: wb.PruningPlan) -> float:
        """Milliseconds of one pass over every sample, the layer masked as the plan says."""
        mask = self.bench.masks(plan)[self.layer]
        weights = {self.weight_name: self.bench.dense_weight(self.layer) * mask}
        start = time.perf_counter()
        with torch.no_grad():
            for env in self.live:
                self.runner.run(env, self.cut, self.runner.end, weights)
        return (time.perf_counter() - start) * 1000


def graph_runner(bench: wb.Workbench) -> GraphRunner:
    """A graph runner over the workbench's model and prunable layers, as the engine builds it
    (its first batch is the example a model torch.fx cannot trace is exported with)."""
    example = bench.val_inputs[:BATCH_SIZE]
    return GraphRunner(bench.model, bench.prunable_layers, example=example)


#: The real pretrained demo: a 22.6M-parameter transformer (timed apart: it is slow to run).
TEXT_DEMO = "minilm-topics"


def text_workload() -> tuple[str, nn.Module, Tensor, Tensor] | None:
    """The pretrained text demo's name, model, validation inputs and targets; None when its
    requirements (transformers, the weights package) are not installed."""
    try:
        demo = wb.load_demo(TEXT_DEMO)
    except wb.WorkbenchError as error:
        print(f"\n{TEXT_DEMO} skipped: {error}")
        return None
    inputs, targets = demo.val.tensors
    return TEXT_DEMO, demo.model, inputs, targets
