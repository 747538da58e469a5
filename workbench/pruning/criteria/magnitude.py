from __future__ import annotations

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext

_DESCRIPTIONS = {
    1: "Removes the weights closest to zero. For channels, those with the smallest sum of "
    "absolute weights (L1 norm).",
    2: "Removes the weights closest to zero. For channels, those with the smallest L2 norm, "
    "which weighs a few large weights more than L1 does.",
}


class Magnitude(Criterion):
    """|w|; a channel scores the Lp norm of its |w|, which is ln_structured(n=p)'s norm bit for
    bit. Single weights rank by |w| for every p (powers would round small weights into ties)."""

    def __init__(self, p: int) -> None:
        self.norm = p
        self.name = f"l{p}"
        self.label = f"L{p} magnitude"
        self.description = _DESCRIPTIONS.get(p, f"Removes the channels of smallest L{p} norm.")

    def scores(self, context: LayerContext) -> torch.Tensor:
        return context.weight.abs()
