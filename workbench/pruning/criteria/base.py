"""The criterion interface: one method that scores every weight of a layer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import torch

from workbench.pruning.layers import PrunableLayer


class LayerStatistics(Protocol):
    """Data-dependent statistics of the dense model, computed once on demand for all layers."""

    def taylor(self, layer: PrunableLayer) -> torch.Tensor:
        """|w · ∂L/∂w|, L the mean loss over the whole data set, shaped like the weight."""
        ...

    def input_norm(self, layer: PrunableLayer) -> torch.Tensor:
        """ℓ2 norm of each input feature (channel) over the data, broadcastable to the weight."""
        ...

    def channel_attribution(self, layer: PrunableLayer, method: str) -> torch.Tensor:
        """Mean |Captum attribution| of each output channel (workbench.explain layer methods)."""
        ...


@dataclass(frozen=True)
class LayerContext:
    layer: PrunableLayer
    weight: torch.Tensor  # the dense weight; never modify it
    statistics: LayerStatistics
    seed: int = 0


class Criterion(ABC):
    """Scores weights by importance: the lowest scores are pruned first.

    A unit of several weights (a channel) scores the ℓ`norm` norm of its weights' scores, as
    `torch.nn.utils.prune.ln_structured(n=norm, importance_scores=scores)` computes it: |w|
    with norm 1 is a channel's L1 norm, |w| with norm 2 its L2 norm.
    """

    # Class attributes, or set per instance where variants differ by a constant (Magnitude(p)).
    name: str
    label: str
    description: str
    #: Statistics the criterion reads, so callers can warn that it runs the data through the model.
    needs_data: bool = False
    #: The p of the norm that scores a unit from its weights' scores (ln_structured's n).
    norm: float = 1

    @abstractmethod
    def scores(self, context: LayerContext) -> torch.Tensor:
        """One non-negative score per weight, shaped like the weight."""
