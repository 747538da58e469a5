"""What an evaluation returns: pruned and dense metrics, size, per-layer and per-class detail."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.pruning.plan import PruningPlan


@dataclass(frozen=True)
class Report:
    plan: PruningPlan
    task: str
    metrics: dict[str, float]
    dense_metrics: dict[str, float]
    size: dict[str, float]
    dense_size: dict[str, float]
    layers: pd.DataFrame  # one row per prunable layer: sparsity, removed, nonzero, ...
    class_names: list[str] = field(default_factory=list)
    confusion: np.ndarray | None = None  # [true, predicted] counts, classification only
    dense_confusion: np.ndarray | None = None
    #: What the engine did differently from the plan's letter, and why (e.g. an output layer
    #: that channel pruning leaves dense).
    notes: list[str] = field(default_factory=list)

    def delta(self, metric: str) -> float:
        """Pruned minus dense value of a metric."""
        return self.metrics[metric] - self.dense_metrics[metric]

    @property
    def per_class(self) -> pd.DataFrame | None:
        """Accuracy (recall) of each class, dense and pruned; None for regression."""
        if self.confusion is None or self.dense_confusion is None:
            return None
        support = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            pruned = np.diag(self.confusion) / support
            dense = np.diag(self.dense_confusion) / support
        names = self.class_names or [str(i) for i in range(len(support))]
        return pd.DataFrame(
            {"class": names, "support": support, "dense_accuracy": dense, "accuracy": pruned}
        )

    def to_dict(self) -> dict:
        """A JSON-ready summary (the CLI prints this)."""
        return {
            "plan": self.plan.to_dict(),
            "task": self.task,
            "metrics": _json_safe(self.metrics),
            "dense_metrics": _json_safe(self.dense_metrics),
            "size": self.size,
            "dense_size": self.dense_size,
            "notes": list(self.notes),
            # Missing values (e.g. no method for a dense layer) as null: strict JSON has no NaN.
            "layers": self.layers.astype(object).where(self.layers.notna(), None).to_dict(
                orient="records"
            ),
        }


def _json_safe(values: dict[str, float]) -> dict[str, float | None]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}
