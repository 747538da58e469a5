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

    # A channel scores the L2 norm of |w|, which is ln_structured(n=2)'s norm bit for bit;
    # single weights rank by |w| (squares would round distinct small weights into ties).
    norm = 2

    def scores(self, context: LayerContext) -> torch.Tensor:
        return context.weight.abs()
