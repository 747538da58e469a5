"""Sections of the Importance page, each a `render(ctx)` over one `Context`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench import ModelInfo, PruningPlan, Workbench
from workbench.explain import resolve_input_kind

#: Charts without Plotly's toolbar.
NO_BAR = {"displayModeBar": False}


@dataclass(frozen=True)
class Context:
    """What every section reads: the model, its engine and the current plan."""

    key: str
    bench: Workbench
    info: ModelInfo
    plan: PruningPlan

    @property
    def token(self) -> str:
        # Caches key on strings: an uploaded model of another session may share the name, not
        # the id.
        return f"{self.key}@{id(self.bench)}:{id(self.bench.model)}"

    @property
    def plan_json(self) -> str:
        return self.plan.to_json(indent=None)

    @property
    def classification(self) -> bool:
        return self.bench.task == "classification"

    @property
    def labelled(self) -> bool:
        return self.bench.targets is not None

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names) or list(self.bench.class_names)

    @property
    def text(self) -> bool:
        """Token ids: explained at the model's input embeddings."""
        return not self.bench.val_inputs.is_floating_point()

    @property
    def input_kind(self) -> str:
        shape = tuple(self.info.input_shape) or tuple(self.bench.val_inputs.shape[1:])
        return resolve_input_kind(self.info.input_kind, shape, integer=self.text)

    @property
    def n_samples(self) -> int:
        return int(self.bench.dense_outputs.shape[0])

    def class_name(self, value: Any) -> str:
        i, names = int(value), self.class_names
        return names[i] if 0 <= i < len(names) else str(i)
