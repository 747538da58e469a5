"""Ship benchmark: what channel removal buys in measured latency, and what zeros do not.

For the scale ResNet at 50 % channels (L1, every layer but the classifier) and at 90 %
unstructured (L1): latency of the dense, masked (zeros written) and compacted (`wb.compact`)
models, and with the `export` extra the compacted model with int8 weights (`wb.quantize`:
torchao, weights only; its bytes are the measured safetensors of its tensors, its accuracy a
fresh evaluation) and ONNX Runtime's session, at batch 1 and 64
(`torch.utils.benchmark`, one thread: the figures a shared machine can hold steady, median and
IQR); parameters, bytes, FLOPs per sample and accuracy.
Goals: compacted at 50 % channels ≥ 1.8× faster than dense at batch 64; masked at 90 %
unstructured within 5 % of dense.

    python benchmarks/ship.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script


import torch  # noqa: E402

import workbench as wb  # noqa: E402
from benchmarks.common import start_run  # noqa: E402
from workbench.models.synthetic import scale_workload  # noqa: E402

BATCHES = (1, 64)


def main() -> None:
    quick = start_run(
        __doc__, "500 validation samples and 0.5 s per timing instead of 2000 and 2 s"
    )
    samples, seconds = (500, 0.5) if quick else (2000, 2.0)
    threads = 1
    model, (x, y) = scale_workload(samples)
    bench = wb.Workbench(model, (x, y))
    layers = [n for n in bench.layer_names if n not in bench.output_layers]
    plans = {
        "50 % channels": wb.PruningPlan.uniform(layers, 0.5, granularity="channel"),
        # the same, with coupled channels (residual streams) removed together
        "50 % groups": wb.PruningPlan.uniform(layers, 0.5, granularity="group"),
        "90 % unstructured": wb.PruningPlan.uniform(layers, 0.9),
    }
    print(f"scale ResNet: {samples} validation samples, {threads} threads, {seconds} s a timing")
    print(
        f"{'plan':18} {'model':14} {'batch':>5} {'median ms':>10} {'IQR ms':>8} {'× dense':>8}"
        f" {'params':>10} {'bytes':>11} {'MFLOPs':>7} {'accuracy':>8}"
    )
    goals, notes = {}, []
    for name, plan in plans.items():
        report = bench.evaluate(plan)
        small = wb.compact(bench, plan)
        dense_flops = report.dense_size["flops_dense"]
        figures = {  # params, bytes, FLOPs per sample, accuracy
            "dense": (
                report.dense_size["total_params"],
                report.dense_size["dense_bytes"],
                dense_flops,
                bench.dense_metrics["accuracy"],
            ),
            "masked": (
                report.size["nonzero_params"],
                report.size["sparse_bytes"],
                dense_flops,  # a dense kernel runs every zero
                report.metrics["accuracy"],
            ),
            "compacted": (
                small.params,
                small.dense_bytes,
                small.flops(x[:1]),
                report.metrics["accuracy"],
            ),
        }
        if wb.int8_available():
            quantized = wb.quantize(bench, plan)
            figures["compacted int8"] = (
                small.params,
                quantized.bytes,
                small.flops(x[:1]),
                bench.model_metrics(quantized.model)["accuracy"],
            )
            with torch.no_grad():
                fp32, int8 = bench.outputs(plan), quantized.model(bench.val_inputs)
            agree = float((fp32.argmax(1) == int8.argmax(1)).float().mean())
            notes.append(
                f"{name}: int8 layers {len(quantized.int8_layers)}, fp32 "
                f"{list(quantized.fp32_layers) or 'none'}; outputs off the fp32 compacted model's "
                f"by at most {float((int8 - fp32).abs().max()):.3g} (range "
                f"{float(fp32.abs().max()):.3g}), top-1 the same on {agree:.2%}"
            )
        for batch in BATCHES:
            table = wb.plan_latency(bench, plan, batch, threads, min_run_time=seconds)
            for row in table.itertuples():
                params, size, flops, accuracy = figures.get(row.label, figures["compacted"])
                print(
                    f"{name:18} {row.label:14} {batch:>5} {row.median_s * 1e3:>10.3f}"
                    f" {row.iqr_s * 1e3:>8.3f} {row.speedup:>8.2f} {params:>10,} {size:>11,}"
                    f" {flops / 1e6:>7.1f}"
                    f" {accuracy:>8.2%}"
                )
                goals[(name, row.label, batch)] = row.speedup
    for note in notes:
        print(note)
    compacted = goals[("50 % channels", "compacted", 64)]
    grouped = goals[("50 % groups", "compacted", 64)]
    masked = goals[("90 % unstructured", "masked", 64)]
    print(
        f"goal: compacted at 50 % channels ≥ 1.80× dense at batch 64: {compacted:.2f}×"
        f" ({'met' if compacted >= 1.8 else 'not met'})"
    )
    print(
        f"goal: compacted at 50 % channel groups ≥ 1.80× dense at batch 64: {grouped:.2f}×"
        f" ({'met' if grouped >= 1.8 else 'not met'})"
    )
    print(
        f"goal: masked at 90 % unstructured within 5 % of dense at batch 64: {masked:.2f}×"
        f" ({'met' if abs(1 / masked - 1) <= 0.05 else 'not met'})"
    )


if __name__ == "__main__":
    main()
