"""Tables that compare recoveries: the runs side by side, and what each class won back."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from workbench.evaluate import Report
from workbench.evaluate.metrics import PRIMARY_METRIC
from workbench.recover.finetune import Recovery


def runs_table(one_shot: Report, runs: Sequence[tuple[str, Recovery]]) -> pd.DataFrame:
    """One row per model: one-shot first, then each run; the headline metric, its change
    against dense and against one-shot, the step kept, how the run ended and its seconds."""
    metric = PRIMARY_METRIC[one_shot.task]
    dense = one_shot.dense_metrics[metric]
    rows = [
        {"run": "one-shot", metric: one_shot.metrics[metric], "best_step": 0,
         "stopped": "", "seconds": 0.0}
    ]  # fmt: skip
    rows += [
        {"run": label, metric: run.report.metrics[metric], "best_step": run.best_step,
         "stopped": run.stopped, "seconds": run.seconds}
        for label, run in runs
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    table["vs_dense"] = table[metric] - dense
    table["vs_one_shot"] = table[metric] - one_shot.metrics[metric]
    return table


def per_class_change(one_shot: Report, recovered: Report) -> pd.DataFrame | None:
    """Each class's accuracy: dense, one-shot, recovered, and the change recovery made."""
    before, after = one_shot.per_class, recovered.per_class
    if before is None or after is None:
        return None
    table = before.rename(columns={"accuracy": "one_shot"})
    table["recovered"] = after["accuracy"].to_numpy()
    table["change"] = table["recovered"] - table["one_shot"]
    return table
