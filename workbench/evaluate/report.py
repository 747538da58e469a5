"""What an evaluation returns: pruned and dense metrics, size, per-layer and per-class detail."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.evaluate.lazy import Lazy, resolve
from workbench.pruning.plan import PruningPlan

_NO_DEFAULT = object()


class _LazyField:
    """A dataclass field given either its value or a `Lazy` of it: the first read builds it.
    The engine hands out reports whose tables only a view asks for this way."""

    def __init__(self, default: Any = _NO_DEFAULT) -> None:
        self._default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # dataclasses read the default here
            if self._default is _NO_DEFAULT:
                raise AttributeError("no default")
            return self._default
        return resolve(obj.__dict__[self._slot])

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value

    def given(self, obj: Any) -> Any:
        """The value or `Lazy` as given, without building it."""
        return obj.__dict__[self._slot]


@dataclass(frozen=True)
class Report:
    plan: PruningPlan
    task: str
    metrics: dict[str, float]
    dense_metrics: dict[str, float]
    size: Mapping[str, float]  # read-only (`size.Figures`); compressed_bytes computed on read
    dense_size: Mapping[str, float]
    # One row per prunable layer: sparsity, removed, nonzero, ... (built when first read).
    layers: pd.DataFrame = _LazyField()  # type: ignore[assignment]
    class_names: list[str] = field(default_factory=list)
    # [true, predicted] counts, classification only (built when first read).
    confusion: np.ndarray | None = _LazyField(None)  # type: ignore[assignment]
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
            "size": dict(self.size),
            "dense_size": dict(self.dense_size),
            "notes": list(self.notes),
            # Missing values (e.g. no method for a dense layer) as null: strict JSON has no NaN.
            "layers": self.layers.astype(object)
            .where(self.layers.notna(), None)
            .to_dict(orient="records"),
        }


def lazy_copy(report: Report, **changes: Any) -> Report:
    """A copy of `report` with `changes`, whose layer table and confusion matrix are copies of
    the original's made when first read (the caller may modify them)."""
    fields: dict[str, Any] = {}
    for name in ("layers", "confusion"):
        given = Report.__dict__[name].given(report)
        if isinstance(given, Lazy):
            fields[name] = Lazy(lambda name=name: _copy(getattr(report, name)))
        else:
            fields[name] = _copy(given)
    kept = {
        name: getattr(report, name)
        for name in report.__dataclass_fields__
        if name not in fields and name not in changes
    }
    return Report(**{**kept, **fields, **changes})


def _copy(value: Any) -> Any:
    return value.copy() if value is not None else None


def _json_safe(values: dict[str, float]) -> dict[str, float | None]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}
