from __future__ import annotations

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext


class L1(Criterion):
    name = "l1"
    label = "L1 magnitude"
    description = (
        "Removes the weights closest to zero. For channels, those with the smallest sum of "
        "absolute weights (L1 norm)."
    )

    def scores(self, context: LayerContext) -> torch.Tensor:
        return context.weight.abs()
