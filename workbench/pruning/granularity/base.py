"""The granularity interface: which weights are removed together, and in what order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from workbench.pruning.layers import PrunableLayer


class Granularity(ABC):
    """Groups a layer's weights into units that are ranked by their score and removed whole."""

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

    def unit_scores(self, scores: torch.Tensor, layer: PrunableLayer, norm: float) -> torch.Tensor:
        """One score per unit (flat) from the criterion's per-weight scores.

        Here every weight is its own unit. `norm` is the criterion's ℓp norm over a unit.
        """
        return scores.reshape(-1)

    def removal_order(self, unit_scores: torch.Tensor, layer: PrunableLayer) -> torch.Tensor:
        """Unit indices, lowest score first. Stable: a prefix is the answer whenever no tie
        straddles the cut (see `removed_units` for the cuts that fall inside a tie)."""
        return torch.argsort(unit_scores, stable=True)

    def removed_units(
        self, unit_scores: torch.Tensor, order: torch.Tensor, count: int
    ) -> torch.Tensor:
        """Boolean per unit, True for the `count` units removed.

        The lowest scores go, and a tie at the cut is broken exactly as
        `torch.nn.utils.prune.l1_unstructured` breaks it: by `torch.topk(..., largest=False)`
        on the flat scores, whose choice among equal values depends on the count.
        """
        removed = torch.zeros(order.numel(), dtype=torch.bool)
        if not cut_is_tied(unit_scores, order, count):
            removed[order[:count]] = True
        else:
            removed[torch.topk(unit_scores, count, largest=False).indices] = True
        return removed

    def count(self, sparsity: float, n_units: int, layer: PrunableLayer) -> int:
        """How many units a sparsity removes: round(sparsity × units), as torch.nn.utils.prune."""
        return round(sparsity * n_units)


def cut_is_tied(unit_scores: torch.Tensor, order: torch.Tensor, count: int) -> bool:
    """Whether the last unit removed and the first kept have equal scores (the cut's set is
    then not decided by the scores alone)."""
    if count <= 0 or count >= order.numel():
        return False
    return bool(unit_scores[order[count - 1]] == unit_scores[order[count]])
