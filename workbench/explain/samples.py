"""Which validation samples to explain: by class, or the ones a pruning plan broke."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.explain._common import plan_key
from workbench.pruning.plan import PruningPlan

if TYPE_CHECKING:
    from workbench.evaluate.workbench import Workbench


def sample_table(bench: Workbench, plan: PruningPlan | None = None) -> pd.DataFrame:
    """One row per validation sample: its label and the dense and pruned predictions.

    Classifiers: `label`, `dense`, `pruned` (classes), their confidences, `dense_correct`,
    `pruned_correct`, `changed` (the plan changed the prediction). Regressors: `label`, `dense`,
    `pruned` (values), `dense_error`, `pruned_error` (absolute) and `error_increase`.
    Without labels, label and correctness columns are missing values.
    """
    dense = bench.dense_outputs.detach().double().cpu()
    pruned = bench.outputs(plan_key(plan)).detach().double().cpu()
    n = len(dense)
    labels = None if bench.targets is None else bench.targets.detach().cpu().numpy()
    table = pd.DataFrame({"index": np.arange(n)})
    if bench.task == "classification":
        dense_p, pruned_p = dense.softmax(dim=1), pruned.softmax(dim=1)
        table["label"] = pd.array(labels if labels is not None else [None] * n, dtype="Int64")
        table["dense"] = dense.argmax(dim=1).numpy()
        table["pruned"] = pruned.argmax(dim=1).numpy()
        table["dense_confidence"] = dense_p.max(dim=1).values.numpy()
        table["pruned_confidence"] = pruned_p.max(dim=1).values.numpy()
        table["dense_correct"] = pd.array(
            table["dense"] == table["label"] if labels is not None else [None] * n,
            dtype="boolean",
        )
        table["pruned_correct"] = pd.array(
            table["pruned"] == table["label"] if labels is not None else [None] * n,
            dtype="boolean",
        )
        table["changed"] = table["dense"] != table["pruned"]
        return table
    table["label"] = labels.astype(float) if labels is not None else np.nan
    table["dense"] = dense.reshape(n).numpy()
    table["pruned"] = pruned.reshape(n).numpy()
    table["dense_error"] = (table["dense"] - table["label"]).abs()
    table["pruned_error"] = (table["pruned"] - table["label"]).abs()
    table["error_increase"] = table["pruned_error"] - table["dense_error"]
    return table


def broken_by_plan(
    bench: Workbench, plan: PruningPlan | None, limit: int | None = None
) -> list[int]:
    """Samples the plan gets wrong, those the dense model got right first.

    Without labels: samples whose prediction the plan changed. Regressors: samples whose error
    the plan increased, largest increase first.
    """
    table = sample_table(bench, plan)
    if bench.task == "classification":
        if bench.targets is None:
            chosen = table[table["changed"]]
        else:
            wrong = table[~table["pruned_correct"].astype(bool)]
            # Newly broken first (dense right), each group by how sure the pruned model is.
            chosen = wrong.sort_values(
                ["dense_correct", "pruned_confidence"], ascending=[False, False], kind="stable"
            )
    elif bench.targets is None:
        change = (table["pruned"] - table["dense"]).abs()
        chosen = table.assign(change=change)[change > 0].sort_values(
            "change", ascending=False, kind="stable"
        )
    else:
        chosen = table[table["error_increase"] > 0].sort_values(
            "error_increase", ascending=False, kind="stable"
        )
    indices = chosen["index"].astype(int).tolist()
    return indices if limit is None else indices[:limit]


def samples_of_class(bench: Workbench, label: int, limit: int | None = None) -> list[int]:
    """Validation samples whose true class (the dense prediction without labels) is `label`."""
    if bench.task != "classification":
        raise ValueError("samples by class need a classifier")
    truth = (
        bench.targets if bench.targets is not None else bench.dense_outputs.argmax(dim=1)
    ).cpu()
    indices = (truth == label).nonzero().reshape(-1).tolist()
    return indices if limit is None else indices[:limit]
