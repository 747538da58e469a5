"""Recovery benchmark: how much accuracy fine-tuning, distillation and gradual pruning win back.

For `digits-mlp` (LeNet-300-100) at 90 % global L1 and `digits-cnn` at 80 % global L1: the
dense and one-shot accuracies, then each recovery's accuracy, its gap to dense and its wall time
on this machine. Goal: digits-mlp within 0.5 pp of dense in under 60 s, digits-cnn within 1 pp.

    python benchmarks/recover.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script

import workbench as wb  # noqa: E402
from benchmarks.common import start_run  # noqa: E402

#: The settings each recovery runs with (the README's table quotes them).
SETTINGS = {"epochs": 15, "lr": 3e-3, "batch_size": 32, "patience": None}
RECOVERIES = {
    "fine-tune": {},
    "fine-tune + distillation (α 0.5, T 2)": {"distill": 0.5, "temperature": 2.0},
    "gradual AGP + fine-tune": {"schedule": wb.Schedule.agp()},
}
CASES = (("digits-mlp", 0.9, 0.5), ("digits-cnn", 0.8, 1.0))  # demo, sparsity, goal in pp


def main() -> None:
    quick = start_run(__doc__, "5 epochs instead of 15")
    settings = {**SETTINGS, "epochs": 5} if quick else SETTINGS
    print(f"settings: {settings}, seed 0")
    for name, sparsity, goal in CASES:
        demo = wb.load_demo(name)
        bench = wb.Workbench(demo.model, demo.val)
        plan = wb.PruningPlan.uniform(bench.layer_names, sparsity, scope="global")
        dense = bench.dense_metrics["accuracy"]
        one_shot = bench.evaluate(plan).metrics["accuracy"]
        print(f"\n{name} at {sparsity:.0%} global L1 (goal: within {goal} pp of dense)")
        print(f"  {'':42} {'accuracy':>9} {'vs dense':>9} {'seconds':>8}")
        print(f"  {'dense':42} {dense:9.2%}")
        print(f"  {'one-shot':42} {one_shot:9.2%} {(one_shot - dense) * 100:+8.2f}pp")
        for label, options in RECOVERIES.items():
            start = time.perf_counter()
            run = wb.finetune(bench, plan, demo.train, **settings, **options)
            seconds = time.perf_counter() - start
            accuracy = run.report.metrics["accuracy"]
            mark = "ok" if dense - accuracy <= goal / 100 else "short"
            print(
                f"  {label:42} {accuracy:9.2%} {(accuracy - dense) * 100:+8.2f}pp "
                f"{seconds:8.1f}  {mark}"
            )


if __name__ == "__main__":
    main()
