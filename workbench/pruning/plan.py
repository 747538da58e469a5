"""A pruning plan: the one value that sliders produce, caches key on, the CLI reads and exports."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from workbench.errors import WorkbenchError

Scope = Literal["layer", "global"]
SCOPES: tuple[str, ...] = ("layer", "global")


class PlanError(WorkbenchError):
    """A plan that cannot be applied: unknown layer, sparsity out of range, unknown method..."""


@dataclass(frozen=True)
class PruningPlan:
    """Per-layer sparsities (fraction of weights removed) and how to choose what to remove.

    Layers not named stay dense; biases are never pruned. With `scope="global"` the listed
    layers are ranked together and the target is the parameter-weighted total of their
    sparsities, as in `torch.nn.utils.prune.global_unstructured`.
    """

    sparsity: Mapping[str, float] = field(default_factory=dict)
    method: str = "l1"
    granularity: str = "unstructured"
    scope: Scope = "layer"
    # Per-layer criterion overrides, e.g. {"classifier.3": "taylor"}.
    methods: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0  # for the random criterion

    def __post_init__(self) -> None:
        from workbench.pruning.criteria import CRITERIA
        from workbench.pruning.granularity import GRANULARITIES

        sparsity: dict[str, float] = {}
        for name, value in dict(self.sparsity).items():
            if not isinstance(name, str):
                raise PlanError(f"layer names must be strings, got {name!r}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise PlanError(f"sparsity of {name!r} must be a number, got {value!r}")
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise PlanError(f"sparsity of {name!r} must be within [0, 1], got {value!r}")
            sparsity[name] = float(value)
        for method in (self.method, *dict(self.methods).values()):
            if not isinstance(method, str) or method not in CRITERIA:
                raise PlanError(f"unknown method {method!r}; choose one of {', '.join(CRITERIA)}")
        if not isinstance(self.granularity, str) or self.granularity not in GRANULARITIES:
            raise PlanError(
                f"unknown granularity {self.granularity!r}; "
                f"choose one of {', '.join(GRANULARITIES)}"
            )
        if not isinstance(self.scope, str) or self.scope not in SCOPES:
            raise PlanError(f"unknown scope {self.scope!r}; choose one of {', '.join(SCOPES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise PlanError(f"seed must be an integer, got {self.seed!r}")
        # Stored sorted and read-only, so equal plans are equal values with equal hashes.
        object.__setattr__(self, "sparsity", MappingProxyType(dict(sorted(sparsity.items()))))
        object.__setattr__(
            self, "methods", MappingProxyType(dict(sorted(dict(self.methods).items())))
        )

    def __reduce__(self) -> tuple:
        # The read-only mappings do not pickle; a plan is rebuilt from its plain form.
        return (PruningPlan.from_dict, (self.to_dict(),))

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PruningPlan) and self._key() == other._key()

    def _key(self) -> tuple:
        return (
            tuple(self.sparsity.items()),
            self.method,
            self.granularity,
            self.scope,
            tuple(self.methods.items()),
            self.seed,
        )

    def method_for(self, layer: str) -> str:
        return self.methods.get(layer, self.method)

    @property
    def is_dense(self) -> bool:
        return all(value == 0.0 for value in self.sparsity.values())

    def replace(self, **changes: Any) -> PruningPlan:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return PruningPlan(**values)

    def with_sparsity(self, layer: str, value: float) -> PruningPlan:
        return self.replace(sparsity={**self.sparsity, layer: value})

    @classmethod
    def uniform(cls, layers: list[str], sparsity: float, **options: Any) -> PruningPlan:
        """The same sparsity on every listed layer."""
        return cls(sparsity={name: sparsity for name in layers}, **options)

    # ---- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "sparsity": dict(self.sparsity),
            "method": self.method,
            "granularity": self.granularity,
            "scope": self.scope,
            "methods": dict(self.methods),
            "seed": self.seed,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> PruningPlan:
        if not isinstance(data, dict):
            raise PlanError("a plan must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PlanError(f"unknown plan field(s): {', '.join(unknown)}")
        for name in ("sparsity", "methods"):
            if name in data and not isinstance(data[name], dict):
                raise PlanError(f"plan field {name!r} must be an object of layer names")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise PlanError(f"the plan is not valid JSON: {error}") from None
        except RecursionError:  # a document nested thousands deep; a plan is two levels
            raise PlanError("the plan is nested too deeply to be a pruning plan") from None
        return cls.from_dict(data)
