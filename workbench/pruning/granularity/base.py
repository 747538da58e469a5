"""The granularity interface: which weights are removed together, and in what order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from workbench.pruning.layers import PrunableLayer


class Granularity(ABC):
    """Groups a layer's weights into units that are ranked by summed score and removed whole."""

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    #: Removes whole output channels, so the layer (and the next one's inputs) can be cut down.
    structured: ClassVar[bool] = False
    #: Units of different layers can be ranked together (scope="global").
    ranks_globally: ClassVar[bool] = True

    @abstractmethod
    def units(self, layer: PrunableLayer) -> torch.Tensor:
        """The unit index of every weight: a long tensor shaped like the weight."""

    def removal_order(self, unit_scores: torch.Tensor, layer: PrunableLayer) -> torch.Tensor:
        """Unit indices, first to be removed first. Stable, so ties fall to the lower index."""
        return torch.argsort(unit_scores, stable=True)

    def count(self, sparsity: float, n_units: int, layer: PrunableLayer) -> int:
        """How many units a sparsity removes: round(sparsity × units), as torch.nn.utils.prune."""
        return round(sparsity * n_units)
