from __future__ import annotations

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext


class L2(Criterion):
    name = "l2"
    label = "L2 magnitude"
    description = (
        "Removes the weights closest to zero. For channels, those with the smallest L2 norm, "
        "which weighs a few large weights more than L1 does."
    )

    def scores(self, context: LayerContext) -> torch.Tensor:
        # Squares add up to the squared L2 norm of a channel, which ranks like the norm itself.
        return context.weight.square()
