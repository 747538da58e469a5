from __future__ import annotations

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext


class Taylor(Criterion):
    name = "taylor"
    label = "Taylor (|w·∂L/∂w|)"
    description = (
        "Estimates how much the loss would change if a weight were removed, from the weight "
        "times the gradient of the mean loss over the whole validation set (first-order Taylor "
        "expansion). The batch size does not change it."
    )
    needs_data = True

    def scores(self, context: LayerContext) -> torch.Tensor:
        return context.statistics.taylor(context.layer)
